"""What a student writes to check their layers: about ten lines per layer."""

import numpy as np
from layers import Affine, Relu, Sigmoid, SoftmaxWithLoss

rng = np.random.default_rng(0)


def test_relu(gradcheck):
    gradcheck(Relu(), {"x": rng.standard_normal((3, 4))})


def test_sigmoid(gradcheck):
    gradcheck(Sigmoid(), {"x": rng.standard_normal((3, 4))})


def test_affine(gradcheck):
    layer = Affine(rng.standard_normal((4, 3)), rng.standard_normal(3))
    gradcheck(layer, {"x": rng.standard_normal((2, 4))})


def test_softmax_with_loss(gradcheck):
    t = np.eye(3)[[0, 2, 1, 1]]  # one-hot labels: not differentiated
    gradcheck(SoftmaxWithLoss(), {"x": rng.standard_normal((4, 3)), "t": t}, nondiff=["t"])

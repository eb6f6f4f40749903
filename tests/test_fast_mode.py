"""Fast mode sees bugs confined to a row, a column, a border or repeated indices.

Each broken twin is checked at a size where a projection over the whole tensor
would dilute its error below the per-element tolerances; the per-axis directions
and the screen of each projection must still catch it on every seed, and the
report must name elements inside the broken structure.
"""

from __future__ import annotations

import numpy as np
import pytest

import gradverify
from gradverify import Status
from layers_under_test import broken, reference

SEEDS = range(5)


def _affine(rng):
    layer = broken.AffineForgetsLastFeature(rng.standard_normal((100, 60)), rng.standard_normal(60))
    return layer, {"x": rng.standard_normal((20, 100))}, (), "dW", lambda index: index[0] == 99


def _softmax(rng):
    labels = rng.integers(0, 50, size=100)
    labels[:3] = 49
    inputs = {"x": rng.standard_normal((100, 50)), "t": np.eye(50)[labels]}
    return broken.SoftmaxWithLossLastClassUnlabelled(), inputs, ("t",), "dx", lambda i: i[1] == 49


def _convolution(rng):
    layer = broken.ConvolutionDxDropsBorder(
        rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    )
    inputs = {"x": rng.standard_normal((2, 3, 32, 32))}
    return layer, inputs, (), "dx", lambda i: i[2] in (0, 31) or i[3] in (0, 31)


def _embedding(rng):
    layer = broken.EmbeddingLosesRepeats(rng.standard_normal((1000, 8)))
    idx = rng.integers(0, 1000, size=300)
    return layer, {"idx": idx}, ("idx",), "grads[0]", lambda i: np.sum(idx == i[0]) > 1


CONFINED = {"row": _affine, "column": _softmax, "border": _convolution, "repeats": _embedding}


@pytest.mark.parametrize("structure", CONFINED)
def test_fast_mode_catches_a_bug_confined_to_a_structure_on_every_seed(structure):
    for seed in SEEDS:
        layer, inputs, nondiff, grad_name, inside = CONFINED[structure](np.random.default_rng(seed))
        result = gradverify.check(layer, inputs, nondiff=nondiff, mode="fast", seed=seed)
        tensor = next(t for t in result.tensors if t.grad_name == grad_name)
        assert tensor.status is Status.FAIL, (seed, str(result))
        failing = [row.index for row in tensor.rows if row.note == "confirmed"]
        assert failing and all(inside(index) for index in failing), (seed, failing)


def test_fast_mode_states_what_it_can_see_and_how_to_see_everything():
    rng = np.random.default_rng(0)
    result = gradverify.check(
        reference.Sigmoid(), {"x": rng.standard_normal((100, 100))}, mode="fast"
    )
    (tensor,) = result.tensors
    assert tensor.status is Status.PASS and tensor.projected
    sees, full = tensor.notes[:2]
    assert sees.startswith("checked by 4 projections, which see one element off by more than")
    assert "one row scaled by more than" in sees and "one column scaled by more than" in sees
    assert full.startswith("mode='full' checks every element (20,003 forward calls, ~")
    assert "by projections" in str(result) and result.coverage == "projections: dx"


class ScaledRelu:
    """ReLU times a weight per column; `wrong` scales the gradient of rows 5 and 6 by
    +-`wrong`, balanced so that the sum along the gradient's signs is unchanged and only
    the random and per-axis directions can see it."""

    def __init__(self, columns, wrong):
        self.w = np.linspace(0.5, 1.5, columns)
        self.w[0] = 20.0  # the kink below then disagrees loudly
        self.wrong = wrong

    def forward(self, x):
        self.x = x
        return np.maximum(x, 0) * self.w

    def backward(self, dout):
        dx = (self.x > 0) * self.w * dout
        weight = np.maximum(1, np.abs(self.x)) * np.abs(dx)
        dx[5] *= 1 + self.wrong
        dx[6] *= 1 - self.wrong * weight[5].sum() / weight[6].sum()
        return dx


@pytest.mark.parametrize("wrong", [0.0, 0.1])
def test_an_input_at_a_kink_neither_hides_a_bug_nor_fails_a_correct_layer(wrong):
    # x[0, 0] sits exactly at ReLU's kink: a projection through it disagrees, bisection
    # names it, the ladder clears it; the directions after it must still be measured.
    x = np.random.default_rng(3).standard_normal((40, 30))
    x[0, 0] = 0.0
    result = gradverify.check(ScaledRelu(30, wrong), {"x": x}, nondiff=["w"], mode="fast", seed=0)
    (tensor,) = result.tensors
    assert tensor.status is (Status.FAIL if wrong else Status.PASS), str(result)
    if wrong:
        assert all(row.index[0] in (5, 6) for row in tensor.rows if row.note == "confirmed")


def test_a_projected_count_of_mismatches_says_it_is_a_lower_bound():
    class FiveColumnsOff(reference.Affine):
        def backward(self, dout):
            dx = super().backward(dout)
            self.dW[:, :5] *= 1.5  # 500 wrong elements: localization names some of them
            return dx

    rng = np.random.default_rng(0)
    layer = FiveColumnsOff(rng.standard_normal((100, 100)), rng.standard_normal(100))
    result = gradverify.check(layer, {"x": rng.standard_normal((5, 100))}, mode="fast")
    dw = next(t for t in result.tensors if t.grad_name == "dW")
    assert dw.status is Status.FAIL and dw.projected and dw.mismatched < 500
    assert f"mismatched: at least {dw.mismatched} / 10000" in str(result)


def test_a_pass_at_kinks_shows_no_margin_above_one():
    # the projections disagree at the kinks; once the elements are cleared there, what
    # the PASS line shows is within the tolerance, as in full mode
    x = np.random.default_rng(0).standard_normal((8, 8))
    x[::3, ::2] = 0.0
    for mode in ("fast", "full"):
        (dx,) = gradverify.check(reference.Relu(), {"x": x}, mode=mode).tensors
        assert dx.status is gradverify.Status.PASS and dx.margin <= 1.0, (mode, dx.margin)

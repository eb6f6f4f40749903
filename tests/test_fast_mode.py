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
    assert full.startswith("mode='full' checks every element (20,000 forward calls, ~")
    assert "by projections" in str(result) and result.coverage == "projections: dx"

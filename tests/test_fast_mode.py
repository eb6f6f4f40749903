"""Fast mode sees bugs confined to a row, a column, a border or repeated indices.

Each broken twin is checked at a size where a projection over the whole tensor
would dilute its error below the per-element tolerances; the per-axis directions
and the screen of each projection must still catch it on every seed, and the
report must name elements inside the broken structure.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import gradverify
from gradverify import Status
from gradverify.projections import (
    Along,
    Direction,
    Order,
    Probe,
    Workspace,
    _random_signs,
    directions,
)
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


# ------------------------------------------------- the projections' bookkeeping


@pytest.mark.parametrize("shape", [(7,), (5, 4), (3, 1, 4), (2, 3, 4, 5), (3, 9000), (9000, 3)])
def test_an_axis_order_runs_slice_by_slice_and_inverts(shape):
    size = int(np.prod(shape))
    values = np.random.default_rng(0).standard_normal(size)
    for axis in range(len(shape)):
        order = Order(shape, axis)
        flat = order.flat(0, size)
        slices = np.indices(shape)[axis].reshape(-1)
        # slice by slice, each slice's elements in flat order: a stable sort by slice
        assert np.array_equal(flat, np.argsort(slices, kind="stable"))
        assert np.array_equal(order.positions(flat), np.arange(size))
        # sums by slice, over the chunks a whole pass takes, and over a run of positions
        chunk = order.chunk()
        parts = [slice(a, min(a + chunk, size)) for a in range(0, size, chunk)]
        summed = sum(order.slice_sums(part, values[part]) for part in parts)
        assert np.allclose(summed, np.bincount(slices, values, shape[axis]))
        run = flat[3:]
        by_run = order.slice_sums(run, values[run])
        assert np.allclose(by_run, np.bincount(slices[run], values[run], shape[axis]))


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
def test_the_gradient_s_signs_are_random_only_where_it_has_none(dtype):
    analytic = np.random.default_rng(0).standard_normal(5000).astype(dtype)
    analytic[::7], analytic[3] = 0.0, np.nan
    first = next(directions(analytic, analytic.shape, 2, np.random.default_rng(1)))
    random = _random_signs(np.random.default_rng(1), analytic.size)  # the same draw
    signed = np.nan_to_num(np.sign(analytic)).astype(np.int8)
    assert np.array_equal(first.signs, np.where(signed != 0, signed, random))
    assert first.signs.dtype == np.int8


def test_bisection_halves_count_members_not_positions():
    shape, judged = (6, 5), np.array([0, 5, 10, 1], dtype=np.intp)  # flat indices judged
    order = Order(shape, 1)
    direction = Direction(Along.AXIS, np.ones(30, dtype=np.int8), order, (0, 30))
    probe = Probe(
        Workspace(np.zeros(shape)), np.zeros(30), direction, None, lambda: 0.0, 1.0, judged
    )

    def members(run):
        return [int(i) for i in order.flat(*run) if i not in judged]

    # what bisection split before the runs: the members, in order, into two
    expected = np.array_split(np.array(members((0, 30))), 2)
    for run, want in zip(probe.halves((0, 30)), expected):
        assert members(run) == list(want) and probe.count(run) == len(want)
    assert probe.only((0, 7)) == members((0, 7))[0] and probe.count((0, 7)) == len(members((0, 7)))


class _TransposedAffine(reference.Affine):
    """Holds W as a transposed view (not C-contiguous): projections must write into it."""

    def __init__(self, W, b):
        super().__init__(np.ascontiguousarray(W.T).T, b)


class _TransposedAffineRowOff(_TransposedAffine):
    def backward(self, dout):
        dx = super().backward(dout)
        self.dW[3] *= 1.5  # one row of dW off by half
        return dx


def test_fast_mode_perturbs_a_non_contiguous_weight_in_place_and_restores_it():
    rng = np.random.default_rng(0)
    W, b, x = (
        rng.standard_normal((200, 100)),
        rng.standard_normal(100),
        rng.standard_normal((4, 200)),
    )
    for cls, status in ((_TransposedAffine, Status.PASS), (_TransposedAffineRowOff, Status.FAIL)):
        layer = cls(W.copy(), b.copy())
        assert not layer.W.flags.c_contiguous
        held = layer.W
        result = gradverify.check(layer, {"x": x}, mode="fast")
        assert result.status is status, str(result)
        assert layer.W is held and np.array_equal(layer.W, W)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fast_mode_peak_memory_stays_within_a_few_copies_of_the_tensor(dtype):
    rng = np.random.default_rng(0)
    W, b = rng.standard_normal((1000, 1000)).astype(dtype), rng.standard_normal(1000)
    layer = reference.Affine(W, b.astype(dtype))
    x = rng.standard_normal((4, 1000)).astype(dtype)
    gradverify.check(layer, {"x": x}, mode="fast")  # imports and caches out of the way
    tracemalloc.start()
    try:
        gradverify.check(layer, {"x": x}, mode="fast")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    own = layer.W.nbytes + layer.b.nbytes  # the dW, db the layer's own backward makes
    # the check's own: the snapshot, a copy of the gradient, one working copy of W (and
    # its signs, a byte an element); 15x before projections worked a chunk at a time (and
    # a float32 gradient is made float64 a chunk at a time, not whole)
    assert (peak - own) / layer.W.nbytes <= 4.0


class _RowThreePercentOff(reference.Affine):
    def backward(self, dout):
        dx = super().backward(dout)
        self.dW[7] *= 1.03
        return dx


def test_a_projection_measured_again_still_says_what_it_could_see():
    # the row's axis projection is beyond its screen, so it is measured again with a
    # smaller step; the note keeps what that projection sees
    rng = np.random.default_rng(0)
    layer = _RowThreePercentOff(rng.standard_normal((300, 200)) * 0.1, np.zeros(200))
    result = gradverify.check(layer, {"x": rng.standard_normal((4, 300))}, mode="fast")
    dw = next(t for t in result.tensors if t.grad_name == "dW")
    assert dw.status is Status.FAIL and all(row.index[0] == 7 for row in dw.rows)
    assert "one row scaled by more than" in dw.notes[0], dw.notes[0]


def test_a_float16_tensor_s_sensitivity_is_a_number():
    # its mean scale (|x| about 30 here) summed in float16 overflowed to inf: "~0.0e+00"
    rng = np.random.default_rng(0)
    W = (rng.standard_normal((120, 90)) * 30).astype(np.float16)
    layer = reference.Affine(W, np.zeros(90, dtype=np.float16))
    x = (rng.standard_normal((3, 120)) * 0.1).astype(np.float16)
    result = gradverify.check(layer, {"x": x}, mode="fast")
    note = next(t for t in result.tensors if t.grad_name == "dW").notes[0]
    smallest = float(note.split("one element off by more than ~")[1].split(";")[0])
    assert 0 < smallest < np.inf, note

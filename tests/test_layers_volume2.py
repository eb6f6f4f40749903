"""The second volume's layers (layers_under_test.volume2) and their twins, beyond the registry.

tests/test_shipped_layers.py already checks every REFERENCE case on 50 seeds and
every BROKEN twin on 50 seeds, and tests/test_layers_under_test.py and
tests/test_regression.py hold the wrong-function twin against its reference; here:
that those suites do iterate the new cases (the one-step LSTM's two outputs take two
douts), what a sequence of ONE step cannot show (each
through-time twin passes at T == 1), the wrong-function twin on 50 seeds, and what
no gradient check reads (the book's ``self.dh``, ``stateful``, the ignored labels).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import gradverify
from gradverify import Status
from layers_under_test import broken, volume2
from layers_under_test.registry import BROKEN, REFERENCE, WRONG_FUNCTION, LayerCase

from .test_layers_under_test import numeric_gradient

SEEDS = range(50)
NEW_REFERENCE = [
    *("MatMul", "RNN", "LSTM", "TimeRNN", "TimeLSTM"),
    *("TimeEmbedding", "TimeAffine", "TimeSoftmaxWithLoss"),
]
THROUGH_TIME = ["TimeRNNForgetsDh", "TimeLSTMForgetsDh", "TimeLSTMForgetsDc"]
NEW_BROKEN = [*THROUGH_TIME, "TimeLSTMDbWrongGateOrder", "TimeSoftmaxWithLossBackwardCountsIgnored"]


def _check(case: LayerCase, seed: int, shapes: dict[str, tuple[int, ...]] | None = None, **kw: Any):
    """The case's check at `seed`; `shapes` replaces its float inputs by normal draws of those."""
    rng = np.random.default_rng(seed)
    target, inputs = case.build(rng), case.make_inputs(rng)
    inputs |= {name: rng.standard_normal(shape) for name, shape in (shapes or {}).items()}
    return gradverify.check(
        target, inputs, nondiff=case.nondiff, kwargs=case.kwargs, seed=seed, **kw
    )


def _one_step(case: LayerCase) -> dict[str, tuple[int, ...]]:
    """The case's sequence ``xs`` of (N, T, D), cut to T = 1."""
    n, _, d = np.shape(case.make_inputs(np.random.default_rng(0))["xs"])
    return {"xs": (n, 1, d)}


def _statuses(result: Any) -> dict[str, Status]:
    return {tensor.grad_name: tensor.status for tensor in result.tensors}


def test_the_registry_suites_cover_every_new_case() -> None:
    assert set(NEW_REFERENCE) <= set(REFERENCE) and set(NEW_BROKEN) <= set(BROKEN)
    assert WRONG_FUNCTION["TimeSoftmaxWithLossMeanCountsIgnored"].reference == (
        "TimeSoftmaxWithLoss"
    )
    for name in NEW_REFERENCE:  # specs that reach sequences of more than one step
        spec: Any = REFERENCE[name].spec
        assert spec is not None and ("T" not in spec["dims"] or spec["dims"]["T"][1] > 1), name
    for case in [*(REFERENCE[n] for n in NEW_REFERENCE), *(BROKEN[n] for n in NEW_BROKEN)]:
        if case.name.startswith("Time"):  # every input (N, T, ...) with T > 1: steps to carry
            inputs = case.make_inputs(np.random.default_rng(0)).values()
            assert all(np.shape(value)[1] > 1 for value in inputs), case.name
    for name in NEW_BROKEN:
        assert BROKEN[name].target.__module__ == broken.__name__


# ---------------------------------------------------------------- through time


@pytest.mark.parametrize("name", THROUGH_TIME)
def test_through_time_twin_passes_a_one_step_sequence_and_fails_a_longer_one(name: str) -> None:
    case = BROKEN[name]
    for seed in SEEDS:
        one_step = _check(case, seed, _one_step(case))
        assert one_step.status is Status.PASS, f"{name} seed {seed}: {one_step}"
    longer = _check(case, 0)  # T > 1: test_shipped_layers fails it on every seed
    assert longer.status is Status.FAIL
    assert _statuses(longer)["dxs"] is Status.FAIL  # the early steps' dx miss the carried part


def test_bias_in_the_wrong_gate_order_shows_in_db_alone_even_at_one_step() -> None:
    case = BROKEN["TimeLSTMDbWrongGateOrder"]
    for seed in range(10):
        for shapes in (None, _one_step(case)):  # a bug of the step, not of time
            statuses = _statuses(_check(case, seed, shapes))
            assert statuses.pop("grads[2]") is Status.FAIL, (seed, shapes)
            assert set(statuses.values()) == {Status.PASS}, (seed, shapes, statuses)


def _stateful(cls: type, seed: int) -> Any:
    """The registry's TimeRNN or TimeLSTM weights (D = H = 3), built stateful."""
    rng = np.random.default_rng(seed)
    gates = 4 if cls is volume2.TimeLSTM else 1
    weights = [rng.standard_normal(s) for s in ((3, 3 * gates), (3, 3 * gates), (3 * gates,))]
    return cls(*weights, stateful=True)


def _dh_and_numeric(cls: type, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``layer.dh`` after set_state(h0), forward, backward; and central differences in h0."""
    layer = _stateful(cls, seed)
    rng = np.random.default_rng(seed + 100)
    xs, h0, dhs = (rng.standard_normal(s) for s in ((2, 3, 3), (2, 3), (2, 3, 3)))

    def loss() -> float:
        layer.set_state(h0.copy())  # a TimeLSTM's c starts from 0 (set_state's default)
        return float(np.sum(dhs * layer.forward(xs)))

    loss()
    layer.backward(dhs)
    return layer.dh, numeric_gradient(loss, h0)


@pytest.mark.parametrize("cls", [volume2.TimeRNN, volume2.TimeLSTM])
def test_dh_is_the_gradient_of_the_initial_hidden_state(cls: type) -> None:
    """What an encoder hands its decoder: set_state(h0), forward, backward, then layer.dh."""
    for seed in range(5):
        analytic, numeric = _dh_and_numeric(cls, seed)
        assert np.allclose(analytic, numeric, rtol=1e-5, atol=1e-8), seed


@pytest.mark.parametrize("cls", [volume2.TimeRNN, volume2.TimeLSTM])
def test_stateful_layer_continues_where_the_last_forward_stopped(cls: type) -> None:
    layer = _stateful(cls, 0)
    xs = np.random.default_rng(1).standard_normal((2, 5, 3))
    whole = layer.forward(xs)
    layer.reset_state()
    parts = np.concatenate([layer.forward(xs[:, :2]), layer.forward(xs[:, 2:])], axis=1)
    assert np.allclose(parts, whole)
    layer.reset_state()  # from zeros again, as a layer that is not stateful
    restarted = layer.forward(xs[:, 2:])
    assert np.array_equal(restarted, cls(*layer.params).forward(xs[:, 2:]))
    assert not np.allclose(restarted, whole[:, 2:])  # the state did carry over above
    assert whole.dtype == np.float64  # the inputs' dtype, not the book's float32


# ---------------------------------------------------------------- TimeEmbedding


def test_time_embedding_sums_an_id_repeated_across_steps_and_within_one() -> None:
    rng = np.random.default_rng(0)
    layer = volume2.TimeEmbedding(rng.standard_normal((4, 2)))
    xs = np.array([[1, 1, 1], [3, 1, 0]])  # id 1: three steps of sample 0, and at step 1 twice
    assert np.array_equal(layer.forward(xs), layer.params[0][xs])
    dout = rng.standard_normal((2, 3, 2))
    assert layer.backward(dout) is None
    expected = np.zeros((4, 2))
    for n, t in np.ndindex(xs.shape):
        expected[xs[n, t]] += dout[n, t]
    assert np.allclose(layer.grads[0], expected)


# ---------------------------------------------------------------- TimeSoftmaxWithLoss


def _log_softmax(xs: np.ndarray) -> np.ndarray:
    """log(softmax) over the last axis by log-sum-exp: no softmax, no log of a probability."""
    top = np.max(xs, axis=-1, keepdims=True)
    return xs - top - np.log(np.sum(np.exp(xs - top), axis=-1, keepdims=True))


def _scores_and_labels(seed: int) -> tuple[np.ndarray, np.ndarray]:
    inputs = REFERENCE["TimeSoftmaxWithLoss"].make_inputs(np.random.default_rng(seed))
    xs, ts = inputs["xs"], inputs["ts"]
    assert isinstance(xs, np.ndarray) and isinstance(ts, np.ndarray)
    return xs, ts


def test_ignored_labels_leave_the_loss_the_mean_and_the_gradient() -> None:
    for seed in range(20):
        xs, ts = _scores_and_labels(seed)
        kept = ts != -1
        assert kept.any() and not kept.all()  # every draw has both (see registry)
        layer = volume2.TimeSoftmaxWithLoss()
        picked = np.take_along_axis(_log_softmax(xs), np.maximum(ts, 0)[..., None], -1)
        assert np.isclose(layer.forward(xs, ts), -np.mean(picked[..., 0][kept]))
        dx = np.copy(layer.backward(2.0))  # a copy: the book's backward returns its cache
        assert np.all(dx[~kept] == 0)
        assert np.allclose(dx.sum(axis=-1), 0)  # softmax minus one-hot, per position
        assert np.array_equal(layer.backward(2.0), dx)  # repeatable: the cache is not written
        onehot = np.eye(xs.shape[-1])[ts[kept]]
        assert np.isclose(layer.forward(xs[kept][None], onehot[None]), layer.forward(xs, ts))


def test_backward_counting_ignored_labels_passes_once_none_is_ignored() -> None:
    case = BROKEN["TimeSoftmaxWithLossBackwardCountsIgnored"]
    for seed in range(10):
        xs, ts = _scores_and_labels(seed)
        layer: Any = case.build(np.random.default_rng(seed))
        every = {"xs": xs, "ts": np.abs(ts)}  # -1 -> 1: every label kept
        assert gradverify.check(layer, every, nondiff=case.nondiff).status is Status.PASS
        assert _check(case, seed).status is Status.FAIL


def test_mean_over_every_position_passes_alone_and_fails_against_the_reference() -> None:
    case = WRONG_FUNCTION["TimeSoftmaxWithLossMeanCountsIgnored"]
    for seed in SEEDS:
        assert _check(case, seed).status is Status.PASS, f"seed {seed}: {case.bug}"
        held = _check(case, seed, reference=case.reference)
        assert held.status is Status.FAIL, f"seed {seed}"

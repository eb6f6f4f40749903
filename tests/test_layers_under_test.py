"""layers_under_test without gradverify: references match finite differences, twins do not."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from layers_under_test import broken, reference
from layers_under_test.registry import (
    BROKEN,
    REFERENCE,
    SHAPE_DEPENDENT,
    WRONG_FUNCTION,
    LayerCase,
    find_case,
)

SEEDS = range(5)
H = 1e-6  # central-difference step for the layers (float64)
RTOL = 1e-4  # relative to the largest gradient entry; covers the book's 1e-7 in log(y + 1e-7)
ATOL = 1e-10  # rounding noise of a gradient that is exactly zero (a bias feeding a BatchNorm)


def numeric_gradient(loss: Callable[[], float], arr: np.ndarray) -> np.ndarray:
    """Central differences of ``loss()``, perturbing ``arr`` in place (each element restored)."""
    grad = np.zeros_like(arr)
    for idx in np.ndindex(arr.shape):
        orig = arr[idx]
        arr[idx] = orig + H
        up = loss()
        arr[idx] = orig - H
        grad[idx] = (up - loss()) / (2 * H)
        arr[idx] = orig
    return grad


def _close(analytic: object, numeric: np.ndarray) -> bool:
    """Same shape, and max |analytic - numeric| <= RTOL * the larger gradient's largest entry."""
    if analytic is None or np.shape(analytic) != numeric.shape:
        return False
    a = np.asarray(analytic, dtype=np.float64)
    scale = max(np.max(np.abs(a)), np.max(np.abs(numeric)))
    return bool(np.max(np.abs(a - numeric)) <= RTOL * scale + ATOL)


def _forward(layer: Any, case: LayerCase, args: Any, seed: int) -> Any:
    """One forward with the case's keyword arguments, the global RNG reseeded (Dropout)."""
    np.random.seed(seed)
    return layer.forward(*args, **case.kwargs)


def _douts(out: Any, rng: np.random.Generator) -> tuple[Any, ...]:
    """One standard normal dout per output (the one-step LSTM returns (h, c)); 1.0 for a loss."""
    outs = out if isinstance(out, tuple) else (out,)
    return tuple(rng.standard_normal(np.shape(o)) if np.ndim(o) else 1.0 for o in outs)


def _layer_agrees(case: LayerCase, seed: int) -> bool:
    """backward vs central differences of L = sum(dout * forward), after a warm-up forward."""
    rng = np.random.default_rng(seed)
    layer: Any = case.build(rng)
    inputs = case.make_inputs(rng)
    _forward(layer, case, case.make_inputs(rng).values(), seed + 1)  # exposes stale caches
    before = [np.copy(v) for v in inputs.values()]
    out = _forward(layer, case, inputs.values(), seed)
    if not all(np.array_equal(b, v) for b, v in zip(before, inputs.values(), strict=True)):
        return False  # forward mutated its input
    douts = _douts(out, rng)
    grads = layer.backward(*map(np.copy, douts))
    wrt = [name for name in inputs if name not in case.nondiff]
    analytic = dict(zip(wrt, grads if isinstance(grads, tuple) else (grads,), strict=False))
    params = {n: getattr(layer, n) for n in ("W", "b", "gamma", "beta") if hasattr(layer, n)}
    analytic |= {n: getattr(layer, "d" + n) for n in params}
    for i, (param, grad) in enumerate(
        zip(getattr(layer, "params", []), getattr(layer, "grads", []))
    ):
        params[f"params[{i}]"], analytic[f"params[{i}]"] = param, np.copy(grad)  # second volume

    def loss() -> float:
        outs = _forward(layer, case, map(np.copy, inputs.values()), seed)
        outs = outs if isinstance(outs, tuple) else (outs,)
        return float(sum(np.sum(d * o) for d, o in zip(douts, outs, strict=True)))

    for name, arr in [*((n, inputs[n]) for n in wrt), *params.items()]:
        if not _close(analytic.get(name), numeric_gradient(loss, arr)):
            return False
    return True


def _net_agrees(case: LayerCase, seed: int) -> bool:
    """The network's own gradient() vs its own numerical_gradient() (the book's check)."""
    rng = np.random.default_rng(seed)
    net: Any = case.build(rng)
    x, t = case.make_inputs(rng).values()
    loss = net.loss

    def seeded_loss(*args: Any, **kwargs: Any) -> float:  # same Dropout masks in every loss
        np.random.seed(seed)
        return float(loss(*args, **kwargs))

    net.loss = seeded_loss
    analytic = net.gradient(x, t)
    numeric = net.numerical_gradient(x, t)
    return all(_close(analytic.get(key), numeric[key]) for key in numeric)


def _agrees(case: LayerCase, seed: int) -> bool:
    is_net = hasattr(case.target, "gradient")
    return _net_agrees(case, seed) if is_net else _layer_agrees(case, seed)


@pytest.mark.parametrize("case", REFERENCE.values(), ids=REFERENCE.keys())
def test_reference_case_builds_and_runs(case: LayerCase) -> None:
    rng = np.random.default_rng(0)
    target: Any = case.build(rng)
    inputs = case.make_inputs(rng)
    if hasattr(target, "gradient"):
        grads = target.gradient(*inputs.values())
        assert {k: np.shape(g) for k, g in grads.items()} == {
            k: p.shape for k, p in target.params.items()
        }
    else:
        out = target.forward(*inputs.values(), **case.kwargs)
        target.backward(*(np.ones_like(o) for o in (out if isinstance(out, tuple) else (out,))))


@pytest.mark.parametrize("case", REFERENCE.values(), ids=REFERENCE.keys())
def test_reference_backward_matches_central_differences(case: LayerCase) -> None:
    assert all(_agrees(case, seed) for seed in SEEDS)


@pytest.mark.parametrize("case", BROKEN.values(), ids=BROKEN.keys())
def test_broken_twin_is_caught_for_some_seed(case: LayerCase) -> None:
    assert not all(_agrees(case, seed) for seed in SEEDS), f"{case.name} passed: {case.bug}"


@pytest.mark.parametrize("case", WRONG_FUNCTION.values(), ids=WRONG_FUNCTION.keys())
def test_wrong_function_twin_has_a_right_backward_and_a_wrong_forward(case: LayerCase) -> None:
    assert all(_agrees(case, seed) for seed in SEEDS), f"{case.name}: {case.bug}"
    trusted = REFERENCE[case.reference]
    for seed in SEEDS:
        inputs = case.make_inputs(np.random.default_rng(seed)).values()
        ours = _forward(case.build(np.random.default_rng(seed)), case, inputs, seed)
        theirs = _forward(trusted.build(np.random.default_rng(seed)), trusted, inputs, seed)
        assert not np.allclose(ours, theirs, rtol=1e-3), f"{case.name} seed {seed}"


def test_every_broken_class_is_registered_with_its_bug() -> None:
    members = inspect.getmembers(broken, inspect.isclass)
    classes = [c for _, c in members if c.__module__ == broken.__name__]
    assert len(classes) >= 16
    twins = {**BROKEN, **SHAPE_DEPENDENT, **WRONG_FUNCTION}
    assert {c.__name__ for c in classes} == {case.target.__name__ for case in twins.values()}
    for cls in classes:
        doc = cls.__dict__.get("__doc__")
        assert doc, f"{cls.__name__} has no docstring of its own"
        assert twins[cls.__name__].bug == doc.strip().splitlines()[0]
        assert twins[cls.__name__].target is cls


def test_case_names_name_the_class() -> None:
    for name, case in [*REFERENCE.items(), *BROKEN.items(), *WRONG_FUNCTION.items()]:
        assert name == case.name
        assert name.startswith(case.target.__name__)  # Affine4D, SoftmaxWithLossIntLabels
    assert REFERENCE["Affine4D"].target is reference.Affine
    assert REFERENCE["SoftmaxWithLossIntLabels"].target is reference.SoftmaxWithLoss


def test_find_case() -> None:
    assert find_case(reference.Affine) is REFERENCE["Affine"]
    assert find_case(reference.SoftmaxWithLoss) is REFERENCE["SoftmaxWithLoss"]
    assert find_case(broken.AffineDbWrongAxis) is BROKEN["AffineDbWrongAxis"]
    assert find_case(reference.Affine(np.zeros((2, 2)), np.zeros(2))) is None  # instance, not class
    assert find_case(object) is None


def test_two_layer_net_layers_share_the_params_arrays() -> None:
    net: Any = REFERENCE["TwoLayerNet"].build(np.random.default_rng(0))
    assert net.layers["Affine1"].W is net.params["W1"]
    assert net.layers["Affine2"].b is net.params["b2"]
    copied: Any = BROKEN["TwoLayerNetCopiedParams"].build(np.random.default_rng(0))
    assert copied.layers["Affine1"].W is not copied.params["W1"]


def test_book_quirks_are_kept() -> None:
    relu = reference.Relu()
    relu.forward(np.array([-1.0, 2.0]))
    dout = np.array([5.0, 7.0])
    assert relu.backward(dout) is dout and dout[0] == 0  # Relu overwrites dout in place
    loss = reference.SoftmaxWithLoss()
    value = loss.forward(np.array([[1.0, 2.0]]), np.array([[0.0, 1.0]]))
    assert np.ndim(value) == 0
    assert np.array_equal(loss.backward(), loss.backward(dout=123.0))  # backward ignores dout

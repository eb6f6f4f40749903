"""Pure comparisons with trusted values: the rule, NaN, shapes, and hints with their near-misses."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from gradverify.config import CheckConfig
from gradverify.references import (
    Observation,
    compare_arrays,
    compare_observations,
    difference_hint,
)
from gradverify.results import Status

TOLERANCES = CheckConfig().tolerances
WHAT = "the reference"


def _values(shape: tuple[int, ...] = (4, 5), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def test_rounding_differences_pass_and_a_real_difference_fails_at_its_index() -> None:
    trusted = _values()
    assert compare_arrays("output", "output", trusted * (1 + 1e-9), trusted, TOLERANCES).status is (
        Status.PASS
    )
    moved = trusted.copy()
    moved[2, 3] += 0.5
    found = compare_arrays("output", "output", moved, trusted, TOLERANCES)
    assert (found.status, found.differing, found.checked) == (Status.FAIL, 1, 20)
    assert found.rows[0].index == (2, 3) and found.max_abs_index == (2, 3)
    assert found.rows[0].yours == moved[2, 3] and found.rows[0].reference == trusted[2, 3]


def test_the_rule_is_the_checks_own_and_follows_the_precision() -> None:
    trusted = _values()
    off = trusted * (1 + 3e-4)  # inside float32's and float64's rtol=1e-3
    assert compare_arrays("o", "output", off, trusted, TOLERANCES).status is Status.PASS
    tight = CheckConfig(rtol=1e-6).tolerances
    assert compare_arrays("o", "output", off, trusted, tight).status is Status.FAIL
    found = compare_arrays("o", "output", off.astype(np.float32), trusted, TOLERANCES)
    assert found.dtype == "float32" and found.atol >= 1e-5  # float32's atol, floored by scale


def test_nan_agrees_only_with_nan_and_shapes_must_match() -> None:
    trusted = _values()
    trusted[0, 0] = np.nan
    assert compare_arrays("o", "output", trusted.copy(), trusted, TOLERANCES).status is Status.PASS
    mine = trusted.copy()
    mine[1, 1] = np.nan
    assert compare_arrays("o", "output", mine, trusted, TOLERANCES).differing == 1
    shape = compare_arrays("dW", "gradient", _values((5, 4)), _values(), TOLERANCES)
    assert shape.status is Status.FAIL and shape.problem == "shape (5, 4), the reference's (4, 5)"


def test_observations_pair_outputs_by_position_and_gradients_by_array_name() -> None:
    grads = {"x": _values(seed=1), "W": _values((5, 3), seed=2)}
    names = {"x": "dx", "W": "dW"}
    trusted = Observation((_values(),), grads, names)
    fewer = Observation((_values(), _values()), {"x": grads["x"], "v": grads["x"]}, names)
    found = {c.name: c for c in compare_observations(fewer, trusted, TOLERANCES, what=WHAT)}
    assert found["output"].problem == "forward returned 2 output(s), the reference 1"
    assert found["dx"].status is Status.PASS
    assert found["dW"].problem == "the reference has a gradient of W; yours has none"
    assert found["v"].problem == "the reference has no gradient of v to compare with"
    assert found["v"].status is Status.INCONCLUSIVE  # what the reference cannot vouch for


@pytest.mark.parametrize(
    ("mine", "expected"),
    [
        (lambda t: 0.7 * t, "yours = 0.7 x the reference on every element: a constant factor"),
        (lambda t: 4 * t, "yours = 4 x the reference on every element: a missing 1/N (N = 4"),
        (lambda t: t + 0.3, "yours = the reference + 0.3 on every element: a constant shift"),
    ],
)
def test_a_constant_factor_or_shift_is_named(mine, expected: str) -> None:
    trusted = _values()
    assert difference_hint(mine(trusted), trusted, WHAT, batch_size=4).startswith(expected)


def test_near_misses_of_a_factor_or_a_shift_get_no_hint() -> None:
    trusted = _values()
    scaled, shifted = 0.7 * trusted, trusted + 0.3
    scaled[1, 2] += 0.2  # one element breaks the pattern
    shifted[3, 0] -= 0.2
    assert difference_hint(scaled, trusted, WHAT) == ""
    assert difference_hint(shifted, trusted, WHAT) == ""


def test_a_normalization_over_the_wrong_axis_is_named_and_its_near_miss_is_not() -> None:
    x = _values()
    hint = difference_hint(_softmax(x, 0), _softmax(x, 1), WHAT)
    assert hint.startswith("yours sums to 1 along axis 0, the reference along axis 1")
    other = _softmax(x * 1.5, 1)  # the right axis, another function: sums agree
    assert difference_hint(other, _softmax(x, 1), WHAT) == ""
    assert difference_hint(np.abs(x), _softmax(x, 1), WHAT) == ""  # sums to 1 nowhere


def test_one_number_gets_a_hint_only_for_a_telling_factor() -> None:
    loss = np.array(1.25)
    assert difference_hint(loss * 3, loss, WHAT, batch_size=3) == (
        "yours = 3 x the reference: a missing 1/N (N = 3, the batch size)?"
    )
    assert difference_hint(loss * 1.7, loss, WHAT, batch_size=3) == ""
    assert difference_hint(loss, np.array(0.0), WHAT, batch_size=3) == ""


def test_a_bias_left_out_and_an_all_zero_value_are_named_and_their_near_misses_are_not() -> None:
    trusted = _values()
    bias = np.random.default_rng(3).standard_normal(5)
    assert difference_hint(trusted + bias, trusted, WHAT).endswith(
        "+ the same vector in every row: a bias left out, or added twice?"
    )
    uneven = trusted + bias
    uneven[2, 1] += 0.5
    assert difference_hint(uneven, trusted, WHAT) == ""
    assert difference_hint(np.zeros_like(trusted), trusted, WHAT).startswith(
        "yours is zero everywhere"
    )
    almost = np.zeros_like(trusted)
    almost[0, 0] = 1.0
    assert difference_hint(almost, trusted, WHAT) == ""


def test_nan_or_inf_gives_no_hint_and_no_warning() -> None:
    trusted = _values()
    mine = 2 * trusted
    mine[0, 0] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert difference_hint(mine, trusted, WHAT) == ""
        found = compare_arrays("o", "output", mine, trusted, TOLERANCES)
    assert found.differing == 20 and found.hint == ""

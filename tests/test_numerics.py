"""Finite differences: exactness where it must be exact, restoration, the re-estimate ladder."""

from __future__ import annotations

import numpy as np
import pytest

from gradverify import numerics

EPS64 = float(np.finfo(np.float64).eps)


def test_step_follows_dtype_and_magnitude():
    steps = numerics.step_sizes(np.array([0.0, 0.5, -1e3]), EPS64)
    assert steps[0] == steps[1] == pytest.approx(EPS64 ** (1 / 3))
    assert steps[2] == pytest.approx(1e3 * EPS64 ** (1 / 3))
    eps32 = float(np.finfo(np.float32).eps)
    assert numerics.step_sizes(np.zeros(1, np.float32), eps32)[0] > 100 * steps[0]


def test_precision_is_the_least_precise_float():
    dtypes = [np.dtype(np.float64), np.dtype(np.float32), np.dtype(np.int64)]
    assert numerics.precision_dtype(dtypes) == np.float32
    assert numerics.precision_dtype([np.dtype(np.int64)]) == np.float64


def test_central_differences_exact_on_quadratics():
    x = np.array([[1.5, -2.0], [0.25, 3.0]])
    a = np.array([[2.0, 1.0], [-1.0, 0.5]])
    gradient = numerics.central_differences(
        x, numerics.step_sizes(x, EPS64), lambda: float(np.sum(a * x**2))
    )
    np.testing.assert_allclose(gradient, 2 * a * x, rtol=1e-9)


def test_central_differences_reach_non_contiguous_memory():
    base = np.arange(6.0).reshape(2, 3)
    view = base.T  # a transposed view: perturbations must land in `base`
    gradient = numerics.central_differences(
        view, numerics.step_sizes(view, EPS64), lambda: float(np.sum(base**2))
    )
    np.testing.assert_allclose(gradient, 2 * view, rtol=1e-9)


@pytest.mark.parametrize("exception", [RuntimeError, KeyboardInterrupt])
def test_element_restored_bit_for_bit_when_loss_raises(exception):
    x = np.array([0.1, np.nan, -0.0, 1e300])
    before = x.tobytes()
    calls = []

    def loss():
        calls.append(1)
        if len(calls) == 3:
            raise exception("stop")
        return 0.0

    with pytest.raises(exception):
        numerics.central_differences(x, np.full(4, 1e-3), loss)
    assert x.tobytes() == before


def test_reestimate_converges_on_smooth_function():
    again = numerics.reestimate(lambda v: (float(np.exp(3 * v)), v), 0.2, 6e-6, 16 * EPS64 * 2)
    assert not again.kink
    assert again.numeric == pytest.approx(3 * np.exp(0.6), rel=1e-9)
    assert again.error < 1e-6


def test_reestimate_sees_a_kink_at_the_point():
    again = numerics.reestimate(lambda v: (3 * max(v, 0.0), v), 0.0, 6e-6, 16 * EPS64)
    assert again.kink
    assert (again.left, again.right) == pytest.approx((0.0, 3.0))


def test_reestimate_steps_past_a_kink_a_little_away():
    # The kink is inside the first step but outside the smallest ones.
    again = numerics.reestimate(lambda v: (3 * max(v, 0.0), v), 2e-6, 6e-6, 16 * EPS64)
    assert not again.kink
    assert again.numeric == pytest.approx(3.0, rel=1e-6)


def test_reestimate_reports_non_finite():
    again = numerics.reestimate(lambda v: (float(np.log(v)) if v > 0 else np.nan, v), 0.0, 1e-3, 0)
    assert not again.finite


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_batched_differences_are_the_loop_to_the_bit(dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4)).astype(dtype)[:, ::-1]  # strided, like a target may hold
    weights = rng.standard_normal((3, 4))

    def loss():
        return float(np.sum(weights * np.tanh(x)))

    def batch(positions, values):
        losses = []
        for position, value in zip(positions, values):
            index = np.unravel_index(position, x.shape)
            original = x[index]
            x[index] = value
            losses.append(loss())
            x[index] = original
        return losses

    steps = numerics.step_sizes(x, float(np.finfo(dtype).eps))
    looped = numerics.central_differences(x, steps, loss)
    batched = numerics.central_differences(x, steps, loss, batch)
    assert looped.tobytes() == batched.tobytes()


@pytest.mark.parametrize("size", [0, 1, 2, 5, 6, 1001])
def test_median_is_numpys(size):
    values = np.random.default_rng(size).standard_normal(size)
    if size == 0:
        assert np.isnan(numerics.median(values))
    else:
        assert numerics.median(values) == float(np.median(values))
        values[size // 2] = np.nan
        assert np.isnan(numerics.median(values))  # as np.median: a NaN is no value to skip


@pytest.mark.parametrize("size", [3, numerics.SHORT_DOT, numerics.SHORT_DOT + 1, 5000])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_inner_is_the_float64_sum_of_products(size, dtype):
    rng = np.random.default_rng(size)
    first, second = rng.standard_normal(size).astype(dtype), rng.standard_normal(size)
    exact = float(np.sum(first.astype(np.float64) * second))
    assert numerics.inner(first.reshape(-1, 1), second) == pytest.approx(exact, rel=1e-12)

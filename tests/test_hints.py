"""Each hint fires on the pattern it names, and stays silent on a correct gradient."""

from __future__ import annotations

import numpy as np
import pytest

from gradverify import hints

RNG = np.random.default_rng(0)
NUMERIC = RNG.standard_normal((4, 4))


@pytest.mark.parametrize(
    ("analytic", "expected"),
    [
        (-NUMERIC, "sign error"),
        (0.5 * NUMERIC, "missing factor of 2"),
        (2 * NUMERIC, "extra factor of 2"),
        (4 * NUMERIC, "missing 1/N (N = 4"),
        (NUMERIC / 4, "extra 1/N (N = 4"),
        (3.7 * NUMERIC, "constant factor"),
        (np.zeros((4, 4)), "never written"),
        (NUMERIC.T, "transpose"),
        (np.where(NUMERIC > 0, NUMERIC, 0.0), "zero where numeric is not"),
    ],
)
def test_hint_names_the_pattern(analytic, expected):
    assert expected in hints.first_hint(analytic, NUMERIC, batch_size=4)


def test_missing_mask_hint():
    numeric = np.where(NUMERIC > 0, NUMERIC, 0.0)
    assert "missing mask" in hints.first_hint(NUMERIC, numeric)


def test_inverted_mask_hint():
    numeric = np.where(NUMERIC > 0, NUMERIC, 0.0)
    analytic = np.where(NUMERIC > 0, 0.0, NUMERIC)
    assert "inverted mask" in hints.first_hint(analytic, numeric)


def test_unused_array_hint():
    assert "copy" in hints.first_hint(NUMERIC, np.zeros((4, 4)))


def test_no_hint_for_noise_only_differences():
    assert hints.first_hint(NUMERIC * (1 + 1e-7 * RNG.standard_normal((4, 4))), NUMERIC) == ""


def test_swapped_pair():
    x, y = RNG.standard_normal(3), RNG.standard_normal(3)
    assert "swapped" in hints.swapped(("dx", y, x), ("dy", x, y))
    assert hints.swapped(("dx", x, x), ("dy", y, y)) is None


@pytest.mark.parametrize(
    ("array_shape", "grad_shape", "expected"),
    [((2, 3, 2), (2, 6), "reshape"), ((3,), (2,), "wrong axis"), ((4, 3), (3, 2), "transposed")],
)
def test_wrong_shape(array_shape, grad_shape, expected):
    assert expected in hints.wrong_shape("x", "dx", array_shape, grad_shape)

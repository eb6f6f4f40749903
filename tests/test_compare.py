"""The tolerance rule, relative errors, suspects, and the verdict on re-estimated elements."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gradverify import compare
from gradverify.numerics import Reestimate
from gradverify.results import ElementOutcome, Status


def test_tolerance_rule():
    numeric = np.array([0.0, -2.0])
    tol = compare.tolerance(numeric, rtol=0.1, atol=0.01, noise=np.array([0.0, 0.5]))
    np.testing.assert_allclose(tol, [0.01, 0.01 + 0.2 + 0.5])


def test_relative_error_edge_cases():
    rel = compare.relative_error(np.array([0.0, 1.0, 3.0]), np.array([0.0, 0.0, 2.0]))
    assert rel.tolist() == [0.0, math.inf, 0.5]


def test_suspects_worst_ratio_first_and_limited():
    analytic = np.array([1.0, 2.0, 3.0, 4.0])
    numeric = np.array([1.0, 2.5, 5.0, 4.1])
    tol = np.full(4, 0.2)
    assert compare.agreement(analytic, numeric, tol).suspects(limit=10) == [2, 1]
    assert compare.agreement(analytic, numeric, tol).suspects(limit=1) == [2]


def test_nan_numeric_is_always_suspect():
    assert compare.agreement(np.ones(2), np.array([1.0, np.nan]), np.ones(2)).suspects(5) == [1]


def _again(numeric=1.0, error=1e-9, left=1.0, right=1.0, kink=False, finite=True):
    return Reestimate(numeric, error, left, right, kink, finite)


@pytest.mark.parametrize(
    ("analytic", "again", "status"),
    [
        (1.0, _again(), Status.PASS),  # agrees once re-estimated
        (1.1, _again(), Status.FAIL),  # confirmed far outside
        (1.001, _again(error=1e-3), Status.INCONCLUSIVE),  # inside the error bars only
        (0.0, _again(0.5, left=0.0, right=1.0, kink=True), Status.PASS),  # subgradient
        (1.0, _again(0.5, left=0.0, right=1.0, kink=True), Status.PASS),  # the other side
        (5.0, _again(0.5, left=0.0, right=1.0, kink=True), Status.INCONCLUSIVE),
        (1.0, _again(finite=False), Status.INCONCLUSIVE),
    ],
)
def test_judge_reestimate(analytic, again, status):
    assert compare.judge_reestimate(analytic, again, rtol=1e-5, atol=1e-8).status is status


def test_rows_sorted_by_ratio_with_indices():
    analytic = np.array([[1.0, 2.0], [3.0, 4.0]])
    numeric = np.array([[1.0, 2.2], [3.0, 5.0]])
    rows = compare.agreement(analytic, numeric, np.full((2, 2), 0.1)).rows({}, limit=5)
    assert [r.index for r in rows] == [(1, 1), (0, 1)]
    assert rows[0].rel_err == pytest.approx(0.2)


def test_summary_of_the_worst_errors():
    analytic = np.array([1.0, 2.0, 3.0])
    numeric = np.array([1.0, 2.5, 3.0])
    summary = compare.agreement(analytic, numeric, np.full(3, 0.25)).summary()
    assert summary["max_abs_index"] == (1,)
    assert summary["margin"] == pytest.approx(2.0)
    assert summary["max_rel_err"] == pytest.approx(0.2)


def test_max_relative_error_is_inf_only_for_a_disagreement_at_an_exact_zero():
    numeric = np.array([0.0, 2.0, 0.0])
    tol = np.array([1e-8, 1e-3, 1e-8])
    agreeing = np.array([1e-17, 2.0005, 0.0])  # a rounding speck where numeric is 0
    assert compare.max_relative_error(agreeing, numeric, tol) == pytest.approx(2.5e-4)
    disagreeing = np.array([0.5, 2.0, 0.0])
    assert compare.max_relative_error(disagreeing, numeric, tol) == math.inf


def test_an_agreement_of_some_elements_reports_them_where_they_are_in_the_tensor():
    # fast mode's record: only the elements its projections blamed, by flat index
    analytic, numeric = np.array([0.5, 2.0]), np.array([0.5, 1.0])
    found = compare.agreement(
        analytic, numeric, np.full(2, 0.1), shape=(3, 4), flat=np.array([2, 9])
    )
    assert found.suspects(5) == [9]
    assert found.summary()["max_abs_index"] == (2, 1)
    assert [row.index for row in found.rows({}, 5)] == [(2, 1)]


def test_an_element_its_re_estimate_cleared_agrees():
    analytic, numeric = np.array([1.0, 2.0]), np.array([1.5, 3.0])
    cleared = compare.ElementVerdict(Status.PASS, 1.5, "kink: ...", ElementOutcome.KINK)
    found = compare.agreement(analytic, numeric, np.full(2, 0.1), verdicts={0: cleared})
    assert found.suspects(5) == [1] and found.fields({0: cleared}, 5)["mismatched"] == 1
    assert [row.outcome for row in found.rows({0: cleared}, 5)] == [
        ElementOutcome.NOT_REESTIMATED,
        ElementOutcome.KINK,
    ]


def test_ratios_and_relative_errors_keep_their_meaning_at_zeros_nans_and_infs():
    # written in place now (a gradient may be most of memory); the rule is the same as
    # the plain formulas below: inf where the scale is not positive, 0 where nothing differs
    rng = np.random.default_rng(0)
    special = np.array([0.0, -0.0, np.nan, np.inf, -np.inf, 1e-300])
    analytic = np.concatenate([rng.standard_normal(50), special, special, [1.0] * 6])
    numeric = np.concatenate([rng.standard_normal(50), special, [0.0] * 6, special])
    with np.errstate(divide="ignore", invalid="ignore"):
        diff = np.abs(analytic - numeric)
        scale = np.abs(numeric)
        plain_rel = np.where(scale > 0, diff / np.where(scale > 0, scale, 1.0), np.inf)
        plain_rel = np.where(diff == 0, 0.0, plain_rel)
        tol = np.abs(rng.standard_normal(analytic.size)) * (np.arange(analytic.size) % 3 > 0)
        plain_ratio = np.where(tol > 0, diff / np.where(tol > 0, tol, 1.0), np.inf)
        plain_ratio = np.where(diff == 0, 0.0, np.where(np.isnan(diff), np.inf, plain_ratio))
    with np.errstate(invalid="ignore"):  # inf - inf
        relative = compare.relative_error(analytic, numeric)
        found = compare.agreement(analytic, numeric, tol)
    assert np.array_equal(relative, plain_rel, equal_nan=True)
    assert np.array_equal(found.ratio, plain_ratio, equal_nan=True)
    assert np.array_equal(found.tol, tol)  # the caller's tolerance is read, never written
    assert compare.relative_error(3.0, 2.0) == 0.5  # numbers too

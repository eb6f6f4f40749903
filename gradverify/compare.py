"""Analytic against numeric: the one tolerance rule, element verdicts, tensor summaries.

Pure functions.  The rule, documented once here and quoted in every report::

    |analytic - numeric| <= atol + rtol * |numeric| + noise

where ``noise`` is the estimated rounding error of that numeric element
(`numerics.rounding_noise`) and ``atol`` is at least ``0.1 * rtol`` times the
tensor's largest gradient (`SCALE_FLOOR`).  An element outside it is
only *suspect*: it is re-estimated with a ladder of smaller steps (`numerics.reestimate`) and judged
again against the better estimate and its error (`judge_reestimate`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gradverify.numerics import Reestimate
from gradverify.results import ElementOutcome, ElementRow, Status

#: A re-estimated element fails only when its discrepancy exceeds the tolerance
#: by more than this many times the estimated error of the numeric value.
CONFIRM_SIGMAS = 3.0

Floats = NDArray[np.float64]

#: ``atol`` is raised to at least this fraction of ``rtol`` times the tensor's largest
#: value: an element far smaller than the rest is a sum of terms that cancel, and a
#: correct forward's approximations (log(y + 1e-7)) are relative to the terms, not to
#: their sum; judged on its own magnitude it would fail for the layer's rounding.
SCALE_FLOOR = 0.1


def scaled_atol(rtol: float, atol: float, values: Floats) -> float:
    """`atol`, raised to ``SCALE_FLOOR * rtol`` times the largest magnitude in `values`."""
    return atol + SCALE_FLOOR * rtol * float(np.max(np.abs(values), initial=0.0))


def tolerance(numeric: Floats, rtol: float, atol: float, noise: Floats | float) -> Floats:
    """The per-element tolerance of the rule above."""
    return atol + rtol * np.abs(numeric) + noise


def relative_error(analytic: Floats, numeric: Floats) -> Floats:
    """``|analytic - numeric| / |numeric|``; 0 where both are 0, inf where only numeric is."""
    diff = np.abs(analytic - numeric)
    scale = np.abs(numeric)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(scale > 0, diff / np.where(scale > 0, scale, 1.0), np.inf)
    return np.where(diff == 0, 0.0, rel)


def suspects(analytic: Floats, numeric: Floats, tol: Floats, limit: int) -> list[int]:
    """Flat indices of elements outside `tol`, worst ratio first, at most `limit`."""
    ratio = _ratio(np.abs(analytic - numeric), tol).reshape(-1)
    outside = np.flatnonzero(ratio > 1.0)
    order = outside[np.argsort(-ratio[outside], kind="stable")]
    return [int(i) for i in order[:limit]]


def _ratio(diff: Floats, tol: Floats) -> Floats:
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(tol > 0, diff / np.where(tol > 0, tol, 1.0), np.where(diff > 0, np.inf, 0))
    return np.where(np.isnan(diff), np.inf, ratio)


@dataclass(frozen=True)
class ElementVerdict:
    """How a suspect element fared when re-estimated."""

    status: Status
    numeric: float
    note: str  # for the report's row: the one-sided slopes, the error estimate
    outcome: ElementOutcome


def judge_reestimate(
    analytic: float, again: Reestimate, rtol: float, atol: float
) -> ElementVerdict:
    """Judge one suspect element against its careful re-estimate.

    * not finite near the element: INCONCLUSIVE;
    * at a kink: PASS (noted) when the analytic value is one of the one-sided
      slopes or between them (a valid subgradient, e.g. ReLU's 0 at x = 0),
      otherwise INCONCLUSIVE (backprop through several kinks may legitimately pick
      a value outside them, so no failure is claimed);
    * smooth: PASS when inside the tolerance, FAIL when outside by more than
      ``CONFIRM_SIGMAS`` estimated errors, INCONCLUSIVE in between.
    """
    if not again.finite:
        return ElementVerdict(
            Status.INCONCLUSIVE,
            again.numeric,
            "forward not finite near here",
            ElementOutcome.NOT_FINITE,
        )
    if again.kink:
        low, high = sorted((again.left, again.right))
        # not again.error: that is the central estimate's, which a kink inflates
        slack = atol + rtol * max(abs(low), abs(high))
        slopes = f"one-sided slopes {again.left:.4g} / {again.right:.4g}"
        if low - slack <= analytic <= high + slack:
            return ElementVerdict(
                Status.PASS,
                again.numeric,
                f"kink: {slopes}, analytic is between",
                ElementOutcome.KINK,
            )
        return ElementVerdict(
            Status.INCONCLUSIVE,
            again.numeric,
            f"kink: {slopes}, analytic is neither",
            ElementOutcome.KINK_OUTSIDE,
        )
    diff = abs(analytic - again.numeric)
    tol = atol + rtol * abs(again.numeric)
    if diff <= tol:
        return ElementVerdict(
            Status.PASS, again.numeric, "passes on re-estimate", ElementOutcome.CLEARED
        )
    if diff > tol + CONFIRM_SIGMAS * again.error:
        return ElementVerdict(Status.FAIL, again.numeric, "confirmed", ElementOutcome.CONFIRMED)
    return ElementVerdict(
        Status.INCONCLUSIVE,
        again.numeric,
        f"numeric uncertain (error ~{again.error:.1e})",
        ElementOutcome.UNCERTAIN,
    )


def worst_rows(
    analytic: Floats,
    numeric: Floats,
    tol: Floats,
    verdicts: Mapping[int, ElementVerdict],
    limit: int,
) -> tuple[ElementRow, ...]:
    """The `limit` elements with the largest error-to-tolerance ratio, as report rows."""
    diff = np.abs(analytic - numeric)
    ratio = _ratio(diff, tol).reshape(-1)
    rel = relative_error(analytic, numeric).reshape(-1)
    order = np.argsort(-ratio, kind="stable")[:limit]
    flat_a, flat_n, flat_d = analytic.reshape(-1), numeric.reshape(-1), diff.reshape(-1)
    return tuple(
        ElementRow(
            index=_unravel(int(i), analytic.shape),
            analytic=float(flat_a[i]),
            numeric=float(flat_n[i]),
            abs_err=float(flat_d[i]),
            rel_err=float(rel[i]),
            note=verdicts[int(i)].note if int(i) in verdicts else "",
            outcome=(
                verdicts[int(i)].outcome if int(i) in verdicts else ElementOutcome.NOT_REESTIMATED
            ),
        )
        for i in order
        if ratio[i] > 1.0 or int(i) in verdicts
    )


def _unravel(flat_index: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(i) for i in np.unravel_index(flat_index, shape)) if shape else ()


def error_summary(analytic: Floats, numeric: Floats, tol: Floats) -> dict[str, Any]:
    """Max abs error (and where), max rel error (see `max_relative_error`), and margin."""
    if analytic.size == 0:
        return {"max_abs_err": 0.0, "max_abs_index": None, "max_rel_err": 0.0, "margin": 0.0}
    diff = np.abs(analytic - numeric)
    worst = int(np.nanargmax(diff)) if not np.all(np.isnan(diff)) else 0
    return {
        "max_abs_err": float(diff.reshape(-1)[worst]),
        "max_abs_index": _unravel(worst, analytic.shape),
        "max_rel_err": max_relative_error(analytic, numeric, tol),
        "margin": float(np.max(_ratio(diff, tol))),
    }


def max_relative_error(first: Floats, second: Floats, tol: Floats) -> float:
    """The largest relative error where it means something: an element whose `second`
    value is exactly 0 and that agrees within `tol` has none (its relative error would
    be inf for a difference of 1e-17); one that disagrees there is inf."""
    with np.errstate(invalid="ignore"):
        agrees_at_zero = (second == 0) & (np.abs(first - second) <= tol)
    rel = np.where(agrees_at_zero, 0.0, relative_error(first, second))
    return float(np.max(rel, initial=0.0))

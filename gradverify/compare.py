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
from gradverify.results import ElementOutcome, ElementRow, ErrorMap, Status

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
    largest = max(float(np.max(values, initial=0.0)), -float(np.min(values, initial=0.0)))
    return atol + SCALE_FLOOR * rtol * largest  # max |values|, without an array of them


def tolerance(numeric: Floats, rtol: float, atol: float, noise: Floats | float) -> Floats:
    """The per-element tolerance of the rule above (one array made, in place: a gradient
    may be most of memory)."""
    tol = _magnitude(numeric)
    tol *= rtol
    tol += atol
    tol += noise
    return tol


def relative_error(analytic: Floats, numeric: Floats) -> Floats:
    """``|analytic - numeric| / |numeric|``; 0 where both are 0, inf where only numeric is."""
    diff = np.array(analytic, dtype=np.float64)
    diff -= numeric
    np.abs(diff, out=diff)
    return _divided(diff, _magnitude(numeric))


def _magnitude(values: Any) -> Floats:
    """``|values|`` as a new float64 array (0-d for a number), made in place."""
    magnitude = np.array(values, dtype=np.float64)
    return np.abs(magnitude, out=magnitude)


def _ratio(diff: Floats, tol: Floats) -> Floats:
    ratio = _divided(diff, np.array(tol, dtype=np.float64))
    ratio[np.isnan(diff)] = np.inf
    return ratio


def _divided(diff: Floats, scale: Floats) -> Floats:
    """``diff / scale`` written into `scale`: inf where `scale` is not positive, 0 where
    `diff` is 0 (the arrays may be most of memory: no temporary as large)."""
    positive = scale > 0
    np.divide(diff, scale, out=scale, where=positive)
    scale[~positive] = np.inf
    scale[diff == 0] = 0.0
    return scale


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


@dataclass(frozen=True)
class Agreement:
    """Analytic against numeric for the estimated elements of one gradient, computed once.

    Full mode estimates every element; fast mode only those its projections blamed
    (`flat`: their flat indices in a tensor of `shape`).  Every count, summary and
    report row of either mode reads this record, so the two cannot differ on what an
    error, a margin or a relative error is.  Build it with `agreement`.
    """

    shape: tuple[int, ...]
    flat: NDArray[np.intp]
    analytic: Floats  # flat, the estimated elements only
    numeric: Floats
    tol: Floats  # the rule's tolerance, widened to the error of every element cleared
    diff: Floats  # |analytic - numeric|
    ratio: Floats  # diff / tol: above 1 is outside the tolerance

    @property
    def outside(self) -> NDArray[np.bool_]:
        return np.asarray(self.ratio > 1.0)

    def suspects(self, limit: int) -> list[int]:
        """Flat indices (in the tensor) of elements outside the tolerance, worst first."""
        outside = np.flatnonzero(self.outside)
        order = outside[np.argsort(-self.ratio[outside], kind="stable")]
        return [int(self.flat[i]) for i in order[:limit]]

    def cleared(self) -> Agreement:
        """The same elements, every one counted as within its tolerance (a tensor whose
        suspects all passed their re-estimates clears the rest it had no budget for)."""
        if not np.any(self.outside):
            return self  # nothing to widen
        return agreement(
            self.analytic, self.numeric, np.maximum(self.tol, self.diff), self.shape, self.flat
        )

    def summary(self) -> dict[str, Any]:
        """The largest error (a NaN first) and where, the largest relative error (see
        `max_relative_error`), and the margin: the largest ratio to the tolerance."""
        if not self.flat.size:
            return {"max_abs_err": 0.0, "max_abs_index": None, "max_rel_err": 0.0, "margin": 0.0}
        nan = np.flatnonzero(np.isnan(self.diff))
        worst = int(nan[0]) if nan.size else int(np.argmax(self.diff))
        return {
            "max_abs_err": float(self.diff[worst]),
            "max_abs_index": _unravel(int(self.flat[worst]), self.shape),
            "max_rel_err": max_relative_error(self.analytic, self.numeric, self.tol, self.diff),
            "margin": float(np.max(self.ratio)),
        }

    def fields(self, verdicts: Mapping[int, ElementVerdict], max_rows: int) -> dict[str, Any]:
        """The numbers of a `TensorResult`: counts, the worst errors, the margin, the rows."""
        return {
            "mismatched": int(np.count_nonzero(self.outside)),
            "reestimated": len(verdicts),
            "rows": self.rows(verdicts, max_rows),
            **self.summary(),
        }

    def rows(self, verdicts: Mapping[int, ElementVerdict], limit: int) -> tuple[ElementRow, ...]:
        """The elements outside the tolerance or re-estimated, the worst ratio first."""
        if not verdicts and not np.any(self.outside):
            return ()  # the common case of a passing gradient
        relative = relative_error(self.analytic, self.numeric)
        order = np.argsort(-self.ratio, kind="stable")
        shown = [i for i in order if self.ratio[i] > 1.0 or int(self.flat[i]) in verdicts]
        return tuple(
            self._row(i, relative[i], verdicts.get(int(self.flat[i]))) for i in shown[:limit]
        )

    def _row(self, i: int, relative: float, verdict: ElementVerdict | None) -> ElementRow:
        return ElementRow(
            index=_unravel(int(self.flat[i]), self.shape),
            analytic=float(self.analytic[i]),
            numeric=float(self.numeric[i]),
            abs_err=float(self.diff[i]),
            rel_err=float(relative),
            note="" if verdict is None else verdict.note,
            outcome=ElementOutcome.NOT_REESTIMATED if verdict is None else verdict.outcome,
        )


def agreement(
    analytic: Floats,
    numeric: Floats,
    tol: Floats,
    shape: tuple[int, ...] | None = None,
    flat: NDArray[np.intp] | None = None,
    verdicts: Mapping[int, ElementVerdict] | None = None,
) -> Agreement:
    """The `Agreement` of these elements (all of a tensor of `analytic`'s shape unless
    `flat`, sorted, says which); an element whose re-estimate `verdicts` passed agrees:
    its tolerance is widened to its error."""
    a, n = analytic.reshape(-1), numeric.reshape(-1)
    tol = np.asarray(tol, dtype=np.float64).reshape(-1)
    flat = np.arange(a.size, dtype=np.intp) if flat is None else np.asarray(flat, dtype=np.intp)
    diff = np.subtract(a, n, dtype=np.float64)
    np.abs(diff, out=diff)
    cleared = np.array(
        [f for f, v in (verdicts or {}).items() if v.status is Status.PASS], dtype=np.intp
    )
    if cleared.size and flat.size:  # `flat` is sorted: where each sits in this record
        at = np.minimum(np.searchsorted(flat, cleared), flat.size - 1)
        at = at[flat[at] == cleared]
        tol = tol.copy()  # the caller's stays as it was
        tol[at] = np.maximum(tol[at], diff[at])
    shape = tuple(analytic.shape) if shape is None else shape
    return Agreement(shape, flat, a, n, tol, diff, _ratio(diff, tol))


#: An error map has at most this many cells along each side; larger tensors are pooled.
MAP_CELLS = 40


def error_map(found: Agreement) -> ErrorMap | None:
    """The margins of a tensor whose every element was estimated, over its layout and
    pooled by the maximum to at most `MAP_CELLS` a side (see `ErrorMap`); None for a
    scalar or a tensor only some of whose elements were estimated."""
    shape = found.shape
    if not shape or found.flat.size != int(np.prod(shape)) or not found.flat.size:
        return None
    grid = found.ratio.reshape(-1, shape[-1])  # as numpy prints it: the last axis across
    cell = tuple(-(-side // MAP_CELLS) for side in grid.shape)
    cells = tuple(-(-side // c) for side, c in zip(grid.shape, cell))
    padded = np.zeros((cells[0] * cell[0], cells[1] * cell[1]))
    padded[: grid.shape[0], : grid.shape[1]] = np.nan_to_num(grid, nan=np.inf)
    pooled = padded.reshape(cells[0], cell[0], cells[1], cell[1]).max(axis=(1, 3))
    return ErrorMap(tuple(tuple(float(m) for m in row) for row in pooled), (cell[0], cell[1]))


def _unravel(flat_index: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(i) for i in np.unravel_index(flat_index, shape)) if shape else ()


def max_relative_error(
    first: Floats, second: Floats, tol: Floats, diff: Floats | None = None
) -> float:
    """The largest relative error where it means something: an element whose `second`
    value is exactly 0 and that agrees within `tol` has none (its relative error would
    be inf for a difference of 1e-17); one that disagrees there is inf."""
    rel = relative_error(first, second) if diff is None else _divided(diff, _magnitude(second))
    with np.errstate(invalid="ignore"):
        agrees_at_zero = second == 0
        agrees_at_zero &= (np.abs(first - second) if diff is None else diff) <= tol
    rel[agrees_at_zero] = 0.0
    return float(np.max(rel, initial=0.0))

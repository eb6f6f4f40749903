"""Hold forward outputs and gradients against trusted ones, element by element.

A gradient check proves only that backward agrees with forward; a forward that
computes the wrong function with a consistent backward passes it.  Run on the
same inputs, with the same weights and the same ``dout``, a trusted
implementation (or the values a trusted run stored) shows that.  Pure
functions: the caller runs both sides and hands over two `Observation`s.

The rule is the gradient check's, with the same defaults and overrides
(``rtol``/``atol`` by the precision compared in, ``atol`` raised to a fraction
of the largest trusted value): two correct implementations differ by rounding
and by deliberate approximations (the textbook's ``log(y + 1e-7)``), far below
any bug.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from gradverify import compare, hints
from gradverify.results import Comparison, ComparisonKind, DifferenceRow, Status

Tolerances = Callable[[np.dtype], tuple[float, float]]


@dataclass(frozen=True)
class Observation:
    """One forward and backward at fixed inputs, weights and ``dout``: what is compared.

    ``gradients`` is keyed by the array's name (an input's, or a weight's such as
    ``W`` or ``params['W1']``); ``grad_names`` gives each its report name (``dW``).
    """

    outputs: tuple[np.ndarray, ...]
    gradients: dict[str, np.ndarray]
    grad_names: dict[str, str] = field(default_factory=dict)


def _output_name(position: int, count: int) -> str:
    return "output" if count == 1 else f"output {position}"


def compare_observations(
    yours: Observation,
    trusted: Observation,
    tolerances: Tolerances,
    *,
    what: str = "the reference",
    batch_size: int | None = None,
    max_rows: int = 10,
) -> tuple[Comparison, ...]:
    """One `Comparison` per forward output and per gradient either side has."""
    if len(yours.outputs) != len(trusted.outputs):
        found: list[Comparison] = [
            _problem(
                "output",
                ComparisonKind.OUTPUT,
                f"forward returned {len(yours.outputs)} output(s), {what} {len(trusted.outputs)}",
            )
        ]
    else:
        count = len(yours.outputs)
        found = [
            compare_arrays(
                _output_name(i, count),
                ComparisonKind.OUTPUT,
                mine,
                theirs,
                tolerances,
                batch_size,
                max_rows,
                what,
            )
            for i, (mine, theirs) in enumerate(zip(yours.outputs, trusted.outputs))
        ]
    for name in [*trusted.gradients, *(n for n in yours.gradients if n not in trusted.gradients)]:
        label = yours.grad_names.get(name) or trusted.grad_names.get(name, name)
        if name not in yours.gradients:
            problem = f"{what} has a gradient of {name}; yours has none"
            found.append(_problem(label, ComparisonKind.GRADIENT, problem))
        elif name not in trusted.gradients:  # what the trusted side cannot vouch for
            problem = f"{what} has no gradient of {name} to compare with"
            found.append(
                replace(
                    _problem(label, ComparisonKind.GRADIENT, problem), status=Status.INCONCLUSIVE
                )
            )
        else:
            found.append(
                compare_arrays(
                    label,
                    ComparisonKind.GRADIENT,
                    yours.gradients[name],
                    trusted.gradients[name],
                    tolerances,
                    batch_size,
                    max_rows,
                    what,
                )
            )
    return tuple(found)


def compare_arrays(
    name: str,
    kind: ComparisonKind,
    yours: np.ndarray,
    trusted: np.ndarray,
    tolerances: Tolerances,
    batch_size: int | None = None,
    max_rows: int = 10,
    what: str = "the reference",
) -> Comparison:
    """`yours` against `trusted` under the check's rule; NaN agrees only with NaN."""
    if yours.shape != trusted.shape:
        return _problem(name, kind, f"shape {yours.shape}, {what}'s {trusted.shape}")
    precision = min((yours.dtype, trusted.dtype), key=lambda d: d.itemsize)
    rtol, atol = tolerances(precision)
    mine, theirs = yours.astype(np.float64), trusted.astype(np.float64)
    finite = theirs[np.isfinite(theirs)]
    atol = compare.scaled_atol(rtol, atol, finite)
    both_nan = np.isnan(mine) & np.isnan(theirs)
    mine = np.where(both_nan, 0.0, mine)
    theirs = np.where(both_nan, 0.0, theirs)
    with np.errstate(invalid="ignore"):
        found = compare.agreement(mine, theirs, compare.tolerance(theirs, rtol, atol, 0.0))
    differing = int(np.count_nonzero(found.outside))  # NaN on one side only differs
    summary = found.summary()
    return Comparison(
        name=name,
        kind=kind,
        status=Status.FAIL if differing else Status.PASS,
        shape=yours.shape,
        dtype=yours.dtype.name,
        rtol=rtol,
        atol=atol,
        checked=yours.size,
        differing=differing,
        max_abs_err=summary["max_abs_err"],
        max_abs_index=summary["max_abs_index"],
        max_rel_err=summary["max_rel_err"],
        rows=tuple(_row(mine, theirs, flat) for flat in found.suspects(max_rows)),
        hint=difference_hint(mine, theirs, what, batch_size) if differing else "",
    )


def _row(mine: np.ndarray, theirs: np.ndarray, flat: int) -> DifferenceRow:
    index = tuple(int(i) for i in np.unravel_index(flat, mine.shape)) if mine.shape else ()
    yours, reference = float(mine.reshape(-1)[flat]), float(theirs.reshape(-1)[flat])
    diff = abs(yours - reference)
    rel = float(compare.relative_error(np.array(yours), np.array(reference)))
    return DifferenceRow(index, yours, reference, diff, rel)


def _problem(name: str, kind: ComparisonKind, problem: str) -> Comparison:
    return Comparison(name=name, kind=kind, status=Status.FAIL, problem=problem)


# ---------------------------------------------------------------- what a wrong forward shows


def difference_hint(
    mine: np.ndarray, trusted: np.ndarray, what: str, batch_size: int | None = None
) -> str:
    """The classic bug the data shows, or '': all zeros (never written), a constant factor
    (a missing ``1/N``, a dropout scaled in the wrong mode), a constant shift, a shift per
    feature (a bias left out or added twice), or a normalization (a softmax) over the wrong
    axis.  `what` names the trusted side ("the reference Affine")."""
    if not (np.all(np.isfinite(mine)) and np.all(np.isfinite(trusted))):
        return ""  # NaN or inf: no pattern to read, the rows show them
    if mine.size == 1:  # one number: only a telling factor is evidence
        ratio = float(mine.reshape(-1)[0]) / float(trusted.reshape(-1)[0] or np.nan)
        meaning = hints.factor_meaning(ratio, batch_size)
        return f"yours = {ratio:.4g} x {what}: {meaning}" if meaning else ""
    if not np.any(mine) and np.any(trusted):
        return "yours is zero everywhere: never written, or computed from an input never used?"
    found = hints.constant_factor(mine, trusted, batch_size)
    if found is not None:
        return f"yours = {found[0]:.4g} x {what} on every element: {found[1]}"
    shift = mine - trusted
    scale = 1e-9 * float(np.max(np.abs(trusted)))
    if np.allclose(shift, shift.reshape(-1)[0], rtol=0, atol=scale):
        return (
            f"yours = {what} + {float(shift.reshape(-1)[0]):.4g} on every element: a constant shift"
        )
    if mine.ndim > 1 and mine.shape[0] > 1 and np.allclose(shift, shift[:1], rtol=0, atol=scale):
        return f"yours = {what} + the same vector in every row: a bias left out, or added twice?"
    mine_axes, trusted_axes = _unit_sum_axes(mine), _unit_sum_axes(trusted)
    if mine_axes and trusted_axes and not set(mine_axes) & set(trusted_axes):
        return (
            f"yours sums to 1 along axis {mine_axes[0]}, {what} along axis {trusted_axes[0]}: "
            f"a softmax (or a normalization) over the wrong axis?"
        )
    return ""


def _unit_sum_axes(values: np.ndarray) -> list[int]:
    if values.ndim < 2 or np.any(values < 0):
        return []
    return [
        axis
        for axis in range(values.ndim)
        if values.shape[axis] > 1 and np.allclose(values.sum(axis=axis), 1.0, atol=1e-6)
    ]


def same_values(mine: Any, trusted: Any, tolerances: Tolerances) -> bool:
    """Whether two forward outputs agree under the rule (for hints that try another mode)."""
    if not (isinstance(mine, np.ndarray) and isinstance(trusted, np.ndarray)):
        return False
    return (
        compare_arrays("", ComparisonKind.OUTPUT, mine, trusted, tolerances).status is Status.PASS
    )

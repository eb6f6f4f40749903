"""Compare a target's forward outputs with a trusted reference's, element by element.

A gradient check proves only that backward agrees with forward; a forward that
computes the wrong function with a consistent backward passes it.  Run on the
same inputs with the same weights, a trusted implementation shows that: grading
uses this so that a backward consistent with a wrong forward earns no points.
Pure functions; the caller runs both forwards.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gradverify import hints
from gradverify.results import Finding

#: Forward outputs must agree with the reference's to this relative precision: far
#: looser than rounding, far tighter than any wrong function.
RTOL, ATOL = 1e-5, 1e-8


def forward_difference(label: str, output: Any, reference: Any) -> Finding | None:
    """An error finding when `output` differs from the `reference` output, else None."""
    ours, theirs = _items(output), _items(reference)
    if len(ours) != len(theirs):
        return _finding(
            f"{label}: forward returned {len(ours)} output(s), the reference {len(theirs)}."
        )
    for position, (mine, trusted) in enumerate(zip(ours, theirs)):
        where = f" output {position}" if len(ours) > 1 else " output"
        if trusted is None:
            return _finding(f"{label}: the reference's forward{where} is not an array.")
        if mine is None or mine.shape != trusted.shape:
            shape = "no array" if mine is None else f"shape {mine.shape}"
            return _finding(
                f"{label}: forward{where} has {shape}, the reference's has shape {trusted.shape}."
            )
        outside = ~np.isclose(mine, trusted, rtol=RTOL, atol=ATOL)  # NaN differs from anything
        if np.any(outside):
            index = tuple(int(i) for i in np.argwhere(outside)[0])
            count = int(np.count_nonzero(outside))
            hint = _hint(mine, trusted)
            return _finding(
                f"{label}: forward{where} differs from the reference at {index or '()'}: "
                f"{float(mine[index]):.6g} vs {float(trusted[index]):.6g} ({count} of "
                f"{mine.size} elements){hint}; a backward consistent with a wrong forward "
                f"is still wrong."
            )
    return None


def gradient_difference(name: str, gradient: Any, reference: Any) -> str:
    """Why `gradient` is not the `reference` gradient (both analytic), or ''.

    Judged at ``GRADIENT_RTOL`` of each element plus a floor of that fraction of the
    largest one: two correct implementations differ by their roundings and their
    deliberate approximations (the textbook's ``log(y + 1e-7)``), far below any bug.
    """
    mine, trusted = _items(gradient)[0], _items(reference)[0]
    if trusted is None:
        return ""
    if mine is None or mine.shape != trusted.shape:
        return f"{name} is not the reference's gradient (shape {trusted.shape})"
    floor = GRADIENT_RTOL * float(np.max(np.abs(trusted), initial=0.0))
    outside = ~np.isclose(mine, trusted, rtol=GRADIENT_RTOL, atol=floor + ATOL)
    if not np.any(outside):
        return ""
    index = tuple(int(i) for i in np.argwhere(outside)[0])
    return (
        f"{name} agrees with this forward but is not the reference's gradient: at "
        f"{index or '()'} {float(mine[index]):.6g} vs {float(trusted[index]):.6g}"
    )


#: Gradients must agree with the reference's to this relative precision (see above).
GRADIENT_RTOL = 1e-4


def _items(value: Any) -> list[np.ndarray | None]:
    items = value if isinstance(value, (tuple, list)) and not _numbers(value) else (value,)
    arrays: list[np.ndarray | None] = []
    for item in items:
        try:
            array = np.asarray(item, dtype=np.float64)
        except (TypeError, ValueError):
            array = None
        arrays.append(array)
    return arrays


def _numbers(value: Any) -> bool:
    return bool(value) and not any(isinstance(v, (np.ndarray, tuple, list)) for v in value)


def _hint(mine: np.ndarray, trusted: np.ndarray) -> str:
    """The classic forward bugs the data shows: a constant factor or a constant shift."""
    if mine.size < 2:
        return ""
    factor = hints.constant_factor(mine, trusted)
    if factor is not None:
        return f" (yours = {factor[0]:.4g} x the reference)"
    shift = mine - trusted
    if np.allclose(shift, shift.reshape(-1)[0], rtol=1e-6, atol=1e-12):
        return f" (yours = the reference + {float(shift.reshape(-1)[0]):.4g} everywhere)"
    return ""


def _finding(message: str) -> Finding:
    return Finding("forward differs from the reference", "error", message)

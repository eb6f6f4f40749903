"""Data-driven guesses at the bug behind a mismatch; each a small pure function.

Every hint looks only at values — the analytic and numeric gradients, and where a
pattern is defined by them, the array's own values, the integer inputs or ``dout`` —
never at the target's code, and returns ``None`` unless its evidence holds.
`first_hint` returns the first that applies, most specific first.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from gradverify.numerics import inner
from gradverify.results import Role

Floats = NDArray[np.float64]

#: Two values count as "the same" for a hint within this relative distance; hints
#: describe patterns, they do not decide verdicts, so this is not a tolerance.
_SAME = 1e-3


def _close(a: Floats, b: Floats) -> bool:
    scale = max(float(np.max(np.abs(b), initial=0.0)), 1e-300)
    return bool(np.all(np.abs(a - b) <= _SAME * scale))


def _wrong(analytic: Floats, numeric: Floats) -> NDArray[np.bool_]:
    """The elements where the two differ by more than `_SAME` of the largest numeric value."""
    scale = max(float(np.max(np.abs(numeric), initial=0.0)), 1e-300)
    return np.asarray(np.abs(analytic - numeric) > _SAME * scale)


def never_written(analytic: Floats, numeric: Floats) -> str | None:
    """Analytic all zero where the numeric is not: a gradient never written or reset."""
    if np.all(analytic == 0) and np.any(numeric != 0):
        return (
            "analytic is zero everywhere: is the gradient never written, or reset after backward?"
        )
    return None


def input_not_used(analytic: Floats, numeric: Floats) -> str | None:
    """Numeric exactly zero everywhere: perturbing the array never reaches the output.

    Two causes, both named: its gradient truly is zero (a bias just before a batch
    normalization, which subtracts it again) and backward is wrong, or forward reads a
    copy of it, so the perturbation never arrives."""
    if np.all(numeric == 0) and np.any(analytic != 0):
        return (
            "numeric is exactly zero everywhere: perturbing this array never changes the output. "
            "Either its gradient is truly 0 (a bias just before a normalization) and backward "
            "is wrong, or forward reads a copy of it (layers that do not share the params arrays)"
        )
    return None


def constant_ratio(analytic: Floats, numeric: Floats, batch_size: int | None = None) -> str | None:
    """analytic = c x numeric on every element: name c (sign, 2, 1/2, N, 1/N)."""
    found = constant_factor(analytic, numeric, batch_size)
    if found is None:
        return None
    ratio, meaning = found
    return f"analytic = {_fmt(ratio)} x numeric on every element: {meaning}"


def constant_factor(
    first: Floats, second: Floats, batch_size: int | None = None
) -> tuple[float, str] | None:
    """``(c, what c means)`` when ``first = c x second`` on every element (c not 1), else None."""
    denominator = inner(second, second)
    if denominator == 0 or first.size < 2:  # one element: any ratio is "constant"
        return None
    ratio = inner(first, second) / denominator
    if abs(ratio - 1) < _SAME or not _close(first, ratio * second):
        return None
    return ratio, factor_meaning(ratio, batch_size) or "a constant factor is off."


def factor_meaning(ratio: float, batch_size: int | None = None) -> str | None:
    """What a ratio that is a telling factor means (sign, 2, 1/2, N, 1/N), else None."""
    names = {-1.0: "a sign error", 2.0: "an extra factor of 2", 0.5: "a missing factor of 2"}
    if batch_size == 2:  # the two causes cannot be told apart: say both
        names[2.0] += ", or a missing 1/N (N = 2)"
        names[0.5] += ", or an extra 1/N (N = 2)"
    if batch_size and batch_size > 2:
        names[float(batch_size)] = f"a missing 1/N (N = {batch_size}, the batch size)"
        names[1.0 / batch_size] = f"an extra 1/N (N = {batch_size}, the batch size)"
    for factor, meaning in names.items():
        if abs(ratio - factor) <= _SAME * abs(factor):
            return f"{meaning}?"
    return None


def transposed(analytic: Floats, numeric: Floats) -> str | None:
    """A square 2-D gradient equal to the transpose of the numeric one."""
    square = analytic.ndim == 2 and analytic.shape[0] == analytic.shape[1] > 1
    if square and _close(analytic, numeric.T) and not _close(analytic, numeric):
        return "analytic equals the transpose of numeric: a transposed product (x.T vs dout.T)?"
    return None


def confined(analytic: Floats, numeric: Floats) -> str | None:
    """Every wrong element in one row or one column of the last two axes, or on their
    border, covering at least half of it: a loop bound off by one, a padding dropped."""
    if analytic.ndim < 2 or min(analytic.shape[-2:]) < 3:
        return None
    wrong = _wrong(analytic, numeric)
    count = int(np.count_nonzero(wrong))
    if count < 2:
        return None
    rows, cols = analytic.shape[-2:]
    lines = wrong.reshape(-1, rows, cols)
    for axis, what, size in ((1, "row", rows), (2, "column", cols)):
        hit = np.flatnonzero(lines.any(axis=tuple(a for a in (0, 1, 2) if a != axis)))
        # evidence: `count` errors falling in one of the `size` lines by chance would be
        # rarer than 1e-3, and they cover at least half of it
        chance = size * (1.0 / size) ** count
        if len(hit) == 1 and chance < 1e-3 and count * 2 >= wrong.size // size:
            index = int(hit[0])
            end = " (the last)" if index == size - 1 else " (the first)" if index == 0 else ""
            return (
                f"every wrong element is in {what} {index}{end} of the last two axes: a loop "
                f"bound off by one?"
            )
    border = np.ones((rows, cols), dtype=bool)
    border[1:-1, 1:-1] = False
    on_border = lines[:, border]
    # evidence: `count` errors falling on the border by chance would be rarer than 1e-3
    chance = float(np.mean(border)) ** count
    if (
        chance < 1e-3
        and not lines[:, ~border].any()
        and 2 * np.count_nonzero(on_border) >= on_border.size
    ):
        return (
            "every wrong element is on the border of the last two axes: a loop bound off by "
            "one, or a padding dropped?"
        )
    return None


def wrong_only_off_mask(analytic: Floats, numeric: Floats) -> str | None:
    """Mismatches exactly where one side is zero: a missing or inverted mask (ReLU, Dropout)."""
    wrong = _wrong(analytic, numeric)
    if not np.any(wrong):
        return None
    numeric_zero, analytic_zero = numeric[wrong] == 0, analytic[wrong] == 0
    if np.all(numeric_zero | analytic_zero) and np.any(numeric_zero) and np.any(analytic_zero):
        agreeing = (analytic != 0) & (numeric != 0) & ~wrong
        if np.any(agreeing):  # an inverted mask would leave no element on in both
            return (
                "analytic agrees where both masks keep a unit and is zero where only one "
                "does: a mask other than forward's (drawn again, or routed elsewhere)?"
            )
        return "analytic is zero exactly where numeric is not, and vice versa: an inverted mask?"
    if np.all(numeric_zero):
        return (
            "analytic is non-zero only where numeric is 0: a missing mask (ReLU's x <= 0), "
            "or a forward that saturates or clamps there (log(y + 1e-7) at large scores)?"
        )
    if np.all(analytic_zero):
        return "analytic is zero where numeric is not: a mask applied where it should not be?"
    return None


def one_branch(analytic: Floats, numeric: Floats, values: Floats | None, name: str) -> str | None:
    """Wrong exactly where the array is negative (or exactly where positive) and right
    everywhere else: one branch of a piecewise backward (LeakyReLU, ELU, abs)."""
    if values is None or values.shape != analytic.shape:
        return None
    wrong = _wrong(analytic, numeric)
    for branch, where in ((f"{name} < 0", values < 0), (f"{name} > 0", values > 0)):
        # evidence: both sides hold two elements or more, and the wrong ones are that
        # side exactly (a random set of them would match it once in C(n, k) draws)
        if min(np.count_nonzero(where), np.count_nonzero(~where)) < 2:
            continue
        if not np.array_equal(wrong, where):
            continue
        factor = constant_factor(analytic[where], numeric[where])
        if factor is not None and abs(factor[0] + 1) <= _SAME:
            return (
                f"analytic = -numeric exactly where {branch}, right elsewhere: a sign "
                f"flipped on that branch of backward (its slope)?"
            )
        if factor is not None:
            return (
                f"analytic = {_fmt(factor[0])} x numeric exactly where {branch}, right "
                f"elsewhere: that branch of backward has the wrong slope?"
            )
        return f"wrong exactly where {branch}, right elsewhere: that branch of backward?"
    return None


def repeats_not_accumulated(
    analytic: Floats,
    numeric: Floats,
    indices: Mapping[str, np.ndarray],
    dout: Floats | None = None,
) -> str | None:
    """A weight's rows wrong exactly where an integer input repeats an index: an
    assignment ``dW[idx] = dout`` that keeps one of the repeated rows of ``dout``.

    Evidence besides the rows: a row the input holds once is right, or every repeated
    row holds exactly one of its rows of `dout` (what the assignment keeps)."""
    if analytic.ndim < 1 or analytic.shape[0] < 2:
        return None
    rows = _wrong(analytic, numeric).reshape(analytic.shape[0], -1).any(axis=1)
    for name, idx in indices.items():
        if idx.size < 2 or idx.min() < 0 or idx.max() >= analytic.shape[0]:
            continue
        counts = np.bincount(idx.reshape(-1), minlength=analytic.shape[0])
        repeated = counts > 1
        if not repeated.any() or not np.array_equal(rows, repeated):
            continue
        if (counts == 1).any():
            evidence = "right in those it holds once"
        elif _keeps_one_row(analytic, idx, dout, repeated):
            evidence = "each holding one of its rows of dout"
        else:
            continue
        which = ", ".join(str(int(i)) for i in np.flatnonzero(repeated)[:6])
        return (
            f"wrong exactly in the rows {name} holds more than once ({which}), {evidence}: "
            f"dW[{name}] = dout keeps one of the repeated rows; accumulate with "
            f"np.add.at(dW, {name}, dout)?"
        )
    return None


def _keeps_one_row(
    analytic: Floats, idx: np.ndarray, dout: Floats | None, repeated: NDArray[np.bool_]
) -> bool:
    """Whether every repeated row of `analytic` is one of the rows of `dout` sent to it."""
    width = int(np.prod(analytic.shape[1:]))
    if dout is None or dout.size != idx.size * width:
        return False
    sent, flat_idx = dout.reshape(idx.size, width), idx.reshape(-1)
    return all(
        any(_close(analytic[row].reshape(-1), sent[j]) for j in np.flatnonzero(flat_idx == row))
        for row in np.flatnonzero(repeated)
    )


def saturated_loss(analytic: Floats, numeric: Floats, scores: Floats | None) -> str | None:
    """Whole rows of a loss's scores scaled by a factor below 1, one per row, where a
    softmax probability is tiny: a forward computing ``log(y + eps)``.

    There ``d/dx log(y + eps) = y / (y + eps) * d/dx log(y)``: backward (the exact
    gradient of ``log(y)``) and forward part where ``eps / y`` passes the tolerance.
    Evidence: every wrong row is a softmax cross-entropy's gradient (it sums to 0,
    with one negative entry: the label's), it is ``r * analytic`` with ``0 < r < 1``,
    the other rows agree, and one ``eps = y * (1 - r) / r``, ``y`` the label's
    probability, fits every wrong row within 25%; a single wrong row must imply the
    textbook's scale (``eps`` in [1e-9, 1e-5], ``y`` below 1e-4).  Rows flat to
    rounding (``y`` far below ``eps``) are taken as saturated without a fit.
    """
    if scores is None or scores.ndim != 2 or scores.shape != analytic.shape:
        return None
    rows = np.flatnonzero(_wrong(analytic, numeric).any(axis=1))
    if not len(rows):
        return None
    shifted = scores - scores.max(axis=1, keepdims=True)
    probabilities = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    fitted = []  # (eps, label's probability) of each wrong row that is not flat
    for row in rows:
        gradient, label = analytic[row], int(np.argmin(analytic[row]))
        scale = float(np.max(np.abs(gradient)))
        one_label = np.count_nonzero(gradient < -_SAME * scale) == 1
        if not one_label or abs(float(gradient.sum())) > _SAME * scale:
            return None  # not the gradient of a softmax cross-entropy
        if np.max(np.abs(numeric[row])) <= _SAME * scale:
            continue  # flat (to rounding): y so far below eps that log(y + eps) is log(eps)
        found = constant_factor(numeric[row], gradient)
        if found is None or not 0 < found[0] < 1:
            return None
        y = float(probabilities[row, label])
        fitted.append((y * (1 - found[0]) / found[0], y))
    if not fitted or min(e for e, _ in fitted) <= 0:
        return None
    eps = float(np.median([e for e, _ in fitted]))
    if len(fitted) == 1 and not (1e-9 <= eps <= 1e-5 and fitted[0][1] < 1e-4):
        return None
    if any(abs(np.log(e / eps)) > np.log(1.25) for e, _ in fitted):
        return None
    listed = ", ".join(str(int(r)) for r in rows[:6])
    return (
        f"row(s) {listed} each scaled by a factor below 1 of their own: forward computes "
        f"log(y + eps), eps ~ {eps:.1e}, while backward is the gradient of log(y); they part "
        f"where a probability y is not far above eps (the textbook's 1e-7 does so below "
        f"y ~ 1e-4: use less extreme scores)"
    )


def summed_over_wrong_axis(analytic: Floats, numeric: Floats, dout: Floats | None) -> str | None:
    """A bias gradient equal to ``dout`` summed over another axis than the numeric one."""
    if dout is None or dout.ndim < 2:
        return None
    for axis in range(dout.ndim):
        summed = dout.sum(axis=axis)
        fits = summed.shape == analytic.shape and _close(analytic, summed)
        if fits and not _close(numeric, summed):
            return f"analytic equals dout summed over axis {axis}: summed over the wrong axis?"
    return None


@dataclass(frozen=True)
class Evidence:
    """What some patterns are defined by besides the two gradients."""

    name: str = "x"  # the array's name, for the text
    role: Role = Role.INPUT
    values: Floats | None = None  # the array's own values (an input's x, a loss's scores)
    batch_size: int | None = None
    dout: Floats | None = None  # the cotangent passed to backward (single-output targets)
    indices: Mapping[str, np.ndarray] = field(default_factory=dict)  # the integer inputs


def first_hint(analytic: Floats, numeric: Floats, evidence: Evidence | None = None) -> str:
    """The most specific hint that applies, or the empty string."""
    seen = evidence or Evidence()
    weight, data = seen.role is Role.PARAMETER, seen.role is Role.INPUT
    checks: list[Callable[[], str | None]] = [
        lambda: never_written(analytic, numeric),
        lambda: input_not_used(analytic, numeric),
        lambda: constant_ratio(analytic, numeric, seen.batch_size),
        lambda: transposed(analytic, numeric),
        lambda: summed_over_wrong_axis(analytic, numeric, seen.dout),
        lambda: (
            repeats_not_accumulated(analytic, numeric, seen.indices, seen.dout) if weight else None
        ),
        lambda: confined(analytic, numeric),
        lambda: saturated_loss(analytic, numeric, seen.values) if data else None,
        lambda: wrong_only_off_mask(analytic, numeric),
        lambda: one_branch(analytic, numeric, seen.values, seen.name) if data else None,
    ]
    for check in checks:
        found = check()
        if found:
            return found
    return ""


def swapped(first: tuple[str, Floats, Floats], second: tuple[str, Floats, Floats]) -> str | None:
    """Two gradients returned in each other's place (``dx`` and ``dy`` of a Mul layer)."""
    (name_a, analytic_a, numeric_a), (name_b, analytic_b, numeric_b) = first, second
    if analytic_a.shape != numeric_b.shape or analytic_b.shape != numeric_a.shape:
        return None
    if _close(analytic_a, numeric_b) and _close(analytic_b, numeric_a):
        return f"{name_a} matches the numeric {name_b} and vice versa: the two are swapped?"
    return None


def wrong_shape(
    name: str, grad_name: str, array_shape: tuple[int, ...], grad_shape: tuple[int, ...]
) -> str:
    """Why a gradient's shape may differ from its array's, guessed only where the shapes
    show it: transposed, an axis not summed away, the same elements in another shape, a
    sum over the wrong axis; otherwise only what the shape must be."""
    if len(array_shape) == 2 and grad_shape == array_shape[::-1]:
        return (
            f"{grad_name} has {name}'s shape transposed ({grad_shape} for {array_shape}): a "
            f"product in the wrong order (x.T @ dout for a weight), or a missing .T?"
        )
    if grad_shape[1:] == array_shape and grad_shape[0] > 1:  # length 1: keepdims, reshape
        return (
            f"{grad_name} keeps an axis of length {grad_shape[0]} that {name} lacks: not "
            f"summed over the batch (axis 0)?"
        )
    if int(np.prod(grad_shape)) == int(np.prod(array_shape)):
        return f"same number of elements: reshape {grad_name} back to {name}'s shape {array_shape}."
    if len(array_shape) == 1 and len(grad_shape) == 1:
        return (
            f"{grad_name} has length {grad_shape[0]}, {name} {array_shape[0]}: "
            f"summed over the wrong axis?"
        )
    return f"{grad_name} must have {name}'s shape {array_shape}, not {grad_shape}."


def _fmt(value: float) -> str:
    return f"{value:.4g}"

"""Fast mode: projections per tensor, then group testing to name the wrong elements.

A full check costs two forward calls per element.  Here a tensor costs two per
direction ``v``: the numeric difference ``L(x + v) - L(x - v)`` is compared with
what the analytic gradient predicts, ``sum(g * widths)``.  When they disagree,
the direction is restricted to halves of the coordinates; the disagreement is
additive over coordinates, so measuring one half gives the other by subtraction,
and one wrong element among n is found in ``2 * log2(n)`` calls.  Every element
so blamed is then judged exactly as in full mode, on the re-estimate ladder, so
fast mode fails only what the ladder confirms.

The directions:

* along the gradient's signs: a scale error (a missing 1/N) adds up in full;
* random signs: an error in one element or a scattered few;
* one per axis, with the gradient's signs inside each slice and one random sign
  per slice: an error confined to a row, a column, a channel or a border (the
  two ends of an axis share a sign) adds up in full inside its slice, and the
  other slices add only as a random walk.

Two tolerances per projection:

* the *screen*, which nominates a projection for localization: the projection is
  judged as a derivative along ``v``, by the one rule,
  ``|analytic - numeric| <= rtol * |numeric| + atol-spread + noise (+ truncation)``,
  with the truncation error measured from two step sizes and ``atol`` spread as a
  random walk over the elements.  A false nomination
  costs forward calls, never a verdict;
* the *bound*, what errors that each stay inside their own element tolerance
  ``t_i = atol + rtol * |g_i|`` can add up to: in full inside a group of
  coherent signs, as a random walk across groups (``Z`` standard deviations:
  Hoeffding, probability ``2 * exp(-Z**2 / 2)``, 3e-8).  A projection beyond the
  bound in which no element can be blamed is INCONCLUSIVE.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from gradverify import compare, numerics
from gradverify.results import ElementRow, Status, TensorResult, worst_status
from gradverify.tensor_check import (
    Floats,
    LossContext,
    Settings,
    TensorOutcome,
    TensorToCheck,
    base_fields,
    kink_notes,
    reestimate_element,
    settings_for,
    unusable_gradient,
)

#: Standard deviations of the random-walk bound on a projection (see above).
Z = 6.0

#: A projection beyond its screen is measured again with steps this many times
#: smaller: a disagreement caused by curvature shrinks with the step (by 16), one
#: caused by a wrong gradient does not; the change between the two measures the
#: truncation error that is left.
RECHECK_SHRINK = 4.0


@dataclass(frozen=True)
class Direction:
    """One projection: a sign per element, and the groups whose signs are coherent."""

    label: str  # what it is for, in the report
    signs: Floats  # flat, +1 or -1
    groups: np.ndarray  # flat group index per element; errors add up in full inside one
    members: np.ndarray  # the flat indices it moves (a block of slices, or all)


def directions(
    analytic: Floats,
    shape: tuple[int, ...],
    count: int,
    rng: np.random.Generator,
    blocks: int = 1,
) -> list[Direction]:
    """The gradient's signs, ``count - 1`` random ones, then, for a 2-D+ tensor, each axis
    split into up to `blocks` blocks of slices, one projection per block.

    More blocks see a smaller error in one slice (the other slices of its block add
    up as a random walk beside it) for two forward calls each.
    """
    size = analytic.size
    random = _random_signs(rng, size)
    gradient_signs = np.where(analytic != 0, np.sign(analytic), random)
    everyone = np.arange(size)
    found = [
        Direction("the gradient's signs", gradient_signs, np.zeros(size, dtype=np.intp), everyone)
    ]
    found += [
        Direction("random signs", _random_signs(rng, size), everyone, everyone)
        for _ in range(count - 1)
    ]
    if len(shape) < 2:
        return found
    positions = np.indices(shape).reshape(len(shape), -1)
    for axis, length in enumerate(shape):
        if length < 2:
            continue
        per_slice = _random_signs(rng, length)
        per_slice[-1] = per_slice[0]  # a border error (both ends) must not cancel itself
        slices = positions[axis]
        signs = gradient_signs * per_slice[slices]
        order = np.argsort(slices, kind="stable")  # members by slice: bisection takes whole slices
        bounds = np.searchsorted(slices[order], np.arange(length + 1))  # where each slice starts
        for block in np.array_split(np.arange(length), min(blocks, length)):
            members = order[bounds[block[0]] : bounds[block[-1] + 1]]
            found.append(Direction(f"axis {axis}", signs, slices, members))
    return found


def _random_signs(rng: np.random.Generator, size: int) -> Floats:
    return (2 * rng.integers(0, 2, size=size) - 1).astype(np.float64)


@dataclass(frozen=True)
class Measurement:
    """A projection restricted to some members, per unit of step length."""

    difference: float  # analytic minus numeric
    derivative: float  # numeric
    screen: float  # nominating tolerance (see the module docstring)
    bound: float  # what within-tolerance element errors can add up to
    noise: float  # rounding of the loss evaluations behind it


@dataclass
class _Probe:
    """Measures the disagreement of one tensor's gradient along one masked direction.

    Measurements are normalised by the step length, so that the disagreement of
    a group is the sum of its members' ``2 * sign_i * scale_i * (g_i - true_i)``
    whatever the step: that additivity is what lets bisection subtract.
    """

    tensor: TensorToCheck
    analytic: Floats  # flat
    direction: Direction
    scale: Floats  # max(1, |x|) per element: steps follow each element's magnitude
    settings: Settings
    loss: Callable[[], float]
    step: float

    def length(self, members: np.ndarray) -> float:
        """Per-element step: the direction has the Euclidean length of one element's step,
        so a projection perturbs the output no more than one element does (nor crosses
        more kinks)."""
        return self.step / math.sqrt(max(members.size, 1))

    def measure(self, members: np.ndarray) -> Measurement:
        length = self.length(members)
        signs = self.direction.signs
        if members.size == signs.size:  # the whole tensor: no masking needed
            offsets = signs * self.scale * length
        else:
            offsets = np.zeros(signs.size)
            offsets[members] = signs[members] * self.scale[members] * length
        numeric, widths = numerics.directional_difference(
            self.tensor.array, offsets.reshape(self.tensor.array.shape), self.loss
        )
        flat_widths = np.abs(widths.reshape(-1)[members]) / length
        predicted = numerics.inner(self.analytic, widths.reshape(-1)) / length
        noise = 2.0 * self.settings.noise_unit / length
        return self._judged(
            members, predicted - numeric / length, numeric / length, flat_widths, noise
        )

    def rest(self, whole: Measurement, part: Measurement, rest: np.ndarray) -> Measurement:
        """The measurement of a group minus its ``part``, by subtraction (no forward call)."""
        widths = 2.0 * self.scale[rest]  # nominal: the realized ones were not read for the rest
        noise = whole.noise + part.noise
        return self._judged(
            rest,
            whole.difference - part.difference,
            whole.derivative - part.derivative,
            widths,
            noise,
        )

    def _judged(
        self,
        members: np.ndarray,
        difference: float,
        derivative: float,
        widths: Floats,
        noise: float,
    ) -> Measurement:
        atol, rtol = self.settings.atol, self.settings.rtol
        groups = self.direction.groups[members]
        # atol stands for the noise of elements that are sums of cancelling terms: it
        # has no sign of its own, so it spreads as a random walk whatever the direction
        spread = atol * math.sqrt(numerics.inner(widths, widths))
        per_element = widths * (atol + rtol * np.abs(self.analytic[members]))
        # in full inside a coherent group, as a random walk across groups; never beyond the sum
        bound = min(float(np.sum(per_element)), Z * _grouped_norm(per_element, groups))
        screen = rtol * abs(derivative) + spread + noise
        return Measurement(difference, derivative, screen, bound + noise, noise)


def _grouped_norm(values: Floats, groups: np.ndarray) -> float:
    """``sqrt(sum over groups of (sum of values in the group)**2)``; groups are small
    non-negative integers (slice numbers, element numbers, or all 0)."""
    if values.size == 0:
        return 0.0
    sums = np.bincount(groups, weights=values)
    return math.sqrt(numerics.inner(sums, sums))


def check_tensor_fast(tensor: TensorToCheck, context: LossContext) -> TensorOutcome:
    """Check one gradient with a few projections; name and confirm any wrong elements."""
    analytic = unusable_gradient(tensor)
    if isinstance(analytic, TensorOutcome):
        return analytic
    settings = settings_for(tensor, context, analytic, local=False)
    scale = np.maximum(1.0, np.abs(tensor.array.astype(np.float64).reshape(-1)))
    flat_analytic = analytic.reshape(-1)
    step = settings.eps ** (1.0 / 3.0)
    planned = directions(
        flat_analytic,
        tensor.array.shape,
        context.config.directions,
        context.rng,
        _blocks(tensor.array.shape, context.config.directions, context.projection_calls),
    )
    search = _Search(len(planned))
    screens = []
    for direction in planned:
        probe = _Probe(tensor, flat_analytic, direction, scale, settings, context.loss, step)
        whole = probe.measure(direction.members)
        if abs(whole.difference) > whole.screen:
            whole = _recheck(probe, direction.members, whole)
        screens.append((direction, whole))
        search.margin = max(search.margin, _ratio(whole.difference, whole.bound))
        if abs(whole.difference) <= whole.screen:
            continue
        found = _localize(probe, direction.members, whole, context.config.max_reestimate)
        search.blamed += found
        if not found and abs(whole.difference) > whole.bound:
            search.unexplained = True
        if found:
            break  # the elements are named; another direction would name them again
    search.sensitivity = _sensitivity(tensor, screens, flat_analytic, scale)
    return _outcome(tensor, analytic, settings, context, search)


@dataclass
class _Search:
    """What the projections of one tensor found."""

    count: int  # projections planned
    blamed: list[int] = field(default_factory=list)  # elements nominated by bisection
    margin: float = 0.0  # the largest disagreement over its bound
    unexplained: bool = False  # beyond the bound, and no element to blame
    sensitivity: str = ""  # what the projections could see, for the report


def _blocks(shape: tuple[int, ...], count: int, calls: int) -> int:
    """Blocks per axis that `calls` forward calls pay for (2 per projection), at least one."""
    axes = sum(1 for length in shape if length >= 2) if len(shape) >= 2 else 0
    if not axes:
        return 1
    return max(1, (calls // 2 - count) // axes)


def _recheck(probe: _Probe, members: np.ndarray, first: Measurement) -> Measurement:
    """Measure again with a smaller step; the change bounds the truncation error left."""
    probe.step /= RECHECK_SHRINK
    again = probe.measure(members)
    truncation = abs(first.derivative - again.derivative) / (RECHECK_SHRINK**2 - 1)
    return Measurement(
        again.difference,
        again.derivative,
        again.screen + truncation,
        again.bound + truncation,
        again.noise,
    )


def _ratio(difference: float, tol: float) -> float:
    if tol > 0:
        return abs(difference) / tol
    return 0.0 if difference == 0 else math.inf


def _localize(probe: _Probe, members: np.ndarray, whole: Measurement, limit: int) -> list[int]:
    """Bisect down to single elements whose share of the disagreement stays beyond its screen."""
    found: list[int] = []
    pending = [(members, whole)]
    while pending and len(found) < limit:
        group, measured = pending.pop()
        if group.size == 1:
            found.append(int(group[0]))
            continue
        first, second = np.array_split(group, 2)
        first_part = probe.measure(first)
        second_part = probe.rest(measured, first_part, second)
        for part, part_measured in ((second, second_part), (first, first_part)):
            if abs(part_measured.difference) > part_measured.screen:
                pending.append((part, part_measured))
    return found


def _sensitivity(
    tensor: TensorToCheck,
    screens: list[tuple[Direction, Measurement]],
    analytic: Floats,
    scale: Floats,
) -> str:
    """What the projections could see: the smallest error in one element, and the smallest
    relative error of one slice along each axis, that their screens would have nominated."""
    parts = []
    random = [m for d, m in screens if d.label == "random signs"]
    if random:
        smallest = min(m.screen for m in random) / (2.0 * float(np.mean(scale)))
        parts.append(f"one element off by more than ~{smallest:.1e}")
    names = {0: "row", 1: "column"} if tensor.array.ndim == 2 else {}
    by_axis: dict[str, list[float]] = {}
    for direction, measured in screens:
        if direction.label.startswith("axis"):
            members = direction.members
            totals = np.bincount(
                direction.groups[members], weights=2.0 * scale[members] * np.abs(analytic[members])
            )
            typical = float(np.median(totals[totals > 0])) if np.any(totals > 0) else 0.0
            if typical > 0:
                by_axis.setdefault(direction.label, []).append(measured.screen / typical)
    for label, ratios in by_axis.items():
        axis = int(label.split()[1])
        what = names.get(axis, f"slice along axis {axis}")
        parts.append(f"one {what} scaled by more than ~{100 * float(np.median(ratios)):.2g}%")
    return "; ".join(parts)


def _outcome(
    tensor: TensorToCheck,
    analytic: Floats,
    settings: Settings,
    context: LossContext,
    search: _Search,
) -> TensorOutcome:
    """Judge the blamed elements on the ladder and summarize the tensor."""
    blamed = sorted(set(search.blamed))
    flat_analytic = analytic.reshape(-1)
    base_step = settings.eps ** (1.0 / 3.0)
    steps = settings.steps.reshape(-1)
    verdicts = {
        i: reestimate_element(tensor, i, float(flat_analytic[i]), steps[i], settings, context.loss)
        for i in blamed
    }
    judged = sorted(
        ((_row(tensor, i, float(flat_analytic[i]), v), v) for i, v in verdicts.items()),
        key=lambda pair: (pair[1].status is Status.PASS, -pair[0].abs_err),  # failures first
    )
    rows = [row for row, _ in judged]
    failing = [row for row, verdict in judged if verdict.status is not Status.PASS]
    statuses = [v.status for v in verdicts.values()]
    count = search.count
    seen = f", which see {search.sensitivity}" if search.sensitivity else ""
    notes = [f"checked by {count} projections{seen}", _full_mode_cost(tensor.array.size, context)]
    if search.unexplained:
        statuses.append(Status.INCONCLUSIVE)
        notes.append("a projection disagreed but no element could be blamed: rerun mode='full'")
    elif blamed and not failing:
        notes.append("the projections' disagreement was not confirmed element by element")
    worst = max(failing, key=lambda r: r.abs_err, default=None)
    element_margins = [
        r.abs_err / (settings.atol + settings.rtol * abs(r.numeric)) for r in failing
    ]
    result = TensorResult(
        **base_fields(tensor),
        status=worst_status(statuses),
        method=f"{count} projections + bisection",
        step=base_step,
        rtol=settings.rtol,
        atol=settings.atol,
        max_noise=settings.noise_unit / base_step,
        checked=int(analytic.size),
        mismatched=len(failing),
        reestimated=len(blamed),
        max_abs_err=worst.abs_err if worst else 0.0,
        max_abs_index=worst.index if worst else None,
        max_rel_err=max((r.rel_err for r in failing), default=0.0),
        margin=max(element_margins, default=search.margin),
        rows=tuple(rows[: context.config.max_rows]),
        notes=tuple(notes) + kink_notes({i: v.note for i, v in verdicts.items()}),
    )
    return TensorOutcome(result)


def _full_mode_cost(size: int, context: LossContext) -> str:
    calls = 2 * size
    seconds = calls * context.seconds_per_call
    estimate = f", ~{_duration(seconds)}" if math.isfinite(seconds) else ""
    return f"mode='full' checks every element ({calls:,} forward calls{estimate})"


def _duration(seconds: float) -> str:
    """``2.9 s``, ``4.5 min``, ``5.6 h``: an estimate in the unit a person reads."""
    if seconds < 90:
        return f"{seconds:.2g} s"
    if seconds < 5400:
        return f"{seconds / 60:.2g} min"
    return f"{seconds / 3600:.2g} h"


def _row(
    tensor: TensorToCheck, flat: int, analytic: float, verdict: compare.ElementVerdict
) -> ElementRow:
    numeric = verdict.numeric
    error = abs(analytic - numeric)
    relative = error / abs(numeric) if numeric else (math.inf if error else 0.0)
    index = tuple(int(i) for i in np.unravel_index(flat, tensor.array.shape))
    return ElementRow(index, analytic, numeric, error, relative, verdict.note)

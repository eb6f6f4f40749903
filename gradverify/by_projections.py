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
  random walk over the elements.  A false nomination costs forward calls, never a
  verdict: the nominated elements are judged on the ladder at once, and cleared
  ones are left out of the remaining projections;
* the *bound*, what errors that each stay inside their own element tolerance
  ``t_i = atol + rtol * |g_i|`` can add up to: in full inside a group of
  coherent signs, as a random walk across groups (``Z`` standard deviations:
  Hoeffding, probability ``2 * exp(-Z**2 / 2)``, 3e-8).  A projection beyond the
  bound in which no element can be blamed is INCONCLUSIVE.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from gradverify import compare, numerics
from gradverify.planning import full_calls, projected_axes
from gradverify.progress import duration
from gradverify.projections import (
    Along,
    Direction,
    Measurement,
    Probe,
    Run,
    Workspace,
    directions,
)
from gradverify.results import CheckedBy, Status, TensorResult, worst_status
from gradverify.tensors import (
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

#: A projection beyond its screen is measured again with steps this many times
#: smaller: a disagreement caused by curvature shrinks with the step (by 16), one
#: caused by a wrong gradient does not; the change between the two measures the
#: truncation error that is left.
RECHECK_SHRINK = 4.0


def check_by_projections(tensor: TensorToCheck, context: LossContext) -> TensorOutcome:
    """Check one gradient with a few projections; name and confirm any wrong elements."""
    analytic = unusable_gradient(tensor, float64=False)  # converted a chunk at a time
    if isinstance(analytic, TensorOutcome):
        return analytic
    settings = settings_for(tensor, context, analytic, local=False)
    workspace = Workspace(tensor.array)
    flat_analytic = analytic.reshape(-1)
    step = settings.eps ** (1.0 / 3.0)
    planned = directions(
        flat_analytic,
        tensor.array.shape,
        context.config.directions,
        context.rng,
        _blocks(tensor.array.shape, context.config.directions, context.projection_calls),
    )
    search = _Search()
    seen: list[_Seen] = []
    for direction in planned:
        judged = np.array(sorted(search.verdicts), dtype=np.intp)  # left out from now on
        probe = Probe(workspace, flat_analytic, direction, settings, context.loss, step, judged)
        members = direction.run
        if probe.count(members) == 0:
            continue
        whole = probe.measure(members)
        search.measured += 1
        if abs(whole.difference) > whole.screen:
            whole = _recheck(probe, members, whole)
        seen.append(_seen(direction, whole))
        ratio = _ratio(whole.difference, whole.bound)
        if abs(whole.difference) <= whole.screen:
            search.margin = max(search.margin, ratio)
            continue
        found = _localize(probe, members, whole, context.config.max_reestimate)
        if not found:  # a disagreement the elements blamed do not explain
            search.margin = max(search.margin, ratio)
            search.unexplained |= abs(whole.difference) > whole.bound
        search.judge(found, tensor, flat_analytic, settings, context)
        if search.failed:
            break  # confirmed; another direction would name the same elements again
    for _ in planned:  # draw what the rest would have: the next tensor's directions are the same
        pass
    search.sensitivity = _sensitivity(tensor, seen, workspace.mean_scale())
    return _outcome(tensor, analytic, settings, context, search)


@dataclass
class _Search:
    """What the projections of one tensor found.

    Elements that bisection blames are judged on the ladder at once: a confirmed
    failure ends the search, and cleared elements (an input at a kink, say) are
    left out of later projections, so that a false nomination never hides a real
    error in a direction not yet measured.
    """

    measured: int = 0  # projections actually measured
    verdicts: dict[int, compare.ElementVerdict] = field(default_factory=dict)  # blamed elements
    margin: float = 0.0  # the largest disagreement over its bound no blamed element explains
    unexplained: bool = False  # beyond the bound, and no element to blame
    sensitivity: str = ""  # what the projections could see, for the report

    def judge(
        self,
        blamed: list[int],
        tensor: TensorToCheck,
        analytic: Floats,
        settings: Settings,
        context: LossContext,
    ) -> None:
        steps = _steps(tensor, blamed, settings)
        for i, step in zip(blamed, steps):
            if i not in self.verdicts:
                self.verdicts[i] = reestimate_element(
                    tensor, i, float(analytic[i]), float(step), settings, context.loss
                )

    @property
    def failed(self) -> bool:
        return any(v.status is not Status.PASS for v in self.verdicts.values())


def _blocks(shape: tuple[int, ...], count: int, calls: int) -> int:
    """Blocks per axis that `calls` forward calls pay for (2 per projection), at least one."""
    axes = projected_axes(shape)
    if not axes:
        return 1
    return max(1, (calls // 2 - count) // axes)


def _steps(tensor: TensorToCheck, flat: list[int] | np.ndarray, settings: Settings) -> Floats:
    """The central-difference steps of the elements judged one by one (only they need one)."""
    values = tensor.array.reshape(-1)[np.asarray(flat, dtype=np.intp)]
    return numerics.step_sizes(values, settings.eps)


def _recheck(probe: Probe, members: Run, first: Measurement) -> Measurement:
    """Measure again with a smaller step; the change bounds the truncation error left."""
    probe.step /= RECHECK_SHRINK
    again = probe.measure(members)
    truncation = abs(first.derivative - again.derivative) / (RECHECK_SHRINK**2 - 1)
    return replace(again, screen=again.screen + truncation, bound=again.bound + truncation)


def _ratio(difference: float, tol: float) -> float:
    if tol > 0:
        return abs(difference) / tol
    return 0.0 if difference == 0 else math.inf


def _localize(probe: Probe, members: Run, whole: Measurement, limit: int) -> list[int]:
    """Bisect down to single elements whose share of the disagreement stays beyond its screen."""
    found: list[int] = []
    pending = [(members, whole)]
    while pending and len(found) < limit:
        group, measured = pending.pop()
        if probe.count(group) == 1:
            found.append(probe.only(group))
            continue
        first, second = probe.halves(group)
        first_part = probe.measure(first)
        second_part = probe.rest(measured, first_part, second)
        for part, part_measured in ((second, second_part), (first, first_part)):
            if abs(part_measured.difference) > part_measured.screen:
                pending.append((part, part_measured))
    return found


@dataclass(frozen=True)
class _Seen:
    """What a measured direction tells about the projections' sensitivity (its arrays are
    not kept: each is as large as the tensor)."""

    along: Along
    axis: int | None
    screen: float
    typical: float = 0.0  # for an axis: the median |gradient| mass of one slice


def _seen(direction: Direction, measured: Measurement) -> _Seen:
    typical = 0.0
    totals = measured.slice_mass
    if totals is not None and np.any(totals > 0):
        typical = numerics.median(totals[totals > 0])
    return _Seen(direction.along, direction.axis, measured.screen, typical)


def _sensitivity(tensor: TensorToCheck, seen: list[_Seen], mean_scale: float) -> str:
    """What the projections could see: the smallest error in one element, and the smallest
    relative error of one slice along each axis, that their screens would have nominated."""
    parts = []
    random = [s.screen for s in seen if s.along is Along.RANDOM_SIGNS]
    if random:
        smallest = min(random) / (2.0 * mean_scale)
        parts.append(f"one element off by more than ~{smallest:.1e}")
    names = {0: "row", 1: "column"} if tensor.array.ndim == 2 else {}
    by_axis: dict[int, list[float]] = {}
    for measured in seen:
        if measured.axis is not None and measured.typical > 0:
            by_axis.setdefault(measured.axis, []).append(measured.screen / measured.typical)
    for axis, ratios in by_axis.items():
        what = names.get(axis, f"slice along axis {axis}")
        parts.append(f"one {what} scaled by more than ~{100 * numerics.median(ratios):.2g}%")
    return "; ".join(parts)


def _outcome(
    tensor: TensorToCheck,
    analytic: Floats,
    settings: Settings,
    context: LossContext,
    search: _Search,
) -> TensorOutcome:
    """Summarize the tensor from its projections and the verdicts on the blamed elements."""
    verdicts = search.verdicts
    flat = np.array(sorted(verdicts), dtype=np.intp)
    numeric = np.array([verdicts[int(i)].numeric for i in flat], dtype=np.float64)
    noise = numerics.rounding_noise(_steps(tensor, flat, settings), settings.noise_unit)
    found = compare.agreement(
        analytic.reshape(-1)[flat],
        numeric,
        compare.tolerance(numeric, settings.rtol, settings.atol, noise),
        tuple(tensor.array.shape),
        flat,
        verdicts,
    )
    statuses = [v.status for v in verdicts.values()]
    failing = [v for v in verdicts.values() if v.status is not Status.PASS]
    count = search.measured
    seen = f", which see {search.sensitivity}" if search.sensitivity else ""
    notes = [f"checked by {count} projections{seen}", _full_mode_cost(tensor.array.size, context)]
    if search.unexplained:
        statuses.append(Status.INCONCLUSIVE)
        notes.append("a projection disagreed but no element could be blamed: rerun mode='full'")
    elif verdicts and not failing:
        notes.append("the projections' disagreement was not confirmed element by element")
    fields = found.fields(verdicts, context.config.max_rows)
    if not failing:  # what the projections measured: no element is outside its tolerance
        fields["margin"] = max(fields["margin"], search.margin) if verdicts else search.margin
    base_step = settings.eps ** (1.0 / 3.0)
    result = TensorResult(
        **base_fields(tensor),
        status=worst_status(statuses),
        checked_by=CheckedBy.PROJECTIONS,
        method=f"{count} projections + bisection",
        step=base_step,
        rtol=settings.rtol,
        atol=settings.atol,
        max_noise=settings.noise_unit / base_step,
        checked=int(analytic.size),
        notes=tuple(notes) + kink_notes(verdicts),
        **fields,
    )
    return TensorOutcome(result)


def _full_mode_cost(size: int, context: LossContext) -> str:
    calls = full_calls(size)
    seconds = calls * context.seconds_per_call
    estimate = f", ~{duration(seconds)}" if math.isfinite(seconds) else ""
    return f"mode='full' checks every element ({calls:,} forward calls{estimate})"

"""Fast mode: random projections per tensor, then group testing to name the wrong elements.

A full check costs two forward calls per element.  Here a tensor costs two per
random direction: the numeric difference ``L(x + v) - L(x - v)`` is compared
with what the analytic gradient predicts, ``sum(g * widths)``.  When they
disagree, the direction is restricted to halves of the coordinates; because the
disagreement is additive over coordinates, measuring one half gives the other by
subtraction, so one wrong element among n is found in ``2 * log2(n)`` calls.
Every element so blamed is then judged exactly as in full mode, on the
re-estimate ladder, so fast mode fails only what the ladder confirms.

Projection tolerance: with per-element tolerances ``t_i = atol + rtol * |g_i|``
and random signs, errors that each stay inside their own tolerance add up like a
random walk, so ``Z * sqrt(sum (width_i * t_i)**2)`` bounds their projection
except with probability ``2 * exp(-Z**2 / 2)`` (Hoeffding), 3e-8 for ``Z = 6``;
the rounding of the two loss evaluations is added.  A projection outside it only
nominates suspects: nothing fails until the ladder confirms an element.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, replace

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

#: A projection is first rechecked with steps this many times smaller: a
#: disagreement caused by curvature shrinks with the step, one caused by a wrong
#: gradient does not.
RECHECK_SHRINK = 4.0


@dataclass
class _Probe:
    """Measures the disagreement of one tensor's gradient along masked random directions.

    Measurements are normalised by the step length, so that the disagreement of
    a group is the sum of its members' ``2 * sign_i * scale_i * (g_i - true_i)``
    whatever the step: that additivity is what lets bisection subtract.
    """

    tensor: TensorToCheck
    analytic: Floats  # flat
    signs: Floats
    scale: Floats  # max(1, |x|) per element: steps follow each element's magnitude
    settings: Settings
    loss: Callable[[], float]
    step: float
    coherent: bool = False  # signs follow the gradient's: errors may add up in full

    def _bound(self, contributions: Floats) -> float:
        """How far per-element tolerances can add up: fully for coherent signs, as a
        random walk (Z standard deviations) for random ones."""
        if self.coherent:
            return float(np.sum(np.abs(contributions)))
        return Z * math.sqrt(numerics.inner(contributions, contributions))

    def length(self, members: np.ndarray) -> float:
        """Per-element step: the direction has the Euclidean length of one element's step,
        so a projection perturbs the output no more than one element does (nor crosses
        more kinks)."""
        return self.step / math.sqrt(max(members.size, 1))

    def disagreement(self, members: np.ndarray) -> tuple[float, float]:
        """(analytic - numeric, tolerance) along the direction restricted to `members`."""
        length = self.length(members)
        if members.size == self.signs.size:  # the whole tensor: no masking needed
            offsets = self.signs * self.scale * length
        else:
            offsets = np.zeros(self.signs.size)
            offsets[members] = self.signs[members] * self.scale[members] * length
        numeric, widths = numerics.directional_difference(
            self.tensor.array, offsets.reshape(self.tensor.array.shape), self.loss
        )
        flat_widths = widths.reshape(-1)
        predicted = numerics.inner(self.analytic, flat_widths)
        tol = self._bound(flat_widths * self.per_element)
        return (predicted - numeric) / length, tol / length + self.noise(length)

    def nominal_tolerance(self, members: np.ndarray) -> float:
        """A group's tolerance without measuring it (nominal widths, no noise term)."""
        return self._bound(2.0 * self.scale[members] * self.per_element[members])

    def noise(self, length: float) -> float:
        """Rounding of the two loss evaluations, per unit of step length."""
        return 2.0 * self.settings.noise_unit / length

    @functools.cached_property
    def per_element(self) -> Floats:
        """Each element's own tolerance, ``atol + rtol * |g_i|``."""
        return self.settings.atol + self.settings.rtol * np.abs(self.analytic)


def check_tensor_fast(tensor: TensorToCheck, context: LossContext) -> TensorOutcome:
    """Check one gradient with `CheckConfig.directions` random projections."""
    analytic = unusable_gradient(tensor)
    if isinstance(analytic, TensorOutcome):
        return analytic
    settings = settings_for(tensor, context, analytic, local=False)
    size = tensor.array.size
    everyone = np.arange(size)
    scale = np.maximum(1.0, np.abs(tensor.array.astype(np.float64).reshape(-1)))
    flat_analytic = analytic.reshape(-1)
    margin, blamed, unexplained = 0.0, [], False
    for direction in range(context.config.directions):
        random_signs = (2 * context.rng.integers(0, 2, size=size) - 1).astype(np.float64)
        # The first direction follows the gradient's signs, so that an error of scale
        # (a missing 1/N) adds up in full instead of as a random walk.
        coherent = direction == 0
        signs = np.where(flat_analytic != 0, np.sign(flat_analytic), random_signs)
        step = settings.eps ** (1.0 / 3.0)
        probe = _Probe(
            tensor,
            flat_analytic,
            signs if coherent else random_signs,
            scale,
            settings,
            context.loss,
            step,
            coherent,
        )
        difference, tol = probe.disagreement(everyone)
        if abs(difference) > tol:
            probe.step = step / RECHECK_SHRINK
            difference, tol = probe.disagreement(everyone)
        margin = max(margin, _ratio(difference, tol))
        if abs(difference) > tol:
            found = _localize(probe, everyone, difference, context.config.max_reestimate)
            blamed += found
            unexplained = unexplained or not found
            if found:
                break  # the elements are named; another direction would name them again
    # What one element must be off by for a random-sign projection to see it.
    random_walk = replace(probe, coherent=False)
    mean_scale = float(np.mean(scale)) if size else 1.0
    sensitivity = random_walk.nominal_tolerance(everyone) / (2.0 * mean_scale)
    return _outcome(
        tensor, analytic, settings, context, sorted(set(blamed)), margin, unexplained, sensitivity
    )


def _ratio(difference: float, tol: float) -> float:
    if tol > 0:
        return abs(difference) / tol
    return 0.0 if difference == 0 else math.inf


def _localize(probe: _Probe, members: np.ndarray, difference: float, limit: int) -> list[int]:
    """Bisect down to single elements whose share of the disagreement stays out of tolerance."""
    found: list[int] = []
    pending = [(members, difference, probe.noise(probe.length(members)))]
    while pending and len(found) < limit:
        group, group_difference, group_noise = pending.pop()
        if group.size == 1:
            found.append(int(group[0]))
            continue
        first, second = np.array_split(group, 2)
        first_difference, first_tol = probe.disagreement(first)
        first_noise = probe.noise(probe.length(first))
        # The second half is the group minus the first: its noise is both measurements'.
        second_tol = probe.nominal_tolerance(second) + group_noise + first_noise
        for part, part_difference, part_tol, part_noise in (
            (second, group_difference - first_difference, second_tol, group_noise + first_noise),
            (first, first_difference, first_tol, first_noise),
        ):
            if abs(part_difference) > part_tol:
                pending.append((part, part_difference, part_noise))
    return found


def _outcome(
    tensor: TensorToCheck,
    analytic: Floats,
    settings: Settings,
    context: LossContext,
    blamed: list[int],
    margin: float,
    unexplained: bool,
    sensitivity: float,
) -> TensorOutcome:
    """Judge the blamed elements on the ladder and summarize the tensor."""
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
    k = context.config.directions
    notes = [f"{k} random projection(s): an error in one element shows above ~{sensitivity:.1e}"]
    if unexplained:
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
        method=f"{k} projections + bisection",
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
        margin=max(element_margins, default=margin),
        rows=tuple(rows[: context.config.max_rows]),
        notes=tuple(notes) + kink_notes({i: v.note for i, v in verdicts.items()}),
    )
    return TensorOutcome(result)


def _row(
    tensor: TensorToCheck, flat: int, analytic: float, verdict: compare.ElementVerdict
) -> ElementRow:
    numeric = verdict.numeric
    error = abs(analytic - numeric)
    relative = error / abs(numeric) if numeric else (math.inf if error else 0.0)
    index = tuple(int(i) for i in np.unravel_index(flat, tensor.array.shape))
    return ElementRow(index, analytic, numeric, error, relative, verdict.note)

"""The full strategy: every element of a gradient by central differences.

Two forward calls per element; the elements outside the tolerance are re-estimated on
the ladder of smaller steps, the worst first, and only what the ladder confirms fails.
`by_projections` is the other strategy, for tensors too large for the time budget.
"""

from __future__ import annotations

import math

import numpy as np

from gradverify import compare, numerics, workers
from gradverify.errors import CheckInterrupted, interrupted
from gradverify.results import Status, TensorResult, worst_status
from gradverify.tensors import (
    Floats,
    LossContext,
    Settings,
    TensorOutcome,
    TensorToCheck,
    base_fields,
    failure_hint,
    kink_notes,
    reestimate_element,
    settings_for,
    unusable_gradient,
)

#: How many kinks may be re-estimated beyond the budget, in multiples of it.
KINK_ALLOWANCE = 5


def check_every_element(tensor: TensorToCheck, context: LossContext) -> TensorOutcome:
    """Compare the analytic gradient of one array with central differences, element by element."""
    analytic = unusable_gradient(tensor)
    if isinstance(analytic, TensorOutcome):
        return analytic
    settings = settings_for(tensor, context, analytic)
    steps = settings.steps
    try:
        numeric = _central_differences(tensor, steps, context)
    except CheckInterrupted as during:
        during.tensors.append(_interrupted(tensor, analytic, settings, during.numeric, context))
        raise
    noise = numerics.rounding_noise(steps, settings.noise_unit)
    tol = compare.tolerance(numeric, settings.rtol, settings.atol, noise)
    max_noise = float(np.max(noise, initial=0.0))
    del noise  # arrays as large as the tensor are let go as soon as they are used
    first = compare.agreement(analytic, numeric, tol)
    try:
        verdicts, smooth = _reestimate_suspects(tensor, first, settings, context)
    except KeyboardInterrupt as stop:  # every element estimated: report them, unconfirmed
        after = interrupted(stop)
        after.tensors.append(_interrupted(tensor, analytic, settings, numeric, context))
        raise after from None
    if verdicts:
        numeric = _with_reestimates(numeric, verdicts)
        found = compare.agreement(analytic, numeric, first.tol, verdicts=verdicts)
    else:  # nothing re-estimated: the first comparison stands
        found = first
    unjudged = [f for f in found.suspects(found.flat.size) if f not in verdicts]
    # the suspects left unjudged count as cleared only if the whole re-estimate budget
    # of smooth (non-kink) elements was spent and every one of them passed
    undecided = bool(unjudged) and smooth < context.config.max_reestimate
    status = worst_status([v.status for v in verdicts.values()] + [Status.INCONCLUSIVE] * undecided)
    if status is Status.PASS:
        found = found.cleared()
    why = f"{len(unjudged)} element(s) outside tolerance were not re-estimated (kinks first)"
    result = TensorResult(
        **base_fields(tensor),
        status=status,
        step=numerics.median(steps),
        rtol=settings.rtol,
        atol=settings.atol,
        max_noise=max_noise,
        checked=int(analytic.size),
        hint=failure_hint(status, tensor, analytic, numeric, context),
        notes=kink_notes(verdicts) + ((why,) if undecided else ()),
        **found.fields(verdicts, context.config.max_rows),
        error_map=None if status is Status.PASS else compare.error_map(found),
    )
    return TensorOutcome(result, analytic, numeric)


def _central_differences(tensor: TensorToCheck, steps: Floats, context: LossContext) -> Floats:
    """Every element's numeric derivative: through the target's batches where it offers
    them (a sandboxed child), else shared among the workers asked for, else in turn."""
    batch = context.batch(tensor)
    if batch is not None or context.config.workers == 1:
        return numerics.central_differences(tensor.array, steps, context.loss, batch)
    return workers.central_differences(
        tensor.array,
        steps,
        context.loss,
        context.config.workers,
        context.seconds_per_call,
        context.advance,
    )


def _interrupted(
    tensor: TensorToCheck,
    analytic: Floats,
    settings: Settings,
    done: Floats | None,
    context: LossContext,
) -> TensorResult:
    """The elements estimated before Ctrl-C, compared but not re-estimated: what the
    check had found, never a verdict (INCONCLUSIVE)."""
    done = np.zeros(0) if done is None else done.reshape(-1)
    count = done.size
    steps = settings.steps.reshape(-1)[:count]
    noise = numerics.rounding_noise(steps, settings.noise_unit)
    tol = compare.tolerance(done, settings.rtol, settings.atol, noise)
    found = compare.agreement(
        analytic.reshape(-1)[:count], done, tol, analytic.shape, np.arange(count)
    )
    return TensorResult(
        **base_fields(tensor),
        status=Status.INCONCLUSIVE,
        step=numerics.median(steps),
        rtol=settings.rtol,
        atol=settings.atol,
        max_noise=float(np.max(noise, initial=0.0)),
        checked=count,
        notes=(
            f"interrupted: {count:,} of {analytic.size:,} elements estimated"
            f"{', the first in order' if count < analytic.size else ''}; none re-estimated",
        ),
        **found.fields({}, context.config.max_rows),
    )


def _reestimate_suspects(
    tensor: TensorToCheck, first: compare.Agreement, settings: Settings, context: LossContext
) -> tuple[dict[int, compare.ElementVerdict], int]:
    """Re-estimate the worst elements outside tolerance on the ladder: each one's verdict
    by flat index, and how many were smooth (not at a kink).

    Kinks do not count against `CheckConfig.max_reestimate` (a pass at a kink says
    nothing about the elements behind it), up to `KINK_ALLOWANCE` times that budget.
    """
    budget = context.config.max_reestimate
    steps = settings.steps.reshape(-1)
    verdicts: dict[int, compare.ElementVerdict] = {}
    smooth = 0
    for flat in first.suspects(KINK_ALLOWANCE * budget):
        if smooth >= budget:
            break
        analytic = float(first.analytic[flat])
        verdicts[flat] = reestimate_element(
            tensor, flat, analytic, steps[flat], settings, context.loss
        )
        smooth += not verdicts[flat].outcome.at_kink
    return verdicts, smooth


def _with_reestimates(numeric: Floats, verdicts: dict[int, compare.ElementVerdict]) -> Floats:
    """The numeric gradient with each finite re-estimate in place of the first estimate."""
    better = numeric.copy()
    flat = better.reshape(-1)
    for index, verdict in verdicts.items():
        if math.isfinite(verdict.numeric):
            flat[index] = verdict.numeric
    return better

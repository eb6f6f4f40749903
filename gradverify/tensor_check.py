"""Check one gradient: numeric estimate, comparison, re-estimation of suspects, summary.

`check_tensor` is the per-tensor half of a check; `checks` runs the target,
collects the analytic gradients and calls this once per input and parameter.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from itertools import combinations
from typing import Any

import numpy as np

from gradverify import compare, hints, numerics
from gradverify.config import CheckConfig
from gradverify.results import (
    Finding,
    FindingKind,
    Role,
    Severity,
    Status,
    TensorResult,
    worst_status,
)

Floats = compare.Floats


@dataclass(frozen=True)
class TensorToCheck:
    """An array to differentiate (perturbed in place) and the analytic gradient for it."""

    name: str
    grad_name: str
    role: Role
    array: np.ndarray
    analytic: Any


@dataclass(frozen=True)
class LossContext:
    """What every tensor of one check shares: the scalar loss and its precision.

    ``magnitude`` is ``S = sum |dout * f(x)|`` at the centre, the scale of the
    rounding error of ``loss()``.
    """

    loss: Callable[[], float]
    changed: Callable[[], float]  # sum |dout * f| over the outputs moved from the centre
    output_dtypes: tuple[np.dtype, ...]
    magnitude: float
    config: CheckConfig
    batch_size: int | None
    rng: np.random.Generator  # directions of fast mode; separate from the cotangent's
    dout: np.ndarray | None = None  # the cotangent of a single-output target, for hints
    indices: Mapping[str, np.ndarray] = field(default_factory=dict)  # integer inputs, for hints
    seconds_per_call: float = math.nan  # measured time of one loss(), for cost estimates
    #: The loss at many element settings of a tensor at once, where the target offers it
    batch: Callable[[TensorToCheck], numerics.BatchLoss | None] = lambda tensor: None
    projection_calls: int = 0  # forward calls fast mode may spend per tensor (auto's budget)


@dataclass(frozen=True)
class TensorOutcome:
    """The result, plus the arrays behind it for hints that span two tensors."""

    result: TensorResult
    analytic: Floats | None = None
    numeric: Floats | None = None


@dataclass(frozen=True)
class Settings:
    """The numerics of one tensor: the precision it is judged at, and the tolerance rule."""

    eps: float
    rtol: float
    atol: float
    steps: Floats  # each element's central-difference step
    noise_unit: float  # rounding of one loss difference: NOISE_FACTOR * eps * local S


def settings_for(
    tensor: TensorToCheck, context: LossContext, analytic: Floats, *, local: bool = True
) -> Settings:
    """Judge at the least precise of the outputs, the computation and the array itself,
    with the rounding noise of the loss terms one element moves (``local``) or, for
    projections that move every element at once, of the whole loss."""
    precision = numerics.precision_dtype([*context.output_dtypes, tensor.array.dtype])
    eps = float(np.finfo(precision).eps)
    rtol, atol = context.config.tolerances(precision)
    atol = compare.scaled_atol(rtol, atol, analytic)
    steps = numerics.step_sizes(tensor.array, eps)
    magnitude = (
        numerics.local_magnitude(tensor.array, steps, context.changed, context.magnitude)
        if local
        else context.magnitude
    )
    return Settings(eps, rtol, atol, steps, numerics.NOISE_FACTOR * eps * magnitude)


def base_fields(tensor: TensorToCheck) -> dict[str, Any]:
    """The fields of a `TensorResult` that describe the array, whatever the method."""
    return dict(
        name=tensor.name,
        grad_name=tensor.grad_name,
        role=tensor.role,
        shape=tuple(tensor.array.shape),
        dtype=str(tensor.array.dtype),
    )


def unusable_gradient(tensor: TensorToCheck) -> TensorOutcome | Floats:
    """The analytic gradient as a float64 array, or the outcome explaining why it is unusable."""
    analytic, problem, status = _analytic_array(tensor)
    if analytic is not None:
        return analytic
    hint = _shape_hint(tensor)
    if tensor.analytic is None:
        hint = (
            f"did backward forget to return it (return {tensor.grad_name})?"
            if tensor.role is Role.INPUT
            else f"backward must store it where the check reads it ({tensor.grad_name})."
        )
    result = TensorResult(**base_fields(tensor), status=status, problem=problem, hint=hint)
    return TensorOutcome(result)


def check_tensor(tensor: TensorToCheck, context: LossContext) -> TensorOutcome:
    """Compare the analytic gradient of one array with central differences, element by element."""
    analytic = unusable_gradient(tensor)
    if isinstance(analytic, TensorOutcome):
        return analytic
    settings = settings_for(tensor, context, analytic)
    steps = settings.steps
    numeric = numerics.central_differences(tensor.array, steps, context.loss, context.batch(tensor))
    noise = numerics.rounding_noise(steps, settings.noise_unit)
    tol = compare.tolerance(numeric, settings.rtol, settings.atol, noise)
    verdicts, unjudged = _reestimate_suspects(
        tensor, analytic, numeric, tol, steps, settings, context
    )
    statuses = [v.status for v in verdicts.values()] + [Status.INCONCLUSIVE] * bool(unjudged)
    status = worst_status(statuses)
    if status is Status.PASS:  # elements the budget rule cleared count as within tolerance
        tol = np.maximum(tol, np.abs(analytic - numeric))
    summary = compare.error_summary(analytic, numeric, tol)
    result = TensorResult(
        **base_fields(tensor),
        status=status,
        step=float(np.median(steps)) if steps.size else math.nan,
        rtol=settings.rtol,
        atol=settings.atol,
        max_noise=float(np.max(noise, initial=0.0)),
        checked=int(analytic.size),
        mismatched=_count_mismatched(analytic, numeric, tol, verdicts, status),
        reestimated=len(verdicts),
        rows=compare.worst_rows(analytic, numeric, tol, verdicts, context.config.max_rows),
        hint=failure_hint(status, tensor, analytic, numeric, context),
        notes=kink_notes(verdicts) + ((unjudged,) if unjudged else ()),
        **summary,
    )
    return TensorOutcome(result, analytic, numeric)


def failure_hint(
    status: Status, tensor: TensorToCheck, analytic: Floats, numeric: Floats, context: LossContext
) -> str:
    """A hint for a gradient that did not pass; none for one that did."""
    if status is Status.PASS:
        return ""
    evidence = hints.Evidence(
        name=tensor.name,
        values=tensor.array.astype(np.float64, copy=False),
        batch_size=context.batch_size,
        dout=context.dout,
        indices=context.indices,
    )
    return hints.first_hint(analytic, numeric, evidence)


def reestimate_element(
    tensor: TensorToCheck,
    flat: int,
    analytic: float,
    step: float,
    settings: Settings,
    loss: Callable[[], float],
) -> compare.ElementVerdict:
    """Re-estimate one element on the step ladder and judge it; the element is restored."""
    container, keys = numerics.element_access(tensor.array)
    key = keys[flat]
    original = container[key]
    try:
        loss_at = _loss_at(container, key, loss)
        again = numerics.reestimate(loss_at, float(original), step, settings.noise_unit)
    finally:
        container[key] = original
    return compare.judge_reestimate(analytic, again, settings.rtol, settings.atol)


def _analytic_array(tensor: TensorToCheck) -> tuple[Floats | None, str, Status]:
    """The analytic gradient as float64 of the array's shape, or why it cannot be and the
    verdict that is: a wrong value FAILs; a NaN or inf cannot be compared (ERROR)."""
    value = tensor.analytic
    if value is None:
        return None, f"{tensor.grad_name} is None: backward never wrote it", Status.FAIL
    array = numerics.real_array(value)
    if array is None:
        dtype = getattr(value, "dtype", None)
        kind = f"an array of dtype {dtype}" if dtype is not None else type(value).__name__
        if getattr(dtype, "kind", "") == "O":
            kind = "an object array"
        return None, f"{tensor.grad_name} is {kind}, not an array of real numbers", Status.FAIL
    if array.shape != tensor.array.shape:
        problem = (
            f"{tensor.grad_name} has shape {array.shape}, but {tensor.name} has shape "
            f"{tensor.array.shape}"
        )
        return None, problem, Status.FAIL
    if not np.all(np.isfinite(array)):
        where = tuple(int(i) for i in np.argwhere(~np.isfinite(array))[0])
        return None, f"{tensor.grad_name} is not finite at {where}: {array[where]}", Status.ERROR
    return array, "", Status.PASS


def _shape_hint(tensor: TensorToCheck) -> str:
    if numerics.real_array(tensor.analytic) is None:
        return ""
    shape = np.shape(tensor.analytic)
    if shape == tensor.array.shape:
        return ""
    return hints.wrong_shape(tensor.name, tensor.grad_name, tensor.array.shape, tuple(shape))


#: Kinks do not count against `CheckConfig.max_reestimate` (a pass at a kink says
#: nothing about the elements behind it), up to this many times that budget.
KINK_ALLOWANCE = 5


def _reestimate_suspects(
    tensor: TensorToCheck,
    analytic: Floats,
    numeric: Floats,
    tol: Floats,
    steps: Floats,
    settings: Settings,
    context: LossContext,
) -> tuple[dict[int, compare.ElementVerdict], str]:
    """Re-estimate the worst elements outside tolerance; update `numeric` and `tol` in place.

    Returns each re-estimated element's verdict, by flat index.  An element cleared
    by re-estimation gets its tolerance widened to its error, so that it no longer
    counts as mismatched.  The suspects left unjudged count as cleared only if
    `max_reestimate` smooth (non-kink) re-estimates all passed; otherwise the second
    value says how many were left, and the tensor is INCONCLUSIVE.
    """
    flat_numeric, flat_analytic, flat_steps, flat_tol = (
        a.reshape(-1) for a in (numeric, analytic, steps, tol)
    )
    budget = context.config.max_reestimate
    candidates = compare.suspects(analytic, numeric, tol, KINK_ALLOWANCE * budget)
    verdicts: dict[int, compare.ElementVerdict] = {}
    smooth = 0
    for flat in candidates:
        if smooth >= budget:
            break
        verdict = reestimate_element(
            tensor, flat, float(flat_analytic[flat]), flat_steps[flat], settings, context.loss
        )
        verdicts[flat] = verdict
        smooth += not verdict.outcome.at_kink
        if math.isfinite(verdict.numeric):
            flat_numeric[flat] = verdict.numeric
        if verdict.status is Status.PASS:
            error = abs(flat_analytic[flat] - flat_numeric[flat])
            flat_tol[flat] = max(flat_tol[flat], error)
    outside = compare.suspects(analytic, numeric, tol, analytic.size)
    unjudged = sum(1 for flat in outside if flat not in verdicts)  # never re-estimated
    if unjudged and smooth < budget:
        why = f"{unjudged} element(s) outside tolerance were not re-estimated (kinks first)"
        return verdicts, why
    return verdicts, ""


def _loss_at(
    container: Any, key: Any, loss: Callable[[], float]
) -> Callable[[float], tuple[float, float]]:
    def at(value: float) -> tuple[float, float]:
        container[key] = value
        realized = float(container[key])  # read before loss(): a bad forward may write into it
        return loss(), realized

    return at


def _count_mismatched(
    analytic: Floats,
    numeric: Floats,
    tol: Floats,
    verdicts: dict[int, compare.ElementVerdict],
    status: Status,
) -> int:
    """Elements outside tolerance that re-estimation did not clear.

    When every re-estimated element (the worst ones) was cleared, and so the tensor
    passes, the less bad ones beyond `CheckConfig.max_reestimate` are taken as cleared too.
    """
    if status is Status.PASS:
        return 0
    outside = np.abs(analytic - numeric).reshape(-1) > tol.reshape(-1)
    cleared = [i for i, v in verdicts.items() if v.status is Status.PASS]
    outside[cleared] = False
    return int(np.count_nonzero(outside))


def kink_notes(verdicts: Mapping[int, compare.ElementVerdict]) -> tuple[str, ...]:
    kinks = sum(1 for verdict in verdicts.values() if verdict.outcome.at_kink)
    if not kinks:
        return ()
    return (f"{kinks} element(s) at a kink (non-differentiable point); see rows marked 'kink'",)


def with_finding_hints(results: list[TensorResult], findings: list[Finding]) -> list[TensorResult]:
    """Point failing gradients without a hint of their own at a finding that explains them.

    Only an error explains them: a loss layer ignoring dout is a warning, and with the
    ``dout = 1`` its scalar output is checked with, ignoring it changes no gradient."""
    ignored = [
        f for f in findings if f.kind is FindingKind.DOUT_IGNORED and f.severity is Severity.ERROR
    ]
    if not ignored:
        return results
    hint = "backward ignores dout (see the finding above): multiply the gradient by dout."
    return [replace(r, hint=hint) if r.status is Status.FAIL and not r.hint else r for r in results]


def with_swap_hints(outcomes: list[TensorOutcome]) -> list[TensorResult]:
    """The results, with a hint on both of any two failing gradients that are swapped."""
    results = [o.result for o in outcomes]
    failing = [
        (i, (o.result.grad_name, o.analytic, o.numeric))
        for i, o in enumerate(outcomes)
        if o.result.status is Status.FAIL and o.analytic is not None and o.numeric is not None
    ]
    for (i, first), (j, second) in combinations(failing, 2):
        found = hints.swapped(first, second)
        if found:
            results[i] = replace(results[i], hint=found)
            results[j] = replace(results[j], hint=found)
    return results

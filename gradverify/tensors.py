"""What checking one gradient takes, whichever strategy checks it.

A check hands each input and weight to one of two strategies: `every_element`
(central differences of every element) or `by_projections` (fast mode:
directional derivatives, then bisection).  Both read the same things from here: the
tensor to check and the loss it is checked against (`TensorToCheck`, `LossContext`),
the precision and tolerance it is judged at (`Settings`), an analytic gradient that
cannot be compared at all (`unusable_gradient`), the re-estimate ladder for one
element; both summarize through one record, `compare.Agreement`, and the full
strategy, which has every numeric value, hints from it (`failure_hint`).
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
    advance: Callable[[int], None] = lambda calls: None  # forward calls made elsewhere (workers)


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
    steps: Floats  # each element's central-difference step (none for projections)
    noise_unit: float  # rounding of one loss difference: NOISE_FACTOR * eps * local S


def settings_for(
    tensor: TensorToCheck, context: LossContext, analytic: Floats, *, local: bool = True
) -> Settings:
    """Judge at the least precise of the outputs, the computation and the array itself,
    with the rounding noise of the loss terms one element moves (``local``) or, for
    projections that move every element at once, of the whole loss (and no steps: the
    projections take the steps of the few elements they judge one by one)."""
    precision = numerics.precision_dtype([*context.output_dtypes, tensor.array.dtype])
    eps = float(np.finfo(precision).eps)
    rtol, atol = context.config.tolerances(precision)
    atol = compare.scaled_atol(rtol, atol, analytic)
    if not local:
        noise_unit = numerics.NOISE_FACTOR * eps * context.magnitude
        return Settings(eps, rtol, atol, np.empty(0), noise_unit)
    steps = numerics.step_sizes(tensor.array, eps)
    magnitude = numerics.local_magnitude(tensor.array, steps, context.changed, context.magnitude)
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


def unusable_gradient(tensor: TensorToCheck, *, float64: bool = True) -> TensorOutcome | Floats:
    """The analytic gradient as a float64 array, or the outcome explaining why it is unusable.

    Without `float64`, the array in its own real dtype: fast mode converts a chunk at a
    time, so that a float32 gradient as large as memory allows is not doubled."""
    analytic, problem, status = _analytic_array(tensor, float64)
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


def failure_hint(
    status: Status, tensor: TensorToCheck, analytic: Floats, numeric: Floats, context: LossContext
) -> str:
    """A hint for a gradient that did not pass; none for one that did."""
    if status is Status.PASS:
        return ""
    evidence = hints.Evidence(
        name=tensor.name,
        role=tensor.role,
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


def _analytic_array(tensor: TensorToCheck, float64: bool) -> tuple[Floats | None, str, Status]:
    """The analytic gradient (in float64, or its own dtype) of the array's shape, or why it
    cannot be and the verdict that is: a wrong value FAILs; a NaN or inf cannot be compared
    (ERROR).  It is a private copy already, and never written: no copy is made."""
    value = tensor.analytic
    if value is None:
        return None, f"{tensor.grad_name} is None: backward never wrote it", Status.FAIL
    array = numerics.real_array(value, copy=False) if float64 else numerics.real_values(value)
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


def _loss_at(
    container: Any, key: Any, loss: Callable[[], float]
) -> Callable[[float], tuple[float, float]]:
    def at(value: float) -> tuple[float, float]:
        container[key] = value
        realized = float(container[key])  # read before loss(): a bad forward may write into it
        return loss(), realized

    return at


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

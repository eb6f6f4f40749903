"""Check one gradient: numeric estimate, comparison, re-estimation of suspects, summary.

`check_tensor` is the per-tensor half of a check; `checks` runs the target,
collects the analytic gradients and calls this once per input and parameter.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from gradverify import compare, hints, numerics
from gradverify.config import CheckConfig
from gradverify.results import Status, TensorResult, worst_status

Floats = compare.Floats


@dataclass(frozen=True)
class TensorToCheck:
    """An array to differentiate (perturbed in place) and the analytic gradient for it."""

    name: str
    grad_name: str
    role: str  # "input" or "parameter"
    array: np.ndarray
    analytic: Any


@dataclass(frozen=True)
class LossContext:
    """What every tensor of one check shares: the scalar loss and its precision.

    ``magnitude`` is ``S = sum |dout * f(x)|`` at the centre, the scale of the
    rounding error of ``loss()``.
    """

    loss: Callable[[], float]
    output_dtypes: tuple[np.dtype, ...]
    magnitude: float
    config: CheckConfig
    batch_size: int | None


@dataclass(frozen=True)
class TensorOutcome:
    """The result, plus the arrays behind it for hints that span two tensors."""

    result: TensorResult
    analytic: Floats | None = None
    numeric: Floats | None = None


def check_tensor(tensor: TensorToCheck, context: LossContext) -> TensorOutcome:
    """Compare the analytic gradient of one array with central differences."""
    analytic, problem = _analytic_array(tensor)
    base: dict[str, Any] = dict(
        name=tensor.name,
        grad_name=tensor.grad_name,
        role=tensor.role,
        shape=tuple(tensor.array.shape),
        dtype=str(tensor.array.dtype),
    )
    if analytic is None:
        status = Status.ERROR if "not finite" in problem else Status.FAIL
        hint = _shape_hint(tensor)
        return TensorOutcome(TensorResult(**base, status=status, problem=problem, hint=hint))
    precision = numerics.precision_dtype([*context.output_dtypes, tensor.array.dtype])
    eps = float(np.finfo(precision).eps)
    rtol, atol = context.config.tolerances(precision)
    steps = numerics.step_sizes(tensor.array, eps)
    numeric = numerics.central_differences(tensor.array, steps, context.loss)
    noise = numerics.rounding_noise(steps, eps, context.magnitude)
    tol = compare.tolerance(numeric, rtol, atol, noise)
    statuses, notes = _reestimate_suspects(
        tensor, analytic, numeric, tol, steps, eps, (rtol, atol), context
    )
    status = worst_status(list(statuses.values()))
    mismatched = _count_mismatched(analytic, numeric, tol, statuses)
    summary = compare.error_summary(analytic, numeric, tol)
    failing = status is not Status.PASS
    result = TensorResult(
        **base,
        status=status,
        step=float(np.median(steps)) if steps.size else math.nan,
        rtol=rtol,
        atol=atol,
        max_noise=float(np.max(noise, initial=0.0)),
        checked=int(analytic.size),
        mismatched=mismatched,
        reestimated=len(statuses),
        rows=compare.worst_rows(analytic, numeric, tol, notes, context.config.max_rows),
        hint=hints.first_hint(analytic, numeric, context.batch_size) if failing else "",
        notes=_kink_notes(notes),
        **summary,
    )
    return TensorOutcome(result, analytic, numeric)


def _analytic_array(tensor: TensorToCheck) -> tuple[Floats | None, str]:
    """The analytic gradient as float64 of the array's shape, or why it cannot be."""
    value = tensor.analytic
    if value is None:
        return None, f"{tensor.grad_name} is None: backward never wrote it"
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return None, f"{tensor.grad_name} is {type(value).__name__}, not an array of numbers"
    if array.shape != tensor.array.shape:
        return None, (
            f"{tensor.grad_name} has shape {array.shape}, but {tensor.name} has shape "
            f"{tensor.array.shape}"
        )
    if not np.all(np.isfinite(array)):
        where = tuple(int(i) for i in np.argwhere(~np.isfinite(array))[0])
        return None, f"{tensor.grad_name} is not finite at {where}: {array[where]}"
    return array, ""


def _shape_hint(tensor: TensorToCheck) -> str:
    shape = np.shape(tensor.analytic) if tensor.analytic is not None else None
    if shape is None or shape == tensor.array.shape:
        return ""
    return hints.wrong_shape(tensor.name, tensor.grad_name, tensor.array.shape, tuple(shape))


def _reestimate_suspects(
    tensor: TensorToCheck,
    analytic: Floats,
    numeric: Floats,
    tol: Floats,
    steps: Floats,
    eps: float,
    tolerances: tuple[float, float],
    context: LossContext,
) -> tuple[dict[int, Status], dict[int, str]]:
    """Re-estimate the worst elements outside tolerance; update `numeric` and `tol` in place.

    Returns each re-estimated element's status and a note for the report.  An
    element cleared by re-estimation gets its tolerance widened to its error, so
    that it no longer counts as mismatched.
    """
    rtol, atol = tolerances
    noise_unit = numerics.NOISE_FACTOR * eps * context.magnitude
    container, keys = numerics.element_access(tensor.array)
    flat_numeric, flat_analytic, flat_steps, flat_tol = (
        a.reshape(-1) for a in (numeric, analytic, steps, tol)
    )
    statuses: dict[int, Status] = {}
    notes: dict[int, str] = {}
    for flat in compare.suspects(analytic, numeric, tol, context.config.max_reestimate):
        key = keys[flat]
        original = container[key]
        try:
            loss_at = _loss_at(container, key, context.loss)
            again = numerics.reestimate(loss_at, float(original), flat_steps[flat], noise_unit)
        finally:
            container[key] = original
        verdict = compare.judge_reestimate(float(flat_analytic[flat]), again, rtol, atol)
        statuses[flat], notes[flat] = verdict.status, verdict.note
        if math.isfinite(verdict.numeric):
            flat_numeric[flat] = verdict.numeric
        if verdict.status is Status.PASS:
            error = abs(flat_analytic[flat] - flat_numeric[flat])
            flat_tol[flat] = max(flat_tol[flat], error)
    return statuses, notes


def _loss_at(
    container: Any, key: Any, loss: Callable[[], float]
) -> Callable[[float], tuple[float, float]]:
    def at(value: float) -> tuple[float, float]:
        container[key] = value
        realized = float(container[key])  # read before loss(): a bad forward may write into it
        return loss(), realized

    return at


def _count_mismatched(
    analytic: Floats, numeric: Floats, tol: Floats, statuses: dict[int, Status]
) -> int:
    """Elements outside tolerance that re-estimation did not clear.

    When every re-estimated element (the worst ones) was cleared, the less bad
    ones beyond `CheckConfig.max_reestimate` are taken as cleared too.
    """
    if all(s is Status.PASS for s in statuses.values()):
        return 0
    outside = np.abs(analytic - numeric).reshape(-1) > tol.reshape(-1)
    cleared = [i for i, s in statuses.items() if s is Status.PASS]
    outside[cleared] = False
    return int(np.count_nonzero(outside))


def _kink_notes(notes: dict[int, str]) -> tuple[str, ...]:
    kinks = sum(1 for note in notes.values() if note.startswith("kink"))
    if not kinks:
        return ()
    return (f"{kinks} element(s) at a kink (non-differentiable point); see rows marked 'kink'",)

"""A graded check held against the trusted reference: forward outputs and every gradient.

The gradient check proves that a submission's backward agrees with its own
forward; the reference proves both are the function the assignment asks for.
With the same weights (both built from the same drawn arrays), the same inputs
and the same ``dout``, the submission's forward must give the reference's
outputs, and each gradient it reports must be the reference's gradient of the
array it belongs to.  Weights are paired by their values, not their names (a
student may call ``W`` ``weights``).  So a submission cannot earn a gradient's
points with a weight it only pretends to hold, or a forward it only pretends
to compute.
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import replace
from typing import Any

import numpy as np

from gradverify.adapters import Adapter, TargetRaised, resolve_adapter
from gradverify.adapters.base import private_copy
from gradverify.adapters.conventions import conventions
from gradverify.adapters.guarded import Guarded
from gradverify.checks import check
from gradverify.config import CheckConfig
from gradverify.errors import GradverifyError, InvalidArgument
from gradverify.grading.assignment import Assignment, GradedCheck
from gradverify.grading.remote import RemoteAdapter, RemoteRaised
from gradverify.loading import MissingName, attribute, module_from_file
from gradverify.observing import Observed, observe, pair_by_value
from gradverify.randomness import seeded_global
from gradverify.references import Tolerances, compare_arrays, compare_observations
from gradverify.results import (
    CheckResult,
    Comparison,
    ComparisonKind,
    Finding,
    FindingKind,
    Role,
    Severity,
    Status,
    TensorResult,
    worst_status,
)
from gradverify.specs import Case
from gradverify.state import snapshot


def against_reference(
    result: CheckResult, view: RemoteAdapter, graded: GradedCheck, case: Case, seed: int
) -> CheckResult:
    """`result`, with a forward finding and a FAIL on each gradient the reference refutes."""
    assert graded.reference is not None
    nondiff = (*case.nondiff, *graded.nondiff)
    try:
        mine = _observed(view, case, nondiff, graded.params, seed)
        reference = _trusted(graded, case, seed, held=view.holding)
        trusted = _observed(reference, case, nondiff, None, seed)
    except (RemoteRaised, GradverifyError) as error:
        return replace(result, status=Status.ERROR, error=str(error))
    tolerances = CheckConfig(**_tolerance_options(graded)).tolerances
    outputs = compare_observations(
        replace(mine.observation, gradients={}),
        replace(trusted.observation, gradients={}),
        tolerances,
    )
    findings = [_forward_finding(view.label, c) for c in outputs if c.status is not Status.PASS]
    pairs = pair_by_value(mine.weights, trusted.weights)
    held = {name: trusted.observation.gradients.get(other) for name, other in pairs.items()}
    tensors = tuple(_held(t, mine, trusted, held, tolerances) for t in result.tensors)
    statuses = [t.status for t in tensors] + [Status.FAIL] * bool(findings)
    return replace(
        result,
        tensors=tensors,
        findings=(*result.findings, *findings),
        status=worst_status(statuses),
    )


def verify_references(assignment: Assignment) -> None:
    """Run each check's reference on the check's inputs, and its own gradient check, before
    any submission: an instructor's slip (a missing name, a constructor that does not take
    the spec's arrays, a reference that fails) is one error now, not an ERROR per student."""
    for graded in assignment.checks:
        if graded.reference is None:
            continue
        file, path = graded.reference
        where = f"[[check]] {graded.name!r}: the reference {os.path.basename(file)}:{path}"
        case = assignment.case(graded)
        try:
            view = _trusted(graded, case, assignment.seed)
            _observed(view, case, (*case.nondiff, *graded.nondiff), None, assignment.seed)
        except TargetRaised as raised:
            raise InvalidArgument(f"{where} cannot run on the check's inputs: {raised}") from None
        except MissingName as missing:
            raise InvalidArgument(
                f"[[check]] {graded.name!r}: the reference {missing}; is {path!r} spelled as "
                f"in the solution (object = ..., or reference = 'FILE:NAME')?"
            ) from None
        except Exception as error:  # importing or building it: the instructor's code
            cause = TargetRaised("it", error).cause()
            raise InvalidArgument(f"{where} cannot be built: {cause}") from None
        result = check(
            view.target,
            case.inputs,
            nondiff=(*case.nondiff, *graded.nondiff),
            kwargs=graded.kwargs,
            seed=assignment.seed,
            **graded.options,
            **graded.declared,
        )
        if result.status is not Status.PASS:
            raise InvalidArgument(
                f"{where} does not pass its own check, so no submission could:\n{result}"
            )
        checked = [t.grad_name for t in result.tensors]
        named = {n for t in result.tensors for n in (t.grad_name, t.name)}
        unknown = [g for g in graded.gradients if g not in named]
        if unknown:
            raise InvalidArgument(
                f"[[check]] {graded.name!r} gradients: {', '.join(map(repr, unknown))} is not "
                f"a gradient its check has, so no submission could earn it; the check has "
                f"{', '.join(checked)} (names are case-sensitive)."
            )


def _observed(
    view: Adapter, case: Case, nondiff: tuple[str, ...], declared: Any, seed: int
) -> Observed:
    """Forward and backward at the check's inputs, from the random state the child starts
    every call from."""
    return observe(view, list(case.inputs), list(case.inputs.values()), nondiff, declared, seed)


def _tolerance_options(graded: GradedCheck) -> dict[str, Any]:
    return {k: graded.options[k] for k in ("rtol", "atol") if k in graded.options}


def _forward_finding(label: str, comparison: Comparison) -> Finding:
    if comparison.problem:
        detail = comparison.problem
    else:
        row = comparison.rows[0]
        detail = (
            f"differs from the reference at {row.index or '()'}: {row.yours:.6g} vs "
            f"{row.reference:.6g} ({comparison.differing} of {comparison.checked} elements)"
        )
    hint = f"; {comparison.hint}" if comparison.hint else ""
    return Finding(
        FindingKind.FORWARD_DIFFERS,
        Severity.ERROR,
        f"{label}: forward {comparison.name} {detail}{hint}; a backward consistent with a "
        f"wrong forward is still wrong.",
    )


def _trusted(graded: GradedCheck, case: Case, seed: int, held: str = "") -> Adapter:
    """The reference, built from the same arrays (and the same random state) as the child's;
    its state held before every call as the submission's was (`held`, see `carried`)."""
    assert graded.reference is not None
    with seeded_global(seed):
        built = _reference(*graded.reference)(**{k: private_copy(v) for k, v in case.init.items()})
    declared = conventions(**graded.declared, inputs=list(case.inputs))
    view = resolve_adapter(built, list(case.inputs.values()), graded.kwargs, conventions=declared)
    reset = getattr(built, "reset_state", None)
    if held == "rebind":
        return Guarded(view, before_call=snapshot(built, contents=False).rebind)
    if held == "reset_state" and callable(reset):
        return Guarded(view, before_call=reset)
    return view


def _held(
    tensor: TensorResult,
    mine: Observed,
    trusted: Observed,
    weight_gradients: dict[str, np.ndarray | None],
    tolerances: Tolerances,
) -> TensorResult:
    """The tensor's result, FAILed with the reason if its gradient is not the reference's."""
    if tensor.status is not Status.PASS:
        return tensor
    gradient = mine.observation.gradients.get(tensor.name)
    if tensor.role is Role.INPUT:
        reference = trusted.observation.gradients.get(tensor.name)
    else:
        reference = weight_gradients.get(tensor.name)
        if reference is None:
            problem = (
                f"{tensor.name} holds none of the reference's weights: its gradient cannot count"
            )
            return replace(tensor, status=Status.FAIL, hint=problem)
    if gradient is None or reference is None:
        return tensor
    compared = compare_arrays(
        tensor.grad_name, ComparisonKind.GRADIENT, gradient, reference, tolerances
    )
    if compared.status is Status.PASS:
        return tensor
    if compared.problem:
        problem = f"{tensor.grad_name} is not the reference's gradient ({compared.problem})"
    else:
        row = compared.rows[0]
        problem = (
            f"{tensor.grad_name} agrees with this forward but is not the reference's gradient: "
            f"at {row.index or '()'} {row.yours:.6g} vs {row.reference:.6g}"
        )
    return replace(tensor, status=Status.FAIL, hint=problem)


@functools.cache
def _reference(file: str, path: str) -> Any:
    """The trusted object, imported once per worker under a name no submission uses."""
    name = "gradverify_reference_" + hashlib.sha1(file.encode()).hexdigest()[:12]
    return attribute(module_from_file(file, name), path)

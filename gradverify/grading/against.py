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
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from gradverify.adapters import Adapter, TargetRaised, resolve_adapter
from gradverify.adapters.base import private_copy
from gradverify.checks import check
from gradverify.errors import GradverifyError, InvalidArgument
from gradverify.grading.assignment import Assignment, GradedCheck
from gradverify.grading.remote import RemoteAdapter, RemoteRaised
from gradverify.loading import MissingName, attribute, module_from_file
from gradverify.outputs import read_outputs
from gradverify.randomness import seeded_global
from gradverify.references import forward_difference, gradient_difference
from gradverify.results import CheckResult, Status, TensorResult, worst_status
from gradverify.specs import Case


def against_reference(
    result: CheckResult, view: RemoteAdapter, graded: GradedCheck, case: Case, seed: int
) -> CheckResult:
    """`result`, with a forward finding and a FAIL on each gradient the reference refutes."""
    assert graded.reference is not None
    try:
        mine = _run(view, case, graded.params, seed)
        trusted = _run(_trusted(graded, case, seed), case, None, seed)
    except (RemoteRaised, GradverifyError) as error:
        return replace(result, status=Status.ERROR, error=str(error))
    finding = forward_difference(view.label, mine.output, trusted.output)
    names = list(case.inputs)
    tensors = tuple(_held(t, names, mine, trusted) for t in result.tensors)
    findings = (*result.findings, *([finding] if finding else []))
    statuses = [t.status for t in tensors] + [Status.FAIL] * bool(finding)
    return replace(result, tensors=tensors, findings=findings, status=worst_status(statuses))


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
            _run(view, case, None, assignment.seed)
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


@dataclass(frozen=True)
class _Ran:
    """One forward and backward at the check's inputs: outputs, gradients, weights."""

    output: Any
    inputs: tuple[Any, ...]  # input gradients, in forward's order
    params: dict[str, tuple[Any, Any]]  # slot name: (the weight's values, its gradient)


def _run(view: Adapter, case: Case, declared: Any, seed: int) -> _Ran:
    """Forward, then backward with a ``dout`` drawn from the seed, from the same random state
    as the child starts every call from."""
    with seeded_global(seed):
        output = view.forward([private_copy(v) for v in case.inputs.values()])
        dout = read_outputs(output, view.name).cotangent(np.random.default_rng([seed, 7]))
    with seeded_global(seed):
        gradients = view.backward(
            [private_copy(v) for v in case.inputs.values()], dout.for_backward
        )
        slots = view.parameters(declared)
    params = {s.name: (s.array, gradients.params.get(s.name, s.read_gradient())) for s in slots}
    return _Ran(output, gradients.inputs, params)


def _trusted(graded: GradedCheck, case: Case, seed: int) -> Adapter:
    """The reference, built from the same arrays (and the same random state) as the child's."""
    assert graded.reference is not None
    with seeded_global(seed):
        built = _reference(*graded.reference)(**{k: private_copy(v) for k, v in case.init.items()})
    return resolve_adapter(built, list(case.inputs.values()), graded.kwargs)


def _held(tensor: TensorResult, names: list[str], mine: _Ran, trusted: _Ran) -> TensorResult:
    """The tensor's result, FAILed with the reason if its gradient is not the reference's."""
    if tensor.status is not Status.PASS:
        return tensor
    if tensor.role == "input":
        position = names.index(tensor.name) if tensor.name in names else len(names)
        if position >= min(len(mine.inputs), len(trusted.inputs)):
            return tensor
        problem = gradient_difference(
            tensor.grad_name, mine.inputs[position], trusted.inputs[position]
        )
    else:
        value, gradient = mine.params.get(tensor.name, (None, None))
        reference = _paired(value, trusted.params)
        problem = (
            f"{tensor.name} holds none of the reference's weights: its gradient cannot count"
            if reference is None
            else gradient_difference(tensor.grad_name, gradient, reference)
        )
    return replace(tensor, status=Status.FAIL, hint=problem) if problem else tensor


def _paired(value: Any, trusted: dict[str, tuple[Any, Any]]) -> Any:
    """The reference's gradient of the weight holding the same values as `value`."""
    if value is None:
        return None
    for array, gradient in trusted.values():
        if np.shape(array) == np.shape(value) and np.array_equal(array, value):
            return gradient
    return None


@functools.cache
def _reference(file: str, path: str) -> Any:
    """The trusted object, imported once per worker under a name no submission uses."""
    name = "gradverify_reference_" + hashlib.sha1(file.encode()).hexdigest()[:12]
    return attribute(module_from_file(file, name), path)

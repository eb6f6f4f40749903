"""Grade one submission: every check of the assignment, each in its own sandboxed child.

`grade_submission` is what a worker runs (in a process pool, or on a Dask
worker): it takes plain paths, returns plain records, and holds its sandbox and
the trusted references for the life of the worker process.  Every check draws
the same inputs for every submission (the assignment's seed and the check's
number), runs the whole checker here against a `RemoteAdapter`, compares the
forward with the reference when there is one, and scores the result.  Nothing
a submission does can stop the others: a check that cannot run is an ERROR
with the reason, and the next check starts in a fresh child.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from gradverify.adapters import resolve_adapter
from gradverify.checks import check
from gradverify.errors import GradverifyError
from gradverify.grading import scoring
from gradverify.grading.assignment import Assignment, GradedCheck, load_assignment
from gradverify.grading.notebooks import notebook_source
from gradverify.grading.protocol import encode
from gradverify.grading.remote import RemoteAdapter, RemoteRaised
from gradverify.grading.sandbox import Child, Limits, Sandbox, SubmissionDied
from gradverify.references import forward_difference
from gradverify.results import CheckResult, Status, worst_status
from gradverify.specs import Case, draw


@dataclass(frozen=True)
class Submission:
    """One student's work: a folder, or a notebook file."""

    name: str
    path: str


def find_submissions(folder: str) -> list[Submission]:
    """Every sub-folder and every ``.ipynb`` file of `folder`, by name."""
    found = []
    for entry in sorted(os.listdir(folder)):
        path = os.path.join(folder, entry)
        if os.path.isdir(path) and not entry.startswith("."):
            found.append(Submission(entry, path))
        elif entry.endswith(".ipynb"):
            found.append(Submission(entry[: -len(".ipynb")], path))
    return found


def prepare(submission: Submission, assignment: Assignment, scratch: str) -> None:
    """Fill `scratch` with the submission: its folder's files, and a notebook as the module."""
    notebook = submission.path if submission.path.endswith(".ipynb") else None
    if notebook is None:
        shutil.copytree(submission.path, scratch, symlinks=True, dirs_exist_ok=True)
        notebooks = [f for f in os.listdir(scratch) if f.endswith(".ipynb")]
        missing = [m for m in assignment.modules if not os.path.exists(os.path.join(scratch, m))]
        if missing and len(notebooks) == 1:
            notebook = os.path.join(submission.path, notebooks[0])
    if notebook is not None:
        source = notebook_source(notebook)
        for module in assignment.modules:
            if not os.path.exists(os.path.join(scratch, module)):
                with open(os.path.join(scratch, module), "w", encoding="utf-8") as handle:
                    handle.write(source)


@functools.cache
def _sandbox() -> Sandbox:
    """One sandbox (and zygote) per worker process."""
    return Sandbox()


@functools.cache
def _assignment(path: str) -> Assignment:
    return load_assignment(path)


def grade_submission(assignment_path: str, submission: Submission) -> list[dict[str, Any]]:
    """One record per check of the assignment, in order; never raises for the submission."""
    assignment = _assignment(assignment_path)
    deadline = time.monotonic() + assignment.submission_time_limit
    return [grade_check(assignment, graded, submission, deadline) for graded in assignment.checks]


def grade_check(
    assignment: Assignment, graded: GradedCheck, submission: Submission, deadline: float
) -> dict[str, Any]:
    started = time.perf_counter()
    case = draw(graded.spec, np.random.default_rng([assignment.seed, graded.number]))
    limit = min(graded.time_limit, max(deadline - time.monotonic(), 0.0))
    sandbox = _sandbox()
    child = sandbox.run(
        lambda scratch: prepare(submission, assignment, scratch),
        Limits(seconds=max(limit, 1e-3), memory=assignment.memory_limit),
    )
    try:
        result = _checked(child, graded, case, assignment.seed, time.monotonic() + limit, limit)
        printed = child.output()
    finally:
        child.close()
        sandbox.discard(child)
    return scoring.record(submission.name, graded, result, printed, time.perf_counter() - started)


def _checked(
    child: Child, graded: GradedCheck, case: Case, seed: int, deadline: float, limit: float
) -> CheckResult:
    """The check's result, with the reference comparison folded in; ERROR if it cannot run."""
    arrays: list[np.ndarray] = []
    setup = {
        "op": "setup",
        "module": graded.module,
        "object": graded.object,
        "init": encode(case.init, arrays),
        "args": encode(tuple(case.inputs.values()), arrays),
        "kwargs": encode(graded.kwargs, arrays),
        "seed": seed,
    }
    try:
        reply, _ = child.request(setup, arrays, deadline)
    except SubmissionDied as died:
        return _error(graded, seed, f"the submission's process {died} loading {graded.module}")
    if "error" in reply:
        return _error(graded, seed, str(reply["error"].get("text", "failed"))[:4000])
    view = RemoteAdapter(child, reply, deadline, limit)
    try:
        result = check(
            view.target,
            case.inputs,
            adapter=view,
            nondiff=(*case.nondiff, *graded.nondiff),
            params=graded.params,
            seed=seed,
            **graded.options,
        )
    except GradverifyError as error:  # e.g. params naming what the submission does not hold
        return _error(graded, seed, str(error))
    result = replace(result, reproduce="")  # the grader's inputs are not the student's to rerun
    if graded.reference is None or result.status is Status.ERROR:
        return result
    return _against_reference(result, view, graded, case, seed)


def _against_reference(
    result: CheckResult, view: RemoteAdapter, graded: GradedCheck, case: Case, seed: int
) -> CheckResult:
    assert graded.reference is not None
    inputs = [_copy(v) for v in case.inputs.values()]
    try:
        theirs = view.forward(inputs)
    except (RemoteRaised, GradverifyError) as error:
        return replace(result, status=Status.ERROR, error=str(error))
    reference = _reference(*graded.reference)
    saved = np.random.get_state()
    np.random.seed(seed % 2**32)  # as the child does before every call
    try:
        trusted_object = reference(**{k: _copy(v) for k, v in case.init.items()})
        arguments = [_copy(v) for v in case.inputs.values()]
        trusted_view = resolve_adapter(trusted_object, arguments, graded.kwargs)
        trusted = trusted_view.forward(arguments)
    finally:
        np.random.set_state(saved)
    finding = forward_difference(view.label, theirs, trusted)
    if finding is None:
        return result
    return replace(
        result,
        status=worst_status([result.status, Status.FAIL]),
        findings=(*result.findings, finding),
    )


@functools.cache
def _reference(file: str, attribute: str) -> Callable[..., Any]:
    """The trusted object, imported once per worker under a name no submission uses."""
    name = "gradverify_reference_" + hashlib.sha1(file.encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(name, file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    found: Any = module
    for part in attribute.split("."):
        found = getattr(found, part)
    return found


def _copy(value: Any) -> Any:
    return value.copy() if isinstance(value, np.ndarray) else value


def _error(graded: GradedCheck, seed: int, text: str) -> CheckResult:
    return CheckResult(graded.object, f"{graded.object}.backward", Status.ERROR, seed, error=text)

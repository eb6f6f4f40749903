"""Grade one submission: every check of the assignment, each in its own sandboxed child.

`grade_submission` is what a worker runs (in a process pool, or on a Dask
worker): it takes plain paths, returns plain records, and holds its sandbox for
the life of the worker process.  Every check draws the same inputs for every
submission (the assignment's seed and the check's number), runs the whole
checker here against a `RemoteAdapter`, holds the result against the trusted
reference when there is one (`against`), and scores it.  `grade_check` is a hard
boundary: whatever goes wrong in one check — the submission's doing or the
grader's — becomes an ERROR record with the reason, and the next check starts in
a fresh child.
"""

from __future__ import annotations

import functools
import os
import shutil
import stat
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from gradverify.adapters import BUILTIN_ADAPTERS
from gradverify.checks import check
from gradverify.errors import GradverifyError
from gradverify.grading import scoring
from gradverify.grading.against import against_reference
from gradverify.grading.assignment import Assignment, GradedCheck, load_assignment
from gradverify.grading.notebooks import notebook_source
from gradverify.grading.protocol import ProtocolError, encode, reply_error
from gradverify.grading.remote import RemoteAdapter
from gradverify.grading.sandbox import Child, Limits, Sandbox, SubmissionDied
from gradverify.progress import watching
from gradverify.results import CheckResult, Status
from gradverify.specs import Case

#: What each built-in adapter kind differentiates: decided here, never by the child.
_TRAITS = {a.kind: (a.differentiates_inputs, a.takes_cotangent) for a in BUILTIN_ADAPTERS}
_GRADED_KINDS = ("layer", "network")


@dataclass(frozen=True)
class Submission:
    """One student's work: a folder, or a notebook file."""

    name: str
    path: str


def find_submissions(folder: str) -> list[Submission]:
    """Every sub-folder and every ``.ipynb`` file of `folder`, by name (a notebook sharing
    a folder's name keeps its file name); hidden entries and links are skipped."""
    found: dict[str, Submission] = {}
    for entry in sorted(os.listdir(folder)):
        path = os.path.join(folder, entry)
        if entry.startswith(".") or os.path.islink(path):
            continue
        if os.path.isdir(path):
            found[entry] = Submission(entry, path)
        elif entry.endswith(".ipynb") and os.path.isfile(path):
            stem = entry[: -len(".ipynb")]
            name = stem if stem and stem not in found else entry
            found[name] = Submission(name, path)
    return list(found.values())


def prepare(submission: Submission, assignment: Assignment, scratch: str) -> None:
    """Fill `scratch` with the submission: its folder's regular files (never a link, a pipe
    or a device: the grader would follow or block on them), and a notebook as the module."""
    notebook = submission.path if submission.path.endswith(".ipynb") else None
    if notebook is None:
        _copy_regular(submission.path, scratch)
        notebook = notebook_in(scratch, assignment)
    if notebook is not None:
        source = notebook_source(notebook)
        for module in assignment.modules:
            path = os.path.join(scratch, module)
            if not os.path.exists(path):
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "w", encoding="utf-8") as handle:
                    handle.write(source)


def notebook_in(folder: str, assignment: Assignment) -> str | None:
    """The notebook a submission folder is graded from: its only ``.ipynb`` file, when a
    module the assignment reads is missing (the module is made from the notebook)."""
    notebooks = [f for f in os.listdir(folder) if f.endswith(".ipynb")]
    missing = [m for m in assignment.modules if not os.path.exists(os.path.join(folder, m))]
    return os.path.join(folder, notebooks[0]) if missing and len(notebooks) == 1 else None


def graded_from_notebook(submission: Submission, assignment: Assignment) -> bool:
    """Whether grading `submission` reads a notebook (and so needs nbformat)."""
    if submission.path.endswith(".ipynb"):
        return True
    return notebook_in(submission.path, assignment) is not None


def _copy_regular(source: str, destination: str) -> None:
    for folder, dirs, files in os.walk(source):  # os.walk does not follow links to folders
        target = os.path.join(destination, os.path.relpath(folder, source))
        os.makedirs(target, exist_ok=True)
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(folder, d))]
        for name in files:
            path = os.path.join(folder, name)
            if stat.S_ISREG(os.lstat(path).st_mode):
                shutil.copyfile(path, os.path.join(target, name), follow_symlinks=False)


_SANDBOXES: dict[int, Sandbox] = {}


def _sandbox() -> Sandbox:
    """One sandbox (and zygote) per process: a worker forked from a process that had one
    gets its own, and leaves the inherited one (its parent's zygote, its folders) alone."""
    pid = os.getpid()
    if pid not in _SANDBOXES:
        _SANDBOXES.clear()
        _SANDBOXES[pid] = Sandbox()
    return _SANDBOXES[pid]


@functools.cache
def _assignment(path: str) -> Assignment:
    return load_assignment(path)


#: One check at a time per worker process: a Dask worker runs tasks on several threads,
#: and the sandbox (its zygote, its user) serves one child at a time.
_ONE_AT_A_TIME = threading.Lock()


def grade_submission(
    assignment_path: str, submission: Submission, hide: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """One record per check of the assignment, in order; never raises for the submission.

    `hide` are folders of the grader's (its results) the submission must not see.
    """
    assignment = _assignment(assignment_path)
    hidden = (os.path.dirname(assignment.path), os.path.dirname(submission.path), *hide)
    deadline = time.monotonic() + assignment.submission_time_limit
    with _ONE_AT_A_TIME:
        return [
            grade_check(assignment, graded, submission, deadline, hidden)
            for graded in assignment.checks
        ]


def grade_check(
    assignment: Assignment,
    graded: GradedCheck,
    submission: Submission,
    deadline: float,
    hide: Sequence[str] = (),
) -> dict[str, Any]:
    """The record of one check; any failure, of the submission or of the grader, is an ERROR."""
    started = time.perf_counter()
    case = assignment.case(graded)
    limit = min(graded.time_limit, max(deadline - time.monotonic(), 0.0))
    sandbox, printed = _sandbox(), ""
    try:
        child = sandbox.run(
            lambda scratch: prepare(submission, assignment, scratch),
            Limits(seconds=max(limit, 1e-3), memory=assignment.memory_limit),
            hide,
        )
        try:
            result = _checked(child, graded, case, assignment.seed, time.monotonic() + limit, limit)
            printed = child.output()
        finally:
            sandbox.discard(child)
    except Exception as error:  # a hard boundary: one check, never the run
        if not isinstance(error, GradverifyError):  # a bug of the grader's: its traceback
            print(traceback.format_exc(), file=sys.stderr)
        result = _error(graded, assignment.seed, f"the grader could not grade this check: {error}")
    return scoring.record(submission.name, graded, result, printed, time.perf_counter() - started)


def _checked(
    child: Child, graded: GradedCheck, case: Case, seed: int, deadline: float, limit: float
) -> CheckResult:
    """The check's result, held against the reference; ERROR if it cannot run."""
    arrays: list[np.ndarray] = []
    setup = {
        "op": "setup",
        "module": graded.module,
        "object": graded.object,
        "init": encode(case.init, arrays),
        "args": encode(tuple(case.inputs.values()), arrays),
        "kwargs": encode(graded.kwargs, arrays),
        "seed": seed,
        "declared": graded.declared,
        "inputs": list(case.inputs),
    }
    try:
        reply, _ = child.request(setup, arrays, deadline)
    except SubmissionDied as died:
        return _error(graded, seed, f"the submission's process {died} loading {graded.module}")
    except ProtocolError as broken:
        return _error(graded, seed, f"the submission's process sent garbage ({broken})")
    problem = reply_error(reply)
    if problem is not None:
        return _error(graded, seed, problem[1])
    kind = reply.get("kind")
    if kind not in _GRADED_KINDS:
        return _error(graded, seed, f"{graded.object} is not a layer or network ({kind!r})")
    view = RemoteAdapter(
        child, str(reply.get("name", graded.object)), _TRAITS[kind], deadline, limit
    )
    view.accumulates = "flush" in graded.declared  # flushed before every forward
    try:
        with watching(None):  # a class's checks report through grade's own progress bar
            result = check(
                view.target,
                case.inputs,
                adapter=view,
                nondiff=(*case.nondiff, *graded.nondiff),
                params=graded.params,
                seed=seed,
                **graded.options,
            )
    except GradverifyError as failed:  # e.g. params naming what the submission does not hold
        return _error(graded, seed, str(failed))
    result = replace(result, reproduce="")  # the grader's inputs are not the student's to rerun
    if graded.reference is None or result.status is Status.ERROR:
        return result
    return against_reference(result, view, graded, case, seed)


def _error(graded: GradedCheck, seed: int, text: str) -> CheckResult:
    return CheckResult(graded.object, f"{graded.object}.backward", Status.ERROR, seed, error=text)

"""Grade a class: every submission through an executor, results written as they finish.

`grade` hands each submission to a `concurrent.futures` executor — a local
process pool, or a Dask cluster's executor — and writes, as each submission
finishes: its lines in ``results.jsonl`` (one per check, then a line marking the
submission complete) and its ``<submission>/results.json``.  A run that is
killed loses only the submissions in flight; ``resume=True`` keeps every
complete submission and grades the rest.  The class summary is written last,
from ``results.jsonl``.  A worker that dies costs its submission up to two
retries, then an ERROR per check, never the run.
"""

from __future__ import annotations

import contextlib
import html
import json
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from gradverify.errors import InvalidArgument
from gradverify.grading import notebooks, scoring, summary
from gradverify.grading.against import verify_references
from gradverify.grading.assignment import Assignment, load_assignment
from gradverify.grading.grader import (
    Submission,
    find_submissions,
    grade_submission,
    graded_from_notebook,
)
from gradverify.grading.gradescope import results_json, write_atomically
from gradverify.grading.isolation import libc
from gradverify.grading.sandbox import describe_isolation
from gradverify.results import CheckResult, Status

RESULTS = "results.jsonl"
#: Times a submission is handed to a fresh worker after its worker died.
RETRIES = 2


@dataclass(frozen=True)
class GradingRun:
    """What a run did: the submissions graded now, those kept from before, and where."""

    graded: int
    kept: int
    out: str
    seconds: float

    def _repr_html_(self) -> str:
        """What a notebook cell shows: the class summary page, framed so that its style
        stays inside it."""
        with open(os.path.join(self.out, "summary.html"), encoding="utf-8") as handle:
            page = handle.read()
        return (
            f"<p>graded {self.graded}, kept {self.kept} from before, in {self.seconds:.1f} s; "
            f"results in {html.escape(self.out)}</p><iframe title='class summary' "
            f"style='width: 100%; height: 640px; border: 1px solid #ccc' "
            f'srcdoc="{html.escape(page, quote=True)}"></iframe>'
        )


def grade(
    assignment_path: str,
    submissions: str,
    out: str,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    resume: bool = False,
    progress: bool | None = None,
) -> GradingRun:
    """Grade every submission under `submissions` into `out` (see the module docstring)."""
    started = time.perf_counter()
    assignment = load_assignment(assignment_path)
    if not os.path.isdir(submissions):
        raise InvalidArgument(f"the submissions folder {submissions!r} does not exist.")
    if os.path.exists(out) and not os.path.isdir(out):
        raise InvalidArgument(f"--out {out!r} is a file; give a folder for the results.")
    # absolute: a Dask worker runs in a folder of its own, on the same shared files
    submissions, out = os.path.abspath(submissions), os.path.abspath(out)
    verify_references(assignment)
    found = [s for s in find_submissions(submissions) if s.path != out]  # results: no student
    if not found:
        raise InvalidArgument(f"no submissions in {submissions!r}: {_expected(submissions)}")
    if any(graded_from_notebook(s, assignment) for s in found):
        notebooks.reader()  # missing, it would cost every notebook student all their points
    _warn_of_missing_modules(assignment, found)
    os.makedirs(out, exist_ok=True)
    journal = os.path.join(out, RESULTS)
    version = assignment.fingerprint()
    kept = _resumable(journal, version, assignment) if resume else {}
    _rewrite(journal, kept, version)
    todo = [s for s in found if s.name not in kept]
    show = sys.stderr.isatty() if progress is None else progress
    hide = (out,)
    walls: list[str] = []  # what the sandbox isolates where the submissions run
    with _Progress(len(found), len(kept), show) as bar:
        graded = _graded(assignment, todo, workers, scheduler, hide, walls)
        for submission, records, seconds in graded:
            _write(out, journal, submission, records, seconds, version)
            bar.advance(not all(r["passed"] for r in records))
    write_summary(assignment, out, walls[0] if walls else describe_isolation())
    return GradingRun(len(todo), len(kept), out, time.perf_counter() - started)


def _graded(
    assignment: Assignment,
    todo: list[Submission],
    workers: int | None,
    scheduler: str | None,
    hide: tuple[str, ...],
    walls: list[str],
) -> Iterator[tuple[Submission, list[dict[str, Any]], float]]:
    """(submission, records, seconds) as each finishes; first, `walls` gets what the sandbox
    isolates, as a worker sees it (a Dask worker is another machine), and it is printed.

    A worker that dies costs retries, never the run: a task that fails on its own
    (a Dask worker lost) is retried up to `RETRIES` times; a broken process pool
    fails every submission in flight, so those are graded again one at a time,
    alone, and only a submission that breaks a worker alone is charged for it.
    """
    attempts = dict.fromkeys((s.name for s in todo), 0)
    pending = list(todo)
    while pending:
        retry, broken = [], []
        with _executor(workers, scheduler) as executor:
            if not walls:
                walls.append(executor.submit(describe_isolation).result())
                print(f"gradverify: sandbox: {walls[0]}", file=sys.stderr)
            futures: dict[Future[list[dict[str, Any]]], tuple[Submission, float]] = {
                executor.submit(grade_submission, assignment.path, s, hide): (s, time.monotonic())
                for s in pending
            }
            for future in as_completed(futures):
                submission, submitted = futures[future]
                try:
                    records = future.result()
                except BrokenProcessPool:
                    broken.append(submission)
                    continue
                except Exception as died:  # a lost Dask worker, a cancelled task: this one alone
                    attempts[submission.name] += 1
                    if attempts[submission.name] <= RETRIES:
                        retry.append(submission)
                        continue
                    records = _worker_died(assignment, submission, died)
                yield submission, records, time.monotonic() - submitted
        for submission in broken:
            yield _alone(assignment, submission, hide)
        pending = retry


def _alone(
    assignment: Assignment, submission: Submission, hide: tuple[str, ...]
) -> tuple[Submission, list[dict[str, Any]], float]:
    """One submission in a pool of its own, up to `RETRIES` + 1 times."""
    started = time.monotonic()
    for _ in range(RETRIES + 1):
        with _local_pool(1) as pool:
            try:
                records = pool.submit(grade_submission, assignment.path, submission, hide).result()
            except BrokenProcessPool as died:
                failure: BaseException = died
                continue
        return submission, records, time.monotonic() - started
    return submission, _worker_died(assignment, submission, failure), time.monotonic() - started


def _local_pool(workers: int) -> ProcessPoolExecutor:
    """Worker processes that die with the run that started them (on Linux, where they are
    forked from it: a forkserver's workers are the forkserver's children)."""
    if not sys.platform.startswith("linux"):
        return ProcessPoolExecutor(max_workers=workers)
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("fork"),
        initializer=_die_with_parent,
        initargs=(os.getpid(),),
    )


#: prctl option: the signal a process gets when its parent dies (Linux).
_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    """In a pool worker: die when the run dies.  A run killed outright (``kill -9``, the
    OOM killer) would otherwise leave its workers, and their zygotes, waiting forever
    on a queue nobody feeds."""
    with contextlib.suppress(OSError):
        libc().prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # it died before the request took hold
        os._exit(0)


@contextlib.contextmanager
def _executor(workers: int | None, scheduler: str | None) -> Iterator[Executor]:
    """A local process pool, or the executor of a Dask cluster at `scheduler`."""
    if scheduler is None:
        pool = _local_pool(workers or os.cpu_count() or 1)
        try:
            yield pool
        finally:  # on Ctrl-C or an error: drop what has not started, finish what has
            pool.shutdown(wait=True, cancel_futures=True)
        return
    try:
        from distributed import Client
    except ImportError:
        raise InvalidArgument(
            "--scheduler needs Dask's distributed: pip install 'gradverify[dask]'."
        ) from None
    try:
        client = Client(scheduler, timeout=30)
    except (OSError, ValueError, TimeoutError) as error:
        raise InvalidArgument(f"cannot reach the Dask scheduler {scheduler!r}: {error}") from None
    with client:
        yield client.get_executor(pure=False)


def _worker_died(
    assignment: Assignment, submission: Submission, died: BaseException
) -> list[dict[str, Any]]:
    text = f"the grading worker died {RETRIES + 1} times on this submission ({died!r})"
    return [
        scoring.record(
            submission.name,
            check,
            CheckResult(check.object, check.name, Status.ERROR, assignment.seed, error=text),
            "",
            0.0,
        )
        for check in assignment.checks
    ]


def _warn_of_missing_modules(assignment: Assignment, found: list[Submission]) -> None:
    """Say once when most submissions lack a file the assignment reads: more likely a
    misspelt ``module`` than a class that all forgot it (each still gets its ERROR)."""
    folders = [s for s in found if os.path.isdir(s.path)]
    for module in assignment.modules:
        lacking = [
            s
            for s in folders
            if not os.path.exists(os.path.join(s.path, module))
            and not graded_from_notebook(s, assignment)
        ]
        if folders and len(lacking) * 2 > len(folders):
            print(
                f"gradverify: warning: {len(lacking)} of {len(folders)} submission folders have "
                f"no {module}; is module = {module!r} in {os.path.basename(assignment.path)} "
                f"right?",
                file=sys.stderr,
            )


def _expected(folder: str) -> str:
    """What a submissions folder should hold, and what this one seems to be instead."""
    wanted = "give the folder that holds one folder (or .ipynb file) per student."
    if any(name.endswith(".py") for name in os.listdir(folder)):
        return f"it holds .py files itself, as one student's folder does; {wanted}"
    return wanted


def _write(
    out: str,
    journal: str,
    submission: Submission,
    records: list[dict[str, Any]],
    seconds: float,
    version: str,
) -> None:
    write_atomically(
        os.path.join(out, submission.name, "results.json"), results_json(records, seconds)
    )
    with open(journal, "a", encoding="utf-8") as handle:
        handle.write(_lines(submission.name, records, version))


def _resumable(
    journal: str, version: str, assignment: Assignment
) -> dict[str, list[dict[str, Any]]]:
    """The complete submissions to keep; none of them if they were graded against another
    version of the assignment or its references (old and new scores would mix)."""
    others = {e.get("assignment") for e in _entries(journal) if e.get("complete")} - {version}
    if others:
        raise InvalidArgument(
            f"--resume: {journal} holds results graded against another version of "
            f"{os.path.basename(assignment.path)} or its references; grade into a new --out, "
            f"or drop --resume to grade every submission again."
        )
    return read_records(journal)


def _entries(journal: str) -> Iterator[dict[str, Any]]:
    """The readable lines of a results.jsonl (a line cut off by a kill is skipped)."""
    if not os.path.exists(journal):
        return
    with open(journal, encoding="utf-8") as handle:
        for line in handle:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and isinstance(entry.get("submission"), str):
                yield entry


def read_records(journal: str) -> dict[str, list[dict[str, Any]]]:
    """The check records of every complete submission in a results.jsonl, by submission."""
    done: dict[str, list[dict[str, Any]]] = {}
    partial: dict[str, list[dict[str, Any]]] = {}
    for entry in _entries(journal):
        name = entry["submission"]
        if entry.get("complete"):
            done[name] = partial.pop(name, [])
        elif "check" in entry:
            partial.setdefault(name, []).append(entry)
    return done


def _rewrite(journal: str, kept: dict[str, list[dict[str, Any]]], version: str) -> None:
    """Start results.jsonl over with only the complete submissions being kept (through a
    temporary file and a rename: a kill here loses nothing)."""
    temporary = journal + ".tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.writelines(_lines(name, records, version) for name, records in kept.items())
    os.replace(temporary, journal)


def _lines(name: str, records: list[dict[str, Any]], version: str) -> str:
    """A submission's lines: one per check, then the line that marks it complete (with the
    version of the assignment it was graded against)."""
    complete = {
        "submission": name,
        "complete": True,
        "score": sum(r["score"] for r in records),
        "assignment": version,
    }
    return "".join(json.dumps(r, sort_keys=True) + "\n" for r in [*records, complete])


def write_summary(assignment: Assignment, out: str, walls: str) -> None:
    """summary.md and summary.html from the results.jsonl in `out`; `walls` says how the
    submissions were isolated."""
    records = [r for rs in read_records(os.path.join(out, RESULTS)).values() for r in rs]
    made = summary.summarize(assignment.name, records, assignment.max_score, walls)
    with open(os.path.join(out, "summary.md"), "w", encoding="utf-8") as handle:
        handle.write(summary.markdown(made))
    with open(os.path.join(out, "summary.html"), "w", encoding="utf-8") as handle:
        handle.write(summary.page(made))


def grade_one(assignment_path: str, submission_folder: str, results: str) -> dict[str, Any]:
    """Gradescope's way: one submission, graded here (each check still sandboxed)."""
    started = time.perf_counter()
    assignment = load_assignment(assignment_path)  # a bad one fails before any submission
    if not os.path.isdir(submission_folder):
        raise InvalidArgument(f"the submission folder {submission_folder!r} does not exist.")
    submission = Submission(
        os.path.basename(os.path.normpath(submission_folder)), submission_folder
    )
    if graded_from_notebook(submission, assignment):
        notebooks.reader()
    print(f"gradverify: sandbox: {describe_isolation()}")  # Gradescope's stdout: instructors'
    hide = (os.path.dirname(os.path.abspath(results)),)
    records = grade_submission(assignment_path, submission, hide)
    document = results_json(records, time.perf_counter() - started)
    write_atomically(results, document)
    return document


class _Progress:
    """A progress bar on a terminal (rich): submissions done, failing, time left."""

    def __init__(self, total: int, done: int, show: bool) -> None:
        self._bar: Any = None
        self._task: Any = None
        self._failing = 0
        self._args = (total, done, show)

    def __enter__(self) -> _Progress:
        total, done, show = self._args
        try:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )
        except ImportError:  # rich comes with gradverify[grade]; without it, no bar
            show = False
        if show:
            self._bar = Progress(
                TextColumn("grading"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[failing]} failing"),
                TimeRemainingColumn(),
                transient=False,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task("grading", total=total, completed=done, failing=0)
        return self

    def advance(self, failing: bool) -> None:
        self._failing += failing
        if self._bar is not None:
            self._bar.update(self._task, advance=1, failing=self._failing)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

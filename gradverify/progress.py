"""Long checks say how long they will take, then show how far they are.

A check knows its cost before it starts: the measured time of one forward call,
and the number of calls its plan makes (`planning`).  When that comes to more than
`SHOW_AFTER` seconds it hands an `Estimate` ("~20,000 forward calls at ~1.0 s:
~5.6 h; mode='fast' takes ~24 calls") to whoever is watching, then reports each
forward call:

* by default (the Python API, a notebook), `EstimateLine` prints the estimate once
  to stderr: no bar that could flood a log;
* the command line shows a `rich` progress bar on a terminal (`RichBar`);
* pytest writes one line through its terminal writer, on a terminal only
  (`gradverify.plugin`).

Watchers are installed for a block of code with `watching`; a check inside a
check (a network's layers, a reference's own check) is not shown separately.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

#: Seconds a check must be expected to take before anything is shown.
SHOW_AFTER = 2.0


@dataclass(frozen=True)
class Estimate:
    """What a check will cost, from the measured time of one forward call."""

    label: str
    calls: int
    seconds_per_call: float
    fast_calls: int = 0  # what mode="fast" would take instead; 0 when it is fast already
    workers: int = 1  # processes sharing the calls

    @property
    def seconds(self) -> float:
        return self.calls * self.seconds_per_call / self.workers

    def describe(self) -> str:
        """``~20,000 forward calls at ~1.0 s: ~5.6 h; mode='fast' takes ~24 calls; workers=2
        takes ~2.8 h``."""
        shared = f" on {self.workers} workers" if self.workers > 1 else ""
        text = (
            f"~{self.calls:,} forward calls at ~{duration(self.seconds_per_call)}{shared}: "
            f"~{duration(self.seconds)}"
        )
        if self.fast_calls and self.fast_calls < self.calls:
            text += f"; mode='fast' takes ~{self.fast_calls:,} calls"
        cores = os.cpu_count() or 1
        if self.workers == 1 and cores > 1:
            text += f"; workers={cores} takes ~{duration(self.seconds / cores)}"
        return text


class Progress(Protocol):
    """Something that shows a long check's progress."""

    def start(self, estimate: Estimate) -> None: ...

    def advance(self, calls: int) -> None: ...

    def stop(self) -> None: ...


class EstimateLine:
    """The default: the estimate, once, on stderr; nothing while the check runs."""

    def start(self, estimate: Estimate) -> None:
        print(f"gradverify: {estimate.label}: {estimate.describe()}", file=sys.stderr)

    def advance(self, calls: int) -> None:
        pass

    def stop(self) -> None:
        pass


class RichBar:
    """A progress bar with the time left, on a terminal (the command line's)."""

    def __init__(self) -> None:
        self._bar: Any = None
        self._task: Any = None

    def start(self, estimate: Estimate) -> None:
        from rich.console import Console
        from rich.markup import escape
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        console = Console(stderr=True)
        console.print(
            f"gradverify: {escape(estimate.label)}: {estimate.describe()}",
            highlight=False,
            soft_wrap=True,
        )
        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed:,}/{task.total:,} calls"),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        self._task = self._bar.add_task(escape(estimate.label), total=estimate.calls)
        self._bar.start()

    def advance(self, calls: int) -> None:
        if self._bar is None:
            return
        task = self._bar.tasks[0]
        if task.completed + calls > (task.total or 0):  # suspects re-estimated: more calls
            self._bar.update(self._task, total=task.completed + calls)
        self._bar.advance(self._task, calls)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


_WATCHER: ContextVar[Progress | None] = ContextVar("gradverify_progress")
_DEFAULT = EstimateLine()


@contextlib.contextmanager
def watching(watcher: Progress | None) -> Iterator[None]:
    """Within it, long checks report to `watcher` (None: to nobody)."""
    token = _WATCHER.set(watcher)
    try:
        yield
    finally:
        _WATCHER.reset(token)


#: Set in a worker process (`gradverify.workers`): the checking process shows the progress.
_SILENCED = False


def silence() -> None:
    """Show nothing from this process from now on (a forked worker's first step)."""
    global _SILENCED
    _SILENCED = True


class Tracker:
    """One check's progress: started only when the estimate is long, counted per call."""

    def __init__(self) -> None:
        self._watcher: Progress | None = None
        self._token: Any = None

    def start(self, estimate: Estimate) -> None:
        watcher = _WATCHER.get(_DEFAULT)
        if watcher is None or estimate.seconds <= SHOW_AFTER:
            return
        self._watcher = watcher
        watcher.start(estimate)
        self._token = _WATCHER.set(None)  # a check inside this one is part of it

    def advance(self, calls: int = 1) -> None:
        if self._watcher is not None and not _SILENCED:
            self._watcher.advance(calls)

    def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
            _WATCHER.reset(self._token)
            self._watcher = self._token = None


def duration(seconds: float) -> str:
    """``0.4 ms``, ``1.2 s``, ``3.5 min``, ``5.6 h``."""
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1.0:
        return f"{seconds * 1e3:.1f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"

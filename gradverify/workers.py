"""Full checks on several cores: a tensor's central differences shared among forked workers.

Each worker is a fork of the checking process, so it holds its own copy of the target
(copy-on-write: nothing is pickled, any target can be copied).  It perturbs the
elements of its share in that copy, in the serial loop's order, and sends back their
numeric derivatives; the checking process computes the first share itself.  The same
evaluations on the same values give the same numbers to the bit as the serial loop.

Nothing a worker does can reach the caller's target: only the checking process
perturbs it, and puts it back in its own ``finally``.  A worker that fails for any
reason (the target raised, the worker was killed or ran out of memory) has its share
computed again by the checking process, where an error of the target's surfaces
exactly as in a serial check.  Ctrl-C ends every worker before it goes up.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from gradverify import numerics, progress

#: A share must be worth at least this many seconds of forward calls to fork for it:
#: a fork and its pipe cost about a millisecond, more for a process holding much memory.
MIN_SHARE_SECONDS = 0.02


def unavailable() -> str:
    """Why workers cannot run here, or '' when they can."""
    if not hasattr(os, "fork"):
        return "this platform has no fork(), so the elements were checked in one process"
    return ""


def central_differences(
    array: numerics.FloatArray,
    steps: NDArray[np.float64],
    loss: Callable[[], float],
    workers: int,
    seconds_per_call: float,
    advance: Callable[[int], None],
) -> NDArray[np.float64]:
    """`numerics.central_differences` of every element of `array`, the elements shared
    among up to `workers` processes (fewer where a share would be too small to pay);
    `advance` counts the forward calls each worker made, as it delivers."""
    serial = array.size * 2 * seconds_per_call
    worth = array.size if serial >= MIN_SHARE_SECONDS * array.size else serial // MIN_SHARE_SECONDS
    count = max(1, min(workers, int(worth), array.size))
    if count == 1 or unavailable():
        return numerics.central_differences(array, steps, loss)
    bounds = np.linspace(0, array.size, count + 1).round().astype(int)
    shares = [range(int(a), int(b)) for a, b in itertools.pairwise(bounds)]
    forked: list[tuple[int, int, range]] = []
    try:
        for share in shares[1:]:
            forked.append(_fork(array, steps, loss, share))
        values = [numerics.differences_at(array, steps, loss, shares[0])]
        while forked:
            pid, reading, share = forked.pop(0)  # from here on, `_collect` answers for it
            delivered = _collect(pid, reading, len(share))
            if delivered is None:  # the worker failed: its share is done here
                delivered = numerics.differences_at(array, steps, loss, share)
            else:
                advance(2 * len(share))
            values.append(delivered)
    except BaseException:
        _end(forked)
        raise
    return np.concatenate(values).reshape(array.shape)


def _fork(
    array: numerics.FloatArray,
    steps: NDArray[np.float64],
    loss: Callable[[], float],
    share: range,
) -> tuple[int, int, range]:
    """Start a worker on `share`: (its pid, the pipe its values come through, the share)."""
    reading, writing = os.pipe()
    pid = os.fork()
    if pid:
        os.close(writing)
        return pid, reading, share
    status = 1  # the worker: compute, send, and leave without running the caller's exit code
    try:
        os.close(reading)
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C ends it; the caller redoes nothing
        progress.silence()  # the caller shows the progress of the whole
        payload = numerics.differences_at(array, steps, loss, share).tobytes()
        with os.fdopen(writing, "wb") as pipe:
            pipe.write(payload)
        status = 0
    finally:
        os._exit(status)


def _collect(pid: int, reading: int, count: int) -> NDArray[np.float64] | None:
    """The `count` values a worker delivered, or None if it did not deliver them all."""
    try:
        with os.fdopen(reading, "rb") as pipe:
            payload = pipe.read()
    except BaseException:
        _kill(pid)
        raise
    _, status = os.waitpid(pid, 0)
    if status == 0 and len(payload) == 8 * count:
        return np.frombuffer(payload, dtype=np.float64).copy()
    return None


def _end(forked: list[tuple[int, int, range]]) -> None:
    """Kill and reap the workers not yet collected, and close their pipes."""
    for pid, reading, _ in forked:
        _kill(pid)
        with contextlib.suppress(OSError):
            os.close(reading)


def _kill(pid: int) -> None:
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        os.waitpid(pid, 0)

"""The zygote: a clean process that forks one sandboxed child per graded check.

Starting Python and importing numpy takes a third of a second here, more than
grading a chapter-5 submission; so each grading process starts one zygote,
which imports numpy and the child's code once, holds no grader state (no
assignment, no reference, no other submission's results), and forks a child
per check in a few milliseconds.  The zygote is a child subreaper: whatever a
submission leaves behind (a daemon that double-forked, a sleeping grandchild) is
re-parented to it and killed when the check ends.

The forked child, before any submission code runs: starts its own session, sets
its resource limits, and, as root, leaves the network and drops to an
unprivileged user (see `isolation`), moves into its scratch copy of the
submission, and sends its output to a capped file there.  Then it serves the
grader's requests (`child.serve`).

Run as ``python -m gradverify.grading.zygote FD`` with FD one end of a
``SOCK_SEQPACKET`` socket pair, and one BLAS thread set in its environment (the
children inherit both); requests are JSON, the child's socket travels as an
ancillary file descriptor.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import json
import os
import resource
import signal
import socket
import sys
import tempfile
from typing import Any

import numpy  # noqa: F401  (imported once here, shared by every fork)

from gradverify.grading import child, isolation
from gradverify.grading.protocol import OUTPUT_FILE

_PR_SET_CHILD_SUBREAPER = 36
#: Bytes of output a child may write before further writes are dropped.
OUTPUT_LIMIT = 1 << 20


def _libc() -> Any:
    return ctypes.CDLL(None, use_errno=True)


#: Standard modules layers and their authors commonly import, loaded once here: a child
#: that runs as another user may not be able to read Python's files (a Python under
#: /root), and then only what is already loaded imports.
PRELOAD = [
    "abc",
    "array",
    "bisect",
    "collections",
    "copy",
    "csv",
    "ctypes",
    "dataclasses",
    "datetime",
    "functools",
    "glob",
    "gzip",
    "heapq",
    "itertools",
    "json",
    "math",
    "numbers",
    "operator",
    "pathlib",
    "pickle",
    "queue",
    "random",
    "re",
    "shutil",
    "signal",
    "socket",
    "statistics",
    "string",
    "struct",
    "subprocess",
    "tempfile",
    "threading",
    "time",
    "typing",
    "warnings",
]


def main(fd: int) -> None:
    for module in PRELOAD:
        with contextlib.suppress(ImportError):
            __import__(module)
    walls = isolation.probe()
    staging = tempfile.mkdtemp(prefix="gradverify-staging-")
    control = socket.socket(fileno=fd)
    _libc().prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(control, 1 << 16, 1)
        except OSError:
            message, fds = b"", []
        if not message:
            _kill_all_children()
            return
        request = json.loads(message)
        if request["op"] == "fork":
            pid = os.fork()
            if pid == 0:
                control.close()
                _child(fds[0], request, walls, staging)  # never returns
            os.close(fds[0])
            control.send(json.dumps({"pid": pid}).encode())
        elif request["op"] == "describe":
            control.send(json.dumps({"isolation": walls.describe()}).encode())
        else:  # "reap"
            control.send(json.dumps(_reap(request)).encode())


def _child(fd: int, request: dict[str, Any], walls: isolation.Isolation, staging: str) -> None:
    """Become the sandboxed child and serve; exits the process whatever happens."""
    try:
        os.setsid()
        os.closerange(3, fd)  # nothing of the zygote's stays open in the child
        os.closerange(fd + 1, 1 << 16)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a full output file drops, not kills
        _limit(request)
        uid = request.get("uid")
        if uid is not None:  # root: what the platform permits, then an unprivileged user
            isolation.enter(walls, staging)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
        os.chdir(request["scratch"])
        _capture_output()
        child.serve(socket.socket(fileno=fd))
    finally:
        os._exit(0)


def _limit(request: dict[str, Any]) -> None:
    """Memory (address space beyond what numpy already maps), CPU, files, processes, core."""
    with open("/proc/self/status", encoding="ascii") as status:
        mapped = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize"))
    limits = {
        resource.RLIMIT_AS: mapped + int(request["memory"]),
        resource.RLIMIT_CPU: int(request["cpu_seconds"]),
        resource.RLIMIT_NOFILE: 64,
        resource.RLIMIT_FSIZE: int(request["file_size"]),
        resource.RLIMIT_CORE: 0,
        resource.RLIMIT_NPROC: int(request["processes"]),
    }
    for which, value in limits.items():
        resource.setrlimit(which, (value, value))


def _capture_output() -> None:
    """Standard output and error into a file of the scratch folder, capped at OUTPUT_LIMIT."""
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    output = os.open(OUTPUT_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(output, 1)
    os.dup2(output, 2)
    sys.stdout = sys.stderr = _Capped(io.FileIO(1, "w", closefd=False), OUTPUT_LIMIT)


class _Capped(io.TextIOBase):
    """A text stream that drops what goes beyond its limit (printing never raises)."""

    def __init__(self, raw: io.FileIO, limit: int) -> None:
        self._raw, self._left = raw, limit

    def write(self, text: str) -> int:
        data = text.encode("utf-8", "replace")[: max(self._left, 0)]
        self._left -= len(data)
        with contextlib.suppress(OSError):
            self._raw.write(data)
        return len(text)

    def writable(self) -> bool:
        return True


def _reap(request: dict[str, Any]) -> dict[str, Any]:
    """Kill the child's whole session and every leftover process, then report how it ended."""
    pid = int(request["pid"])
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    uid = request.get("uid")
    if uid is not None:
        _kill_user(int(uid))
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        status = 0
    _kill_all_children()
    if os.WIFSIGNALED(status):
        return {"signal": os.WTERMSIG(status)}
    return {"exit": os.WEXITSTATUS(status)}


def _kill_user(uid: int) -> None:
    """Every process of the sandbox's user, wherever it went (``kill(-1)`` as that user)."""
    helper = os.fork()
    if helper == 0:
        try:
            os.setuid(uid)
            os.kill(-1, signal.SIGKILL)
        finally:
            os._exit(0)
    os.waitpid(helper, 0)


def _kill_all_children() -> None:
    """Kill and reap everything re-parented to the zygote (it serves one check at a time)."""
    mine = str(os.getpid())
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as stat:
                parent = stat.read().rsplit(")", 1)[1].split()[1]
        except OSError:
            continue
        if parent == mine:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(entry), signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, 0)[0]:
            pass


if __name__ == "__main__":
    main(int(sys.argv[1]))

"""The zygote: a clean process that forks one sandboxed child per graded check.

Starting Python and importing numpy takes a third of a second here, more than
grading a chapter-5 submission; so each grading process starts one zygote,
which imports numpy and the child's code once, holds no grader state (no
assignment, no reference, no other submission's results), and forks a child
per check in a few milliseconds.  The zygote is a child subreaper: whatever a
submission leaves behind (a daemon that double-forked, a sleeping grandchild) is
re-parented to it and killed when the check ends (see `_kill_all_children`).

The forked child, before any submission code runs: starts its own session, sets
its resource limits, and, as root, leaves the network, hides the grader's
folders and drops to an unprivileged user (see `isolation`); it moves into its
scratch copy of the submission and writes its output to the file the grader
opened for it.  Then it serves the grader's requests (`child.serve`).

Run as ``python -m gradverify.grading.zygote FD ROOT`` with FD one end of a
``SOCK_SEQPACKET`` socket pair and ROOT the grader's scratch folder (removed when
the zygote ends), with one BLAS thread set in its environment.  Requests are
JSON; a child's socket and output file travel as ancillary file descriptors.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import shutil
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import numpy  # noqa: F401  (imported once here, shared by every fork)

from gradverify.adapters import available_adapters
from gradverify.grading import child, isolation

_PR_SET_CHILD_SUBREAPER = 36
#: Bytes of output a child may write through Python before further writes are dropped.
OUTPUT_LIMIT = 1 << 20
#: Exit status of a child whose sandbox could not be set up (the reason is in its output).
SETUP_FAILED = 70
#: Seconds the zygote waits for killed processes to be reaped.
REAP_SECONDS = 5.0

#: Standard modules layers and their authors commonly import, loaded once here: they
#: are then there for every child, whatever the sandbox user may read.
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
    "unittest",
    "warnings",
]


def main(fd: int, root: str) -> None:
    for module in PRELOAD:
        with contextlib.suppress(ImportError):
            __import__(module)
    available_adapters()  # the entry-point scan, once here rather than in every child
    walls = isolation.probe()
    staging = tempfile.mkdtemp(prefix="staging-", dir=root)  # beside the scratch folders
    control = socket.socket(fileno=fd)
    isolation.libc().prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    children = _Children()
    try:
        _serve(control, walls, staging, children)
    finally:
        _kill_all_children(uid=children.uid)
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class _Children:
    """What the zygote remembers between requests."""

    forked: set[int] = field(default_factory=set)  # its children not yet reaped
    uid: int | None = None  # the sandbox user they run as (None when not root)


def _serve(
    control: socket.socket, walls: isolation.Isolation, staging: str, children: _Children
) -> None:
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(control, 1 << 16, 2)
        except OSError:
            return
        if not message:
            return  # the grader is gone
        request = json.loads(message)
        if request["op"] == "fork" and len(fds) == 2:
            uid = request.get("uid")
            if uid is not None and uid != children.uid:
                children.uid = int(uid)
                _kill_user(children.uid)  # what a predecessor killed from outside left
            pid = os.fork()
            if pid == 0:
                control.close()
                _child(fds[0], fds[1], request, walls, staging)  # never returns
            for descriptor in fds:
                os.close(descriptor)
            children.forked.add(pid)
            reply: dict[str, Any] = {"pid": pid}
        elif request["op"] == "reap":
            pid = int(request["pid"])  # only a child of this zygote's: no other pid is ours
            reply = _reap(pid, children.uid) if pid in children.forked else {"exit": -1}
            children.forked.discard(pid)
        else:
            reply = {"error": f"unknown request {request['op']!r}"}
        control.send(json.dumps(reply).encode())


def _child(
    sock: int, output: int, request: dict[str, Any], walls: isolation.Isolation, staging: str
) -> None:
    """Become the sandboxed child and serve; exits the process whatever happens."""
    try:
        os.setsid()
        os.dup2(output, 1)
        os.dup2(output, 2)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.closerange(3, sock)  # nothing of the zygote's stays open in the child
        os.closerange(sock + 1, os.sysconf("SC_OPEN_MAX"))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a full output file drops, not kills
        _limit(request)
        uid = request.get("uid")
        if uid is None:
            os.chdir(request["scratch"])
        else:  # root: what the platform permits, then an unprivileged user
            isolation.enter(walls, staging, request["scratch"], request.get("hide", []))
            isolation.drop_to(int(uid))
        sys.stdout = sys.stderr = _Capped(io.FileIO(1, "w", closefd=False), OUTPUT_LIMIT)
    except BaseException as error:
        os.write(2, f"gradverify: the sandbox could not be set up: {error}\n".encode())
        os._exit(SETUP_FAILED)
    try:
        child.serve(socket.socket(fileno=sock))
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


def _reap(pid: int, uid: int | None) -> dict[str, Any]:
    """Kill the child's whole session and everything it left behind; say how it ended."""
    for kill in (os.killpg, os.kill):  # (a session leader cannot leave its group: both hit)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            kill(pid, signal.SIGKILL)
    status = _kill_all_children(pid, uid)
    if status is not None and os.WIFSIGNALED(status):
        return {"signal": os.WTERMSIG(status)}
    if status is not None and os.WIFEXITED(status):
        return {"exit": os.WEXITSTATUS(status)}
    return {"exit": -1}


def _kill_user(uid: int) -> None:
    """Every process of a sandbox user at once (``kill(-1)`` as that user: a process
    forking in a loop cannot outrun it, as it outruns a scan of /proc).  Also done before
    a zygote's first child: a zygote killed from outside left its orphans to init, out of
    its successor's reach, still running as the user the successor's children get."""
    helper = os.fork()
    if helper == 0:
        try:
            os.setuid(uid)
            os.kill(-1, signal.SIGKILL)
        finally:
            os._exit(0)
    os.waitpid(helper, 0)


def _kill_all_children(wanted: int | None = None, uid: int | None = None) -> int | None:
    """Kill and reap every process the zygote's children left; the exit status of `wanted`.

    The zygote is a subreaper and runs one child at a time: once that child is gone,
    every process it started, however it hid (another session, a double fork, a
    namespace of its own), is an orphan re-parented here, or a descendant of one.
    When the child left nothing, the first ``waitpid`` says so: no kill, no scan.
    Otherwise, as root, every process of the sandbox user (`uid`, unique to this
    grading process) is killed at once; without root, each orphan found in /proc
    and its process group, until none is left.
    """
    status, gone, killed_user = None, wanted is None, False
    started = time.monotonic()
    while time.monotonic() < started + REAP_SECONDS:
        try:
            pid, code = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return status  # none left
        if pid == wanted:
            status, gone = code, True
        if pid:
            continue  # reap the next at once
        # some still live: orphans, once the child is gone (or is taking long to die)
        if gone or time.monotonic() > started + 0.05:
            if uid is not None and not killed_user:
                _kill_user(uid)
                killed_user = True
                continue
            for orphan in _children():
                for kill in (os.kill, _kill_group):
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        kill(orphan, signal.SIGKILL)
        time.sleep(0.0005)
    return status


def _kill_group(pid: int, sig: int) -> None:
    """The process group of `pid` (an orphan's group: inside the child's session, or its own)."""
    os.killpg(os.getpgid(pid), sig)


def _children() -> list[int]:
    """The zygote's children, from /proc (orphans land here: it is their subreaper)."""
    mine, found = str(os.getpid()), []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as stat:
                parent = stat.read().rsplit(")", 1)[1].split()[1]
        except (OSError, IndexError):
            continue
        if parent == mine:
            found.append(int(entry))
    return found


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])

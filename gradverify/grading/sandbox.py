"""Run a submission's code in a child process the grader controls, one child per check.

`Sandbox` belongs to one grading process.  It starts a zygote (see `zygote`) the
first time it is needed and asks it for a child per check, in a scratch copy of
the submission: the submission never runs in the grader, and one check's crash,
hang or mess costs no other check anything.  Per check:

* a wall-time limit, enforced here on every request (the child is killed when
  it runs out), and a CPU-time limit in the child as a second line;
* a memory limit (``RLIMIT_AS``: the given bytes beyond what numpy maps), one
  BLAS thread, at most 64 open files, a cap on the processes it may start and
  on the bytes it may write;
* as root (Gradescope runs the autograder as root): no network (a new network
  namespace) and a user of its own, so it can touch neither other submissions,
  nor the grader's files, nor the results;
* when the check ends, its whole session, its user's processes and anything
  re-parented to the zygote are killed;
* what it prints is captured in its scratch folder and read back, truncated.

Without root the submission runs as the grader's user: the limits hold, the
file and network isolation does not (run untrusted classes as root, or in a
container, as Gradescope does).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from gradverify.grading import protocol
from gradverify.grading.protocol import OUTPUT_FILE

#: Sandbox users are ``UID_BASE + (grading process id % UID_SPAN)``: one per grading
#: process, so that parallel graders cannot reach each other's scratch folders.
UID_BASE = 300_000
UID_SPAN = 100_000
#: One BLAS thread per child: set in the zygote's environment, before numpy loads.
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
#: How much of a child's captured output its report shows: bytes, and lines.
SHOWN_OUTPUT = 1500
SHOWN_LINES = 20


@dataclass(frozen=True)
class Limits:
    """What one check's child may use."""

    seconds: float = 10.0  # wall time for the whole check
    memory: int = 512 * 2**20  # bytes of address space beyond numpy's
    processes: int = 32  # processes the sandbox user may run at once (as root)
    file_size: int = 16 * 2**20  # bytes any one file may grow to


class SubmissionDied(Exception):
    """The child stopped answering: it exited, crashed, was killed, or ran out of time."""


class Child:
    """One running child: send it requests, then close it to learn how it ended."""

    def __init__(self, sandbox: Sandbox, sock: socket.socket, pid: int, scratch: str) -> None:
        self._sandbox, self._sock, self.pid, self.scratch = sandbox, sock, pid, scratch
        self.ended = ""  # how it ended, once known

    def request(
        self, header: dict[str, Any], arrays: list[np.ndarray], deadline: float
    ) -> tuple[dict[str, Any], list[np.ndarray]]:
        """Send one request and wait for the reply until `deadline` (time.monotonic)."""
        try:
            self._sock.settimeout(max(deadline - time.monotonic(), 1e-3))
            protocol.write_message(self._sock, header, arrays)
            return protocol.read_message(self._sock)
        except TimeoutError:
            self.close()
            raise SubmissionDied("ran out of time") from None
        except (EOFError, OSError) as error:
            self.close()
            raise SubmissionDied(self.ended or str(error)) from None

    def close(self) -> str:
        """Kill what is left of the child and its processes; say how it ended."""
        if not self.ended:
            with contextlib.suppress(OSError):
                self._sock.close()
            self.ended = self._sandbox.reap(self.pid)
        return self.ended

    def output(self) -> str:
        """What the child printed (its stdout and stderr), truncated for a report."""
        try:
            with open(os.path.join(self.scratch, OUTPUT_FILE), "rb") as handle:
                data = handle.read(SHOWN_OUTPUT)
                total = os.fstat(handle.fileno()).st_size
        except OSError:
            return ""
        shown = "\n".join(data.decode("utf-8", "replace").splitlines()[:SHOWN_LINES])
        rest = total - len(shown.encode())
        return shown + (f"\n... ({rest:,} more bytes)" if rest > 1 else "")


class Sandbox:
    """Children for one grading process, forked by its zygote (started on first use)."""

    def __init__(self) -> None:
        self._control: socket.socket | None = None
        self._zygote: subprocess.Popen[bytes] | None = None
        self._root = tempfile.mkdtemp(prefix="gradverify-sandbox-")
        os.chmod(self._root, 0o711)  # children can reach their own folder, list none
        self.uid = UID_BASE + os.getpid() % UID_SPAN if os.geteuid() == 0 else None
        atexit.register(self.shutdown)

    def run(self, prepare: Callable[[str], None], limits: Limits) -> Child:
        """A child in a fresh scratch folder that `prepare` fills with the submission."""
        scratch = tempfile.mkdtemp(dir=self._root)
        prepare(scratch)
        if self.uid is not None:
            for folder, _, files in os.walk(scratch):
                for path in [folder, *(os.path.join(folder, f) for f in files)]:
                    os.lchown(path, self.uid, self.uid)
        os.chmod(scratch, 0o700)
        ours, theirs = socket.socketpair()
        request = {
            "op": "fork",
            "scratch": scratch,
            "uid": self.uid,
            "memory": limits.memory,
            "cpu_seconds": int(limits.seconds * 2) + 1,
            "file_size": limits.file_size,
            "processes": limits.processes if self.uid is not None else _own_processes() + 32,
        }
        reply = self._ask(request, theirs.fileno())
        theirs.close()
        return Child(self, ours, int(reply["pid"]), scratch)

    def reap(self, pid: int) -> str:
        """Kill the child's session and leftovers (in the zygote), say how it ended."""
        reply = self._ask({"op": "reap", "pid": pid, "uid": self.uid})
        if "signal" in reply:
            return f"killed by {signal.Signals(reply['signal']).name}"
        return f"exited with status {reply['exit']}"

    def describe(self) -> str:
        """What the sandbox isolates on this machine, for the instructor."""
        if self.uid is None:
            return "not root: submissions run as the grader's user, with limits but no walls"
        text = self._ask({"op": "describe"})["isolation"]
        return f"own user per grading process; {text}"

    def discard(self, child: Child) -> None:
        """Remove the child's scratch folder (after `Child.close`)."""
        shutil.rmtree(child.scratch, ignore_errors=True)

    def _ask(self, request: dict[str, Any], fd: int | None = None) -> dict[str, Any]:
        control = self._control or self._start()
        if fd is None:
            control.send(json.dumps(request).encode())
        else:
            socket.send_fds(control, [json.dumps(request).encode()], [fd])
        reply = control.recv(1 << 16)
        if not reply:
            raise SubmissionDied("the grader's zygote died")
        return dict(json.loads(reply))

    def _start(self) -> socket.socket:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        one_thread = dict.fromkeys(
            ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"), "1"
        )
        self._zygote = subprocess.Popen(
            [sys.executable, "-m", "gradverify.grading.zygote", str(theirs.fileno())],
            pass_fds=[theirs.fileno()],
            stdin=subprocess.DEVNULL,
            env={**os.environ, **one_thread},
        )
        theirs.close()
        self._control = ours
        return ours

    def shutdown(self) -> None:
        """Stop the zygote (it kills whatever children remain) and remove the scratch root."""
        if self._control is not None:
            self._control.close()
            self._control = None
        if self._zygote is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._zygote.wait(timeout=5)
            self._zygote = None
        shutil.rmtree(self._root, ignore_errors=True)


def _own_processes() -> int:
    """How many processes this user runs now (RLIMIT_NPROC counts them all)."""
    uid = os.getuid()
    count = 0
    for entry in os.listdir("/proc"):
        with contextlib.suppress(OSError):
            if entry.isdigit() and os.stat(f"/proc/{entry}").st_uid == uid:
                count += 1
    return count

"""Run a submission's code in a child process the grader controls, one child per check.

`Sandbox` belongs to one grading process.  It starts a zygote (see `zygote`) the
first time it is needed, and again if it dies, and asks it for a child per
check, in a scratch copy of the submission: the submission never runs in the
grader, and one check's crash, hang or mess costs no other check anything.  Per
check:

* a wall-time limit on the whole check, enforced here on every byte it waits
  for (the child is killed when it runs out), and a CPU-time limit in the child
  as a second line;
* a memory limit (``RLIMIT_AS``: the given bytes beyond what numpy maps, per
  process), one BLAS thread, at most 64 open files, caps on the processes it may
  start and on the bytes any file may grow to;
* as root: the walls of `isolation` (no network, the grader's folders hidden,
  private temporary folders) and a user of its own per grading process;
* when the check ends, its whole session and every process it started (however
  it hid: the zygote is their subreaper) are killed;
* what it prints goes to a file the grader opened in a folder of its own (the
  child cannot swap it for a link), read back after the child is gone, truncated.

The child gets a minimal environment: none of the grader's variables (tokens,
paths to its files) but the path and the language settings.  Without root the
submission runs as the grader's user: the limits hold, the walls do not, and
`describe_isolation` says so.
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gradverify.grading import protocol
from gradverify.grading.isolation import probe

#: Sandbox users are ``UID_BASE + the grading process's id``: one per grading process
#: (process ids are unique while they live), far above any real user's.
UID_BASE = 1_000_000_000
#: How much of a child's captured output its report shows: bytes, and lines.
SHOWN_OUTPUT = 1500
SHOWN_LINES = 20
#: Seconds the grader waits for its zygote to answer before starting a new one.
ZYGOTE_SECONDS = 30.0
#: The grader's environment variables a child keeps; the rest never reach it.
_KEPT_VARIABLES = ("PATH", "PYTHONPATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ")
_ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@dataclass(frozen=True)
class Limits:
    """What one check's child may use."""

    seconds: float  # wall time for the whole check
    memory: int  # bytes of address space beyond numpy's, per process
    processes: int = 16  # processes the sandbox user may run at once (as root)
    file_size: int = 16 * 2**20  # bytes any one file may grow to


class SubmissionDied(Exception):
    """The child stopped answering: it exited, crashed, was killed, or ran out of time."""


class Child:
    """One running child: send it requests, then close it to learn how it ended."""

    def __init__(
        self, sandbox: Sandbox, sock: socket.socket, pid: int, scratch: str, output: str
    ) -> None:
        self._sandbox, self._sock, self.pid = sandbox, sock, pid
        self.scratch, self.output_file = scratch, output
        self.ended = ""  # how it ended, once known

    def request(
        self, header: dict[str, Any], arrays: list[np.ndarray], deadline: float
    ) -> tuple[dict[str, Any], list[np.ndarray]]:
        """Send one request and wait for the reply until `deadline` (time.monotonic)."""
        try:
            self._sock.settimeout(max(deadline - time.monotonic(), 1e-3))
            protocol.write_message(self._sock, header, arrays)
            return protocol.read_message(self._sock, deadline)
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
        """What the child printed (its stdout and stderr), truncated; read once it is gone."""
        self.close()
        try:
            with open(self.output_file, "rb") as handle:
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
        self._root = ""  # made with each zygote, which removes it when it ends
        self.uid = UID_BASE + os.getpid() if os.geteuid() == 0 else None
        self._owner = os.getpid()
        atexit.register(self._at_exit)

    def _at_exit(self) -> None:
        if os.getpid() == self._owner:  # not in a forked worker: its zygote is its parent's
            self.shutdown()

    def run(self, prepare: Callable[[str], None], limits: Limits, hide: Sequence[str]) -> Child:
        """A child in a fresh scratch folder that `prepare` fills with the submission;
        `hide` are folders of the grader's the child must not see (as root)."""
        if not self._alive():
            self._start()
        scratch = tempfile.mkdtemp(dir=self._root)
        prepare(scratch)
        if self.uid is not None:
            for folder, _, files in os.walk(scratch):
                for path in [folder, *(os.path.join(folder, f) for f in files)]:
                    os.lchown(path, self.uid, self.uid)
        os.chmod(scratch, 0o700)
        output = os.path.join(self._root, "outputs", os.path.basename(scratch))
        written = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        ours, theirs = socket.socketpair()
        request = {
            "op": "fork",
            "scratch": scratch,
            "hide": [os.path.abspath(h) for h in hide],
            "uid": self.uid,
            "memory": limits.memory,
            "cpu_seconds": int(limits.seconds * 2) + 1,
            "file_size": limits.file_size,
            "processes": limits.processes if self.uid is not None else _own_processes() + 32,
        }
        try:
            reply = self._ask(request, [theirs.fileno(), written])
        finally:
            theirs.close()
            os.close(written)
        return Child(self, ours, int(reply["pid"]), scratch, output)

    def reap(self, pid: int) -> str:
        """Kill the child's session and leftovers (in the zygote), say how it ended."""
        reply = self._ask({"op": "reap", "pid": pid})
        if "signal" in reply:
            return f"was killed by {signal.Signals(reply['signal']).name}"
        if reply.get("exit") == 70:
            return "could not be set up (see what it printed)"
        return f"exited with status {reply.get('exit')}"

    def discard(self, child: Child) -> None:
        """Remove what the check left: its scratch folder and its output."""
        child.close()
        shutil.rmtree(child.scratch, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.remove(child.output_file)

    def _ask(self, request: dict[str, Any], fds: Sequence[int] = ()) -> dict[str, Any]:
        """One request to the zygote; a zygote that dies or stalls is replaced."""
        control = self._control if self._alive() else self._start()
        assert control is not None
        try:
            control.settimeout(ZYGOTE_SECONDS)
            socket.send_fds(control, [json.dumps(request).encode()], list(fds))
            reply = control.recv(1 << 16)
        except OSError as error:
            self.shutdown()
            raise SubmissionDied(f"the grader's zygote failed ({error})") from None
        if not reply:
            self.shutdown()
            raise SubmissionDied("the grader's zygote died")
        return dict(json.loads(reply))

    def _alive(self) -> bool:
        return self._zygote is not None and self._zygote.poll() is None

    def _start(self) -> socket.socket:
        """A new zygote, with a new scratch root (a dead zygote's was removed with it)."""
        self.shutdown()
        self._root = tempfile.mkdtemp(prefix="gradverify-sandbox-", dir=_scratch_base(self.uid))
        os.chmod(self._root, 0o711)  # children can reach their own folder, list none
        os.mkdir(os.path.join(self._root, "outputs"), 0o700)  # the grader's alone
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        environment = {k: os.environ[k] for k in _KEPT_VARIABLES if k in os.environ}
        self._zygote = subprocess.Popen(
            [sys.executable, "-m", "gradverify.grading.zygote", str(theirs.fileno()), self._root],
            pass_fds=[theirs.fileno()],
            stdin=subprocess.DEVNULL,
            env={**environment, **_ONE_THREAD, "HOME": "/"},
            cwd="/",  # not the grader's folder: it would be first on the zygote's sys.path
        )
        theirs.close()
        self._control = ours
        return ours

    def shutdown(self) -> None:
        """Stop the zygote (it kills whatever children remain); remove the scratch root."""
        if self._control is not None:
            self._control.close()
            self._control = None
        if self._zygote is not None:
            try:
                self._zygote.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._zygote.kill()
            self._zygote = None
        if self._root:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = ""


def _scratch_base(uid: int | None) -> str | None:
    """Where scratch folders go: as root, outside the temporary folders a child gets its
    own empty copies of (``/tmp``, ...), so its working folder stays where it is."""
    if uid is None:
        return None
    for base in ("/run", "/var/lib"):
        if os.path.isdir(base) and os.access(base, os.W_OK):
            return base
    return None


def describe_isolation() -> str:
    """What the sandbox isolates on this machine, for the instructor (probed here)."""
    if os.geteuid() != 0:
        return (
            "NOT root: submissions run as the grader's user, with limits but without walls; "
            "grade untrusted work as root, or in a container"
        )
    return f"each grading process's submissions run as a user of their own; {probe().describe()}"


def _own_processes() -> int:
    """How many processes this user runs now (RLIMIT_NPROC counts them all)."""
    uid = os.getuid()
    count = 0
    for entry in os.listdir("/proc"):
        with contextlib.suppress(OSError):
            if entry.isdigit() and os.stat(f"/proc/{entry}").st_uid == uid:
                count += 1
    return count

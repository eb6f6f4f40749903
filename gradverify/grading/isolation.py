"""What a sandboxed child is cut off from, when the grader runs as root (Linux).

* **Network**: a new network namespace holds only a loopback that is down: no
  TCP or UDP connection leaves the child.
* **User**: the child drops to an unprivileged user of its own (and can gain
  no privilege back), so it cannot write the grader's files, the results or
  other submissions.
* **Files**: in a new mount namespace the child sees empty, private folders
  over the assignment, the submissions and the results, and over ``/tmp``,
  ``/var/tmp`` and ``/dev/shm`` (nothing outlives the check there, nothing
  passes between checks); a Python installed under a private folder (pyenv
  under ``/root``) stays readable because exactly the folders Python needs are
  mounted back into an empty cover, and nothing else of that folder.

Containers often forbid namespaces (Docker's default capabilities do).  `probe`
tries each once in a throwaway child; what is not permitted is skipped, and
`Isolation.describe` says so for the run's report.  A check never fails for it.
"""

from __future__ import annotations

import ctypes
import os
import site
import stat
import sys
import sysconfig
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

_CLONE_NEWNS = 0x00020000
_CLONE_NEWIPC = 0x08000000
_CLONE_NEWNET = 0x40000000
_MS_BIND, _MS_REC, _MS_MOVE, _MS_PRIVATE = 4096, 16384, 8192, 1 << 18
_PR_SET_NO_NEW_PRIVS = 38
#: Private temporary folders every child gets, empty and capped.
TEMPORARY = ("/tmp", "/var/tmp", "/dev/shm")
_TEMPORARY_SIZE = b"size=64m,mode=1777"


def libc() -> Any:
    return ctypes.CDLL(None, use_errno=True)


def _call(result: int, what: str) -> None:
    if result != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"{what}: {os.strerror(error)}")


@dataclass(frozen=True)
class Isolation:
    """What this machine permits the sandbox (found by `probe`)."""

    network: bool  # a network namespace of its own
    mounts: bool  # a mount namespace of its own
    #: (private folder, the exact folders below it Python needs), shallowest first
    covers: tuple[tuple[str, tuple[str, ...]], ...] = ()
    #: The folders Python needs (never hidden, whatever asks)
    needed: tuple[str, ...] = ()

    def describe(self) -> str:
        network = "no network" if self.network else "network NOT cut (namespaces not permitted)"
        files = (
            "private /tmp, assignment and results hidden"
            if self.mounts
            else "files NOT hidden (mount namespaces not permitted)"
        )
        return f"{network}; {files}"


def probe() -> Isolation:
    """Try each namespace in a throwaway child (as root); plan the folders to cover."""
    if os.geteuid() != 0:
        return Isolation(False, False)
    mounts = _permitted(_CLONE_NEWNS)
    network = _permitted(_CLONE_NEWNET | _CLONE_NEWIPC)
    return Isolation(network, mounts, _covers() if mounts else (), tuple(needed()))


def _permitted(flag: int) -> bool:
    pid = os.fork()
    if pid == 0:
        os._exit(0 if libc().unshare(flag) == 0 else 1)
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def needed() -> list[str]:
    """The folders the child reads: Python's library and executable, site-packages, ours."""
    import gradverify

    paths = {
        sysconfig.get_paths()["stdlib"],
        sysconfig.get_paths()["platstdlib"],
        os.path.dirname(os.path.realpath(sys.executable)),
        os.path.dirname(os.path.abspath(gradverify.__file__)),
        *site.getsitepackages(),
        *(p for p in sys.path if p and os.path.isdir(p)),
    }
    return sorted(os.path.realpath(p) for p in paths)


def _covers() -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Each private folder on the way to something needed, with what to mount back in it."""
    found: dict[str, set[str]] = {}
    for path in needed():
        parts = path.strip("/").split("/")
        for depth in range(1, len(parts)):
            folder = "/" + "/".join(parts[:depth])
            try:
                mode = os.stat(folder).st_mode
            except OSError:
                break
            if not mode & stat.S_IXOTH:
                found.setdefault(folder, set()).add(path)
                break  # deeper private folders are inside what is mounted back
    ordered = sorted(found.items(), key=lambda item: item[0].count("/"))
    return tuple((folder, tuple(sorted(keep))) for folder, keep in ordered)


def enter(isolation: Isolation, staging: str, scratch: str, hide: Sequence[str]) -> None:
    """In the child, as root, before dropping to its user: leave the network, hide the
    grader's folders, get private temporary folders, and move into `scratch`.

    `staging` is an empty folder the zygote owns, for moving mounts; `hide` are the
    assignment's, the submissions' and the results' folders.  A folder holding the
    scratch folder or anything Python needs is not hidden (the sandbox keeps scratch
    folders under ``/run``; a private folder around Python is covered instead).
    """
    if isolation.network:  # (and System V shared memory: a namespace of its own too)
        _call(libc().unshare(_CLONE_NEWNET | _CLONE_NEWIPC), "unshare(CLONE_NEWNET)")
    if not isolation.mounts:
        os.chdir(scratch)
        return
    lib = libc()
    _call(lib.unshare(_CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    _call(lib.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None), "make / private")
    for number, (folder, keep) in enumerate(isolation.covers):
        _cover(lib, folder, keep, os.path.join(staging, str(number)))
    kept = [scratch, staging, *isolation.needed]
    for folder in [*hide, *TEMPORARY]:
        if os.path.isdir(folder) and not any(_inside(path, folder) for path in kept):
            _call(lib.mount(b"tmpfs", folder.encode(), b"tmpfs", 0, _TEMPORARY_SIZE), folder)
    os.chdir(scratch)


def _cover(lib: Any, folder: str, keep: Sequence[str], staging: str) -> None:
    """An empty readable tmpfs over `folder`, with exactly the `keep` folders mounted back."""
    held = []
    for number, path in enumerate(keep):
        place = os.path.join(staging, str(number))
        os.makedirs(place, exist_ok=True)
        _call(lib.mount(path.encode(), place.encode(), None, _MS_BIND | _MS_REC, None), path)
        held.append((place, path))
    _call(lib.mount(b"tmpfs", folder.encode(), b"tmpfs", 0, b"mode=0755"), f"cover {folder}")
    for place, path in held:
        os.makedirs(path, exist_ok=True)
        _call(lib.mount(place.encode(), path.encode(), None, _MS_MOVE, None), f"back {path}")


def _inside(path: str, folder: str) -> bool:
    return os.path.commonpath([os.path.abspath(path), os.path.abspath(folder)]) == os.path.abspath(
        folder
    )


def drop_to(uid: int) -> None:
    """Become `uid` for good: no groups, no setuid program can raise privileges again."""
    _call(libc().prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)

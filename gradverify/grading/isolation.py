"""What a sandboxed child is cut off from, when the grader runs as root (Linux).

* **Network**: a new network namespace holds only a loopback that is down: no
  connection reaches anything, on this machine or off it.
* **User**: the child drops to an unprivileged user of its own, so it can read
  neither the grader's files nor other submissions', and write none of them.
* **Files Python needs**: an unprivileged user cannot read a Python installed
  under a private folder (pyenv under ``/root``).  In a new mount namespace the
  child covers each such folder with an empty, readable tmpfs and mounts back
  only the subfolder on the way to Python: the interpreter becomes readable,
  the rest of the private folder disappears.

Containers often forbid namespaces (Docker's default capabilities do; Gradescope's
image runs Python from ``/usr``, which every user reads).  `probe` tries each
once in a throwaway child; what is not permitted is skipped and said
(`Isolation.describe`), never a reason for a check to fail.
"""

from __future__ import annotations

import ctypes
import os
import stat
import sys
from dataclasses import dataclass
from typing import Any

_CLONE_NEWNS = 0x00020000
_CLONE_NEWNET = 0x40000000
_MS_BIND, _MS_REC, _MS_MOVE, _MS_PRIVATE = 4096, 16384, 8192, 1 << 18


def _libc() -> Any:
    return ctypes.CDLL(None, use_errno=True)


def _call(result: int, what: str) -> None:
    if result != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"{what}: {os.strerror(error)}")


@dataclass(frozen=True)
class Isolation:
    """What this machine permits the sandbox (found by `probe`)."""

    network: bool  # a network namespace of its own
    mounts: bool  # a mount namespace (to make Python readable to the sandbox user)
    covers: tuple[tuple[str, str], ...] = ()  # (private folder, subfolder to keep)

    def describe(self) -> str:
        network = "none (own namespace)" if self.network else "shared (namespaces not permitted)"
        return f"network: {network}"

    def to_dict(self) -> dict[str, Any]:
        return {"network": self.network, "mounts": self.mounts, "covers": list(self.covers)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Isolation:
        return cls(data["network"], data["mounts"], tuple(tuple(c) for c in data["covers"]))


def probe() -> Isolation:
    """Try each namespace in a throwaway child (as root); plan the folders to cover."""
    if os.geteuid() != 0:
        return Isolation(False, False)
    network = _permitted(_CLONE_NEWNET)
    mounts = _permitted(_CLONE_NEWNS)
    return Isolation(network, mounts, _covers() if mounts else ())


def _permitted(flag: int) -> bool:
    pid = os.fork()
    if pid == 0:
        os._exit(0 if _libc().unshare(flag) == 0 else 1)
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def _needed() -> list[str]:
    """The folders the child reads: Python's prefixes, its library, numpy's and ours."""
    import numpy

    import gradverify

    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.__file__)}
    paths |= {os.path.dirname(os.path.dirname(m.__file__ or "")) for m in (numpy, gradverify)}
    paths.add(os.path.dirname(os.path.realpath(sys.executable)))
    return sorted(p for p in paths if p)


def _covers() -> tuple[tuple[str, str], ...]:
    """(private folder, its subfolder on the way to something needed), shallowest first."""
    found: list[tuple[str, str]] = []
    for path in _needed():
        parts = os.path.realpath(path).strip("/").split("/")
        for depth in range(1, len(parts)):
            folder = "/" + "/".join(parts[:depth])
            try:
                mode = os.stat(folder).st_mode
            except OSError:
                break
            if not mode & stat.S_IXOTH:
                pair = (folder, parts[depth])
                if pair not in found:
                    found.append(pair)
    return tuple(sorted(found, key=lambda pair: pair[0].count("/")))


def enter(isolation: Isolation, staging: str) -> None:
    """In the child, as root, before dropping to its user: leave the network, cover the
    private folders (`staging` is an empty folder for the moves)."""
    libc = _libc()
    if isolation.network:
        _call(libc.unshare(_CLONE_NEWNET), "unshare(CLONE_NEWNET)")
    if not (isolation.mounts and isolation.covers):
        return
    _call(libc.unshare(_CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    _call(libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None), "make / private")
    for number, (folder, keep) in enumerate(isolation.covers):
        kept = os.path.join(folder, keep).encode()
        held = os.path.join(staging, str(number))
        os.makedirs(held, exist_ok=True)
        _call(libc.mount(kept, held.encode(), None, _MS_BIND | _MS_REC, None), f"bind {kept!r}")
        _call(libc.mount(b"tmpfs", folder.encode(), b"tmpfs", 0, b"mode=0755"), f"cover {folder}")
        os.mkdir(os.path.join(folder, keep))
        _call(libc.mount(held.encode(), kept, None, _MS_MOVE, None), f"move back {kept!r}")

"""Finding processes by their command line, for tests of what a grading run leaves running."""

from __future__ import annotations

import os


def running(text: str) -> list[int]:
    """The live processes whose command line holds `text` (a zombie's is empty)."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                if text.encode() in cmdline.read():
                    found.append(int(entry))
        except (OSError, ValueError):
            continue
    return found

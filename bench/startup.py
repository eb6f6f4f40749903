"""What the pytest plugin costs a session that runs no gradient check.

gradverify registers its plugin through an entry point, so every pytest session
where it is installed loads it.  Two measures, in fresh interpreters:

* what importing the plugin costs, as ``python -X importtime`` reports it (the
  cumulative time of ``gradverify.plugin`` and everything it imports);
* ``pytest --collect-only`` of a project with one plain test, with the plugin and
  without it (``-p no:gradverify``), alternating the two so that the machine's load
  falls on both: the median of the paired differences.

Target: under 10 ms.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNS = 21


def _session(folder: Path, *options: str) -> float:
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-q",
            "-p",
            "no:cacheprovider",
            *options,
        ],
        cwd=folder,
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def _import_cost() -> float:
    """Seconds ``import gradverify.plugin`` takes, with what it imports (-X importtime),
    pytest already imported (as in a session)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import pytest; import gradverify.plugin"],
        check=True,
        capture_output=True,
        text=True,
    )
    line = next(x for x in done.stderr.splitlines() if x.rstrip().endswith("| gradverify.plugin"))
    return int(line.split("|")[1]) / 1e6


def main() -> None:
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        (folder / "test_plain.py").write_text("def test_plain():\n    assert 1 + 1 == 2\n")
        _session(folder)  # warm the file system caches
        with_plugin, without = [], []
        for _ in range(RUNS):
            with_plugin.append(_session(folder))
            without.append(_session(folder, "-p", "no:gradverify"))
    imports = statistics.median(_import_cost() for _ in range(RUNS))
    paired = statistics.median(a - b for a, b in zip(with_plugin, without))
    print(
        f"import gradverify.plugin, pytest imported: {1000 * imports:6.1f} ms  (median of {RUNS})"
    )
    print(f"pytest --collect-only of one plain test, median of {RUNS} fresh interpreters each")
    print(f"  without gradverify : {1000 * statistics.median(without):7.1f} ms")
    print(f"  with gradverify    : {1000 * statistics.median(with_plugin):7.1f} ms")
    print(f"  paired difference  : {1000 * paired:+7.1f} ms  (target <= 10 ms)")


if __name__ == "__main__":
    main()

"""What the pytest plugin costs a session that runs no gradient check.

gradverify registers its plugin through an entry point, so every pytest session
where it is installed loads it.  This times ``pytest --collect-only`` of a project
with one plain test, with the plugin and without it (``-p no:gradverify``), in
fresh interpreters, alternating the two so that the machine's load falls on both,
and prints the medians and their difference.  Target: under 10 ms.
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


def main() -> None:
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        (folder / "test_plain.py").write_text("def test_plain():\n    assert 1 + 1 == 2\n")
        _session(folder)  # warm the file system caches
        with_plugin, without = [], []
        for _ in range(RUNS):
            with_plugin.append(_session(folder))
            without.append(_session(folder, "-p", "no:gradverify"))
    loaded, bare = statistics.median(with_plugin), statistics.median(without)
    print(f"pytest --collect-only of one plain test, median of {RUNS} fresh interpreters each")
    print(f"  without gradverify: {1000 * bare:7.1f} ms")
    print(f"  with gradverify   : {1000 * loaded:7.1f} ms")
    print(f"  plugin cost       : {1000 * (loaded - bare):+7.1f} ms  (target <= 10 ms)")


if __name__ == "__main__":
    main()

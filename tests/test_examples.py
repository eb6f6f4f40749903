"""The student example runs as the README says: one readable failure, clean passes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_student_example_shows_one_failure_and_three_passes():
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "examples/student", "-p", "no:cacheprovider"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        # a fresh session: not an xdist worker even when this suite runs under -n
        env={k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")},
    )
    out = done.stdout
    assert done.returncode == 1, out
    assert "1 failed, 3 passed" in out
    assert "GradientMismatch: SoftmaxWithLoss.backward — dx disagrees" in out
    assert "hint: analytic = 4 x numeric on every element: a missing 1/N (N = 4" in out
    assert "test_relu: warning: Relu.backward writes into the dout" in out

"""Gradescope's ``results.json`` for one submission, from its check records.

The format (gradescope/autograder_samples ``docs/specs.md``): a top-level
``score`` and ``execution_time``, and one test per check with ``name``,
``number``, ``score``, ``max_score``, ``status``, ``output`` (the canonical
report) and ``visibility``.  Gradescope itself hides a ``hidden`` test from the
student, and an ``after_due_date`` one until then; the top-level output names
no hidden check.  The file is written once, whole, and atomically.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from typing import Any


def results_json(records: Sequence[dict[str, Any]], seconds: float) -> dict[str, Any]:
    """The results.json document of one submission."""
    tests = [
        {
            "name": r["check"],
            "number": r["number"],
            "score": r["score"],
            "max_score": r["max_score"],
            "status": "passed" if r["passed"] else "failed",
            "output": r["output"],
            "visibility": r["visibility"],
        }
        for r in records
    ]
    visible = [r for r in records if r["visibility"] == "visible"]
    passed = sum(r["passed"] for r in visible)
    output = f"{passed} of {len(visible)} visible checks passed."
    if len(visible) < len(records):
        output += " Hidden checks are graded too: their results may differ."
    return {
        "score": round(sum(r["score"] for r in records), 6),
        "execution_time": round(seconds, 3),
        "output": output,
        "stdout_visibility": "hidden",
        "tests": tests,
    }


def write_atomically(path: str, document: dict[str, Any]) -> None:
    """Write JSON to `path` through a temporary file and a rename: never half a file."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=folder, suffix=".tmp")
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=2)
    os.replace(temporary, path)

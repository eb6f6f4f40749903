"""From a check's result to its score and the report a student reads.

The rule, all computed by the grader:

* a check that could not run (ERROR), or that broke a contract or the reference
  comparison (an error finding), scores 0: its gradients mean nothing;
* otherwise, with ``gradients = {dx = 1, dW = 2}``, each gradient that PASSes
  earns its points (one named but never checked earns nothing, and says so);
* without partial credit, the check's points if it PASSes, else 0.

INCONCLUSIVE earns nothing: a grade needs a verdict.
"""

from __future__ import annotations

from typing import Any

from gradverify.grading.assignment import GradedCheck
from gradverify.report import format_result
from gradverify.results import CheckResult, Severity, Status


def score(result: CheckResult, check: GradedCheck) -> tuple[float, list[str]]:
    """The points `result` earns, and one line per gradient saying why."""
    if result.status is Status.ERROR:
        return 0.0, ["0 points: the check could not run (see the error above)."]
    errors = [f for f in result.findings if f.severity is Severity.ERROR]
    if errors:
        return 0.0, [f"0 points: {errors[0].name} (see above)."]
    if not check.gradients:
        earned = check.points if result.status is Status.PASS else 0.0
        return earned, [f"{earned:g} / {check.points:g} points: {result.status.name}"]
    lines, total = [], 0.0
    for name, points in check.gradients.items():
        tensor = next((t for t in result.tensors if name in (t.grad_name, t.name)), None)
        if tensor is None:
            lines.append(f"{name}: 0 / {points:g} (no such gradient was checked)")
            continue
        earned = points if tensor.status is Status.PASS else 0.0
        total += earned
        lines.append(f"{name}: {earned:g} / {points:g} ({tensor.status.name})")
    return total, lines


def record(
    submission: str,
    check: GradedCheck,
    result: CheckResult,
    printed: str,
    seconds: float,
) -> dict[str, Any]:
    """One line of results.jsonl: everything the outputs and the class summary need."""
    earned, lines = score(result, check)
    output = [format_result(result), "", *lines]
    if printed:
        output += ["", "what the submission printed:", printed]
    return {
        "submission": submission,
        "check": check.name,
        "number": str(check.number),
        "score": earned,
        "max_score": check.points,
        # a 0-point check that fails is not passed, though it loses nothing
        "passed": result.status is Status.PASS and earned >= check.points,
        "status": result.status.value,
        "visibility": check.visibility,
        "output": "\n".join(output),
        "hints": sorted({t.hint for t in result.tensors if t.hint and t.status is not Status.PASS}),
        "findings": [f.name for f in result.findings if f.severity is Severity.ERROR],
        "error": result.error.splitlines()[0] if result.error else "",
        "seconds": round(seconds, 3),
    }

"""What the pytest plugin needs beyond hooks: option precedence, per-test seeds, the summary.

Kept apart from `plugin` so that the plugin module stays a thin list of hooks and
fixtures, and so that this logic is tested without starting pytest.  Nothing here
imports pytest.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gradverify.config import CheckConfig
from gradverify.errors import InvalidArgument
from gradverify.report import projection_notes, worst_of
from gradverify.results import CheckResult, Status

if TYPE_CHECKING:
    from gradverify.fuzzing import FuzzResult

#: The options a test can set, with how to read each from text (command line, ini).
OPTIONS = ("mode", "rtol", "atol", "seed", "budget", "workers")


def _parse(name: str, text: Any) -> Any:
    """Turn an option's text into its value; the caller adds where it came from."""
    if not isinstance(text, str):
        return text
    if name == "mode":
        return text.strip()
    if name in ("seed", "workers"):
        return int(text)
    return float(text)


@dataclass(frozen=True)
class Layer:
    """One source of option values and how to name it in an error message."""

    values: Mapping[str, Any]
    where: str  # e.g. "the gradcheck marker", "--gradverify-rtol", "ini gradverify_rtol"


def resolve(layers: list[Layer]) -> dict[str, Any]:
    """The option values in force: the first layer that sets one wins (marker > CLI > ini).

    Every value is validated here, and an error names the layer it came from.
    """
    chosen: dict[str, Any] = {}
    for name in OPTIONS:
        for layer in layers:
            text = layer.values.get(name)
            if text is None or text == "":
                continue
            chosen[name] = _validated(name, text, layer.where)
            break
    return chosen


def _validated(name: str, text: Any, where: str) -> Any:
    try:
        value = _parse(name, text)
        CheckConfig(**{name: value})
    except InvalidArgument as refused:
        requirement = refused.requirement or _number_like(name)
    except ValueError:  # the text is not a number
        requirement = _number_like(name)
    else:
        return value
    raise InvalidArgument(f"{requirement}, got {name}={text!r} (from {where}).") from None


_EXAMPLES = {
    "mode": "full",
    "rtol": "1e-3",
    "atol": "1e-8",
    "seed": "0",
    "budget": "5",
    "workers": "2",
}


def _number_like(name: str) -> str:
    return f"`{name}` must be a number like {_EXAMPLES[name]}"


def test_seed(session_seed: int, test_id: str) -> int:
    """A seed per test from the session seed and the test's id: independent of test order
    and selection, so ``-k`` or ``-n 2`` reproduce exactly what a full run did."""
    return zlib.crc32(f"{session_seed}:{test_id}".encode())


def summary_record(test_id: str, result: CheckResult) -> dict[str, Any]:
    """One row of the session summary (plain data, so it crosses xdist workers)."""
    worst = worst_of(result)
    return {
        "test": test_id,
        "target": result.label,
        "status": result.status.value,
        "worst": worst.name,
        "max_rel_err": worst.rel_err,
        "margin": worst.margin,
        "reason": worst.reason,
        "forward_calls": result.forward_calls,
        "seconds": result.seconds,
        "seed": result.seed,
        "checked": result.coverage,
        "projections": projection_notes(result),
        "findings": [f"{f.severity}: {f.message}" for f in result.findings],
        "result": result.to_dict(),
    }


def fuzz_record(test_id: str, target: str, fuzzed: FuzzResult) -> dict[str, Any]:
    """The row of a fuzz run none of whose cases failed (a failing one shows its case's)."""
    return {
        "test": test_id,
        "target": target,
        "status": fuzzed.status.value,
        "worst": "",
        "max_rel_err": None,
        "margin": None,
        "reason": "",
        "forward_calls": None,
        "seconds": fuzzed.seconds,
        "seed": fuzzed.seed,
        "checked": f"fuzz: {fuzzed.examples} cases ({fuzzed.inconclusive} inconclusive)",
        "projections": [],
        "findings": [],
        "result": fuzzed.to_dict(),
    }


def junit_properties(record: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """What CI systems show per test: status, worst error and seed."""
    return [
        ("gradverify_status", record["status"]),
        ("gradverify_worst_error", _number(record["max_rel_err"])),
        ("gradverify_seed", record["seed"]),
    ]


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.2e}"


def summary_table(records: list[Mapping[str, Any]]) -> list[str]:
    """The terminal summary: one line per check, then the count by status."""
    ordered = sorted(records, key=lambda r: r["test"])
    test_width = min(max([len(r["test"]) for r in ordered] + [4]), 60)
    target_width = max([len(r["target"]) for r in ordered] + [6])
    lines = [
        f"{'test':<{test_width}}  {'target':<{target_width}}  {'status':<12}  "
        f"{'worst rel err':>13}  {'margin':>8}  {'forward':>8}  {'time':>7}  checked"
    ]
    for r in ordered:
        test = r["test"] if len(r["test"]) <= test_width else "..." + r["test"][-test_width + 3 :]
        margin = "-" if r["margin"] is None else f"{r['margin']:.2g}"
        calls = "-" if r["forward_calls"] is None else r["forward_calls"]
        lines.append(
            f"{test:<{test_width}}  {r['target']:<{target_width}}  {r['status'].upper():<12}  "
            f"{_number(r['max_rel_err']):>13}  {margin:>8}  {calls:>8}  "
            f"{r['seconds']:>6.2f}s  {r.get('checked', '')}"
            + (f"  ({r['reason']})" if r.get("reason") else "")
        )
    counts = {s: sum(r["status"] == s.value for r in ordered) for s in Status}
    lines.append(", ".join(f"{n} {s.name.lower()}" for s, n in counts.items() if n))
    return lines + session_warnings(ordered)


def session_warnings(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """What passing checks still have to say: their findings (warnings), and what the
    gradients checked by projections could not see."""
    ordered = sorted(records, key=lambda r: r["test"])
    lines = [
        f"{r['test']}: {finding}"
        for r in ordered
        if r["status"] == Status.PASS.value
        for finding in r.get("findings", [])
    ]
    return lines + [f"{r['test']}: {note}" for r in ordered for note in r.get("projections", [])]


def write_json(path: str, records: list[Mapping[str, Any]]) -> None:
    """All results of the session, ordered by test id (same file with or without xdist)."""
    results = [{"test": r["test"], **r["result"]} for r in sorted(records, key=lambda r: r["test"])]
    with open(path, "w", encoding="utf-8") as handle:
        json.dump({"gradverify_results": results}, handle, indent=2)

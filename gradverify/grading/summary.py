"""The class summary: what an instructor wants to say in the next lecture.

A score histogram, the pass rate of every check, and the most common failures
by hint ("analytic = 0.3333 x numeric on every element: an extra 1/N?: 37% of
submissions") and by error ("no answer within the time limit"), as Markdown and
as one self-contained HTML page (no scripts, no external assets).  Built from
the check records alone, so it can be regenerated from ``results.jsonl``.
"""

from __future__ import annotations

import html
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

#: How many of the most common failures the summary lists.
TOP_FAILURES = 10
_BINS = 10


@dataclass(frozen=True)
class ClassSummary:
    """The numbers behind both renderings."""

    title: str
    max_score: float
    scores: dict[str, float]  # by submission
    pass_rates: list[tuple[str, int, int]]  # check, passed, graded
    failures: list[tuple[str, str, int]]  # check, what went wrong, submissions
    walls: str  # how the submissions were isolated
    unlisted: int = 0  # failures rarer than the listed ones

    @property
    def unlisted_line(self) -> str:
        """The line saying what the list leaves out, or ''."""
        if not self.unlisted:
            return ""
        return f"and {self.unlisted} rarer failure(s), each in results.jsonl"

    @property
    def histogram(self) -> list[tuple[str, int]]:
        """Score bins (``0-10%`` ... ``90-100%``) and how many submissions fall in each."""
        counts = [0] * _BINS
        for value in self.scores.values():
            share = value / self.max_score if self.max_score else 0.0
            counts[min(int(share * _BINS), _BINS - 1)] += 1
        step = 100 // _BINS
        return [(f"{i * step}-{(i + 1) * step}%", n) for i, n in enumerate(counts)]


def summarize(
    title: str, records: Sequence[dict[str, Any]], max_score: float, walls: str
) -> ClassSummary:
    """The numbers of a class from its check records."""
    scores: dict[str, float] = defaultdict(float)
    passed: Counter[str] = Counter()
    graded: Counter[str] = Counter()
    failures: Counter[tuple[str, str]] = Counter()
    for record in records:
        scores[record["submission"]] += record["score"]
        graded[record["check"]] += 1
        passed[record["check"]] += record["passed"]
        for reason in _reasons(record):
            failures[(record["check"], reason)] += 1
    rates = [(check, passed[check], graded[check]) for check in graded]
    common = [(check, reason, n) for (check, reason), n in failures.most_common(TOP_FAILURES)]
    unlisted = len(failures) - len(common)
    return ClassSummary(title, max_score, dict(scores), rates, common, walls, unlisted)


def _reasons(record: dict[str, Any]) -> list[str]:
    """What went wrong in one check, in words that repeat across submissions."""
    if record["passed"]:
        return []
    if record.get("error"):
        return [_general(record["error"])]
    reasons = list(record.get("hints", [])) + list(record.get("findings", []))
    return reasons or [f"{record['status'].upper()} without a hint"]


def _general(error: str) -> str:
    """An error message without the parts that differ between submissions (file lines)."""
    text = re.sub(r'File "[^"]*", line \d+', "File ..., line ...", error)
    return text[:160]


def _plain(text: str) -> str:
    """Text from a submission's report, safe inside Markdown (no links, images or tables)."""
    return re.sub(r"([\\`*_\[\]()<>|!#])", r"\\\1", text)


def markdown(summary: ClassSummary) -> str:
    """The summary as Markdown."""
    count = len(summary.scores)
    lines = [f"# {_plain(summary.title)}: class summary", "", f"{count} submissions graded."]
    if count:
        mean = sum(summary.scores.values()) / count
        lines.append(f"Mean score {mean:.2f} / {summary.max_score:g}.")
    lines += ["", "## Scores", "", "| score | submissions |", "|---|---|"]
    lines += [f"| {label} | {'#' * n} {n} |" for label, n in summary.histogram]
    lines += ["", "## Checks", "", "| check | passed | graded | rate |", "|---|---|---|---|"]
    lines += [
        f"| {check} | {ok} | {total} | {100 * ok / total:.0f}% |"
        for check, ok, total in summary.pass_rates
    ]
    lines += ["", "## Most common failures", ""]
    lines += [
        f"- **{_plain(check)}**: {_plain(reason)} — {n} submission(s) "
        f"({100 * n / max(count, 1):.0f}%)"
        for check, reason, n in summary.failures
    ] or ["- none"]
    if summary.unlisted_line:
        lines.append(f"- {summary.unlisted_line}")
    if summary.walls:
        lines += ["", f"Sandbox: {_plain(summary.walls)}."]
    return "\n".join(lines) + "\n"


_STYLE = """
body { font-family: sans-serif; margin: 2em; max-width: 60em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
td, th { border: 1px solid #ccc; padding: 0.3em 0.7em; text-align: left; }
.bar { background: #4a7bd0; height: 1em; display: inline-block; }
.low { color: #b00020; }
"""


def page(summary: ClassSummary) -> str:
    """One self-contained HTML page: inline style, no scripts, no external assets."""
    count = len(summary.scores)
    widest = max([n for _, n in summary.histogram] + [1])
    histogram = "".join(
        f"<tr><td>{label}</td><td><span class='bar' style='width:{12 * n / widest:.2f}em'>"
        f"</span> {n}</td></tr>"
        for label, n in summary.histogram
    )
    rates = "".join(
        f"<tr><td>{html.escape(check)}</td><td>{ok}</td><td>{total}</td>"
        f"<td{' class=low' if ok < total / 2 else ''}>{100 * ok / total:.0f}%</td></tr>"
        for check, ok, total in summary.pass_rates
    )
    failures = (
        "".join(
            f"<li><b>{html.escape(check)}</b>: {html.escape(reason)} — {n} submission(s) "
            f"({100 * n / max(count, 1):.0f}%)</li>"
            for check, reason, n in summary.failures
        )
        or "<li>none</li>"
    )
    if summary.unlisted_line:
        failures += f"<li>{summary.unlisted_line}</li>"
    title = html.escape(summary.title)
    return (
        f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{title}: class summary</title><style>{_STYLE}</style></head><body>"
        f"<h1>{title}: class summary</h1><p>{count} submissions graded.</p>"
        f"<h2>Scores</h2><table><tr><th>score</th><th>submissions</th></tr>{histogram}</table>"
        f"<h2>Checks</h2><table><tr><th>check</th><th>passed</th><th>graded</th>"
        f"<th>rate</th></tr>{rates}</table>"
        f"<h2>Most common failures</h2><ul>{failures}</ul>"
        f"<p>Sandbox: {html.escape(summary.walls)}.</p></body></html>\n"
    )

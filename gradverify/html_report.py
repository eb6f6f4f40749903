"""Results as HTML: the fragment a notebook cell shows, and the report page of a session.

`check_fragment` is what ``CheckResult._repr_html_`` returns: the verdict with a
coloured status, one row per gradient, and for each gradient that did not pass its
numbers, worst elements, hint and pictures (`pictures`), then the full text report
folded away.  `page` puts the fragments of a session (the CLI's checks, a pytest
run's) on one self-contained page: inline style, no script, no external asset, so
it opens from a CI artifact or an e-mail as it is.  Everything is read from the
frozen results; nothing is computed again.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from gradverify import pictures
from gradverify.report import format_result, layer_lines
from gradverify.results import CheckResult, Status, TensorResult

if TYPE_CHECKING:
    from gradverify.fuzzing import FuzzResult

#: The page's and every fragment's style, scoped to `.gradverify` so that a notebook's
#: own style is left alone.
STYLE = """
.gradverify { font-family: sans-serif; font-size: 13px; line-height: 1.4; }
.gradverify table { border-collapse: collapse; margin: 4px 0 8px; }
.gradverify th, .gradverify td { border: 1px solid #d0d7de; padding: 2px 8px;
  text-align: left; vertical-align: top; }
.gradverify td.num { text-align: right; font-family: monospace; }
.gradverify .gv-status { color: #fff; font-weight: bold; padding: 1px 6px;
  border-radius: 3px; }
.gradverify .gv-pass { background: #1a7f37; } .gradverify .gv-fail { background: #cf222e; }
.gradverify .gv-inconclusive { background: #9a6700; }
.gradverify .gv-error { background: #8250df; }
.gradverify .gv-hint { background: #fff8c5; border-left: 4px solid #d4a72c;
  padding: 4px 8px; }
.gradverify .gv-pictures { display: flex; flex-wrap: wrap; gap: 16px; }
.gradverify pre { background: #f6f8fa; padding: 6px; overflow-x: auto; }
.gradverify details { margin: 4px 0; }
"""


def status_badge(status: Status) -> str:
    """The status as a coloured label (green PASS, red FAIL, amber, purple)."""
    return f"<span class='gv-status gv-{status.value}'>{status.name}</span>"


def fragment(shown: CheckResult | FuzzResult) -> str:
    """A check's or a fuzz run's HTML without the style block, for a `page`."""
    if isinstance(shown, CheckResult):
        return check_fragment(shown, styled=False)
    return fuzz_fragment(shown, styled=False)


def check_fragment(result: CheckResult, *, styled: bool = True) -> str:
    """The HTML of one check (see the module docstring); `styled` adds the style block,
    which a page that already has it leaves out."""
    parts = [f"<style>{STYLE}</style>"] * styled + [
        "<div class='gradverify'>",
        f"<p>{status_badge(result.status)} <b>{_e(result.label)}</b> | seed {result.seed} | "
        f"{result.forward_calls} forward calls | {result.seconds:.2f} s | "
        f"{_e(result.coverage)}</p>",
    ]
    if result.error:
        parts.append(f"<pre>{_e(result.error)}</pre>")
    if result.tensors:
        parts.append(_tensor_table(result.tensors))
    if result.undifferentiated:
        parts.append(f"<p>not differentiated: {_e(', '.join(result.undifferentiated))}</p>")
    notes = [f"{f.severity}: {f.message}" for f in result.findings] + list(result.notes)
    if notes:
        parts.append("<ul>" + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>")
    parts += [_tensor_section(t) for t in result.tensors if t.status is not Status.PASS]
    if result.comparisons:
        parts.append(_comparisons(result))
    if result.diagnosis is not None:  # each layer's verdict, the notes and the conclusion
        lines = "\n".join(line.removeprefix("  ") for line in layer_lines(result))
        parts.append(f"<pre>{_e(lines)}</pre>")
        parts += [
            check_fragment(v.result, styled=False)
            for v in result.faulty_layers
            if v.result is not None
        ]
    parts.append(
        f"<details><summary>full report</summary><pre>{_e(format_result(result))}</pre></details>"
    )
    if result.reproduce:
        parts.append(f"<p>reproduce: <code>{_e(result.reproduce)}</code></p>")
    parts.append("</div>")
    return "".join(parts)


def fuzz_fragment(result: FuzzResult, *, styled: bool = True) -> str:
    """The HTML of a fuzz run: its verdict, and the smallest failing case's check."""
    parts = [f"<style>{STYLE}</style>"] * styled + [
        "<div class='gradverify'>",
        f"<p>{status_badge(result.status)} fuzz: {result.examples} example(s), "
        f"{result.inconclusive} inconclusive, {result.seconds:.2f} s | seed {result.seed}</p>",
    ]
    if result.case is not None and result.result is not None:
        parts.append(f"<p>smallest failing case:</p><pre>{_e(result.case.describe())}</pre>")
        parts.append(check_fragment(result.result, styled=False))
        parts.append(f"<p>reproduce: <code>{_e(result.reproduce)}</code></p>")
    parts.append("</div>")
    return "".join(parts)


def page(title: str, records: Sequence[Mapping[str, Any]], warnings: Sequence[str] = ()) -> str:
    """One self-contained page for a session: a summary table, each check folded below it.

    `records` are the session's summary records (`session.summary_record`), each with
    its fragment under ``"html"``."""
    ordered = sorted(records, key=lambda r: r["test"])
    counts = [
        f"{sum(r['status'] == s.value for r in ordered)} {s.name.lower()}"
        for s in Status
        if any(r["status"] == s.value for r in ordered)
    ]
    rows = "".join(
        f"<tr><td><a href='#check-{i}'>{_e(r['test'])}</a></td><td>{_e(r['target'])}</td>"
        f"<td>{status_badge(Status(r['status']))}</td>"
        f"<td>{_e(r.get('reason') or r.get('worst') or '')}</td>"
        f"<td class='num'>{_number(r.get('max_rel_err'), '.1e')}</td>"
        f"<td class='num'>{_number(r.get('margin'), '.2g')}</td>"
        f"<td class='num'>{r.get('forward_calls') or '-'}</td>"
        f"<td class='num'>{r['seconds']:.2f} s</td><td>{_e(r.get('checked', ''))}</td></tr>"
        for i, r in enumerate(ordered)
    )
    checks = "".join(
        f"<details id='check-{i}'{' open' if r['status'] != Status.PASS.value else ''}>"
        f"<summary>{status_badge(Status(r['status']))} {_e(r['test'])}</summary>"
        f"{r.get('html', '')}</details>"
        for i, r in enumerate(ordered)
    )
    notes = "".join(f"<li>{_e(w)}</li>" for w in warnings)
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{_e(title)}</title><style>{STYLE} body {{ margin: 16px; }}</style></head>"
        f"<body class='gradverify'><h1>{_e(title)}</h1><p>{len(ordered)} check(s): "
        f"{', '.join(counts) or 'none'}</p>"
        "<table><thead><tr><th>check</th><th>target</th><th>status</th><th>worst</th>"
        "<th>worst rel err</th><th>margin</th><th>forward calls</th><th>time</th>"
        f"<th>checked</th></tr></thead><tbody>{rows}</tbody></table>"
        + (f"<h2>Warnings</h2><ul>{notes}</ul>" if notes else "")
        + f"<h2>Checks</h2>{checks}</body></html>\n"
    )


def _comparisons(result: CheckResult) -> str:
    """The outputs and gradients held against a reference or a baseline: one row each,
    then the differing elements of those that are not the trusted ones."""
    rows = "".join(
        f"<tr><td>{_e(c.name)}</td><td>{status_badge(c.status)}</td>"
        f"<td class='num'>{c.differing} / {c.checked}</td>"
        f"<td class='num'>{_number(c.max_rel_err, '.1e')}</td>"
        f"<td>{_e(c.problem or c.hint)}</td></tr>"
        for c in result.comparisons
    )
    parts = [
        f"<p>held against {_e(result.against)}:</p><table><thead><tr><th>compared</th>"
        "<th>status</th><th>differing</th><th>max rel err</th><th>problem or hint</th></tr>"
        f"</thead><tbody>{rows}</tbody></table>"
    ]
    for comparison in result.comparisons:
        if comparison.status is Status.PASS or not comparison.rows:
            continue
        cells = "".join(
            f"<tr><td class='num'>{_e(str(r.index or '()'))}</td>"
            f"<td class='num'>{r.yours:.4e}</td><td class='num'>{r.reference:.4e}</td>"
            f"<td class='num'>{r.abs_err:.3e}</td>"
            f"<td class='num'>{_number(r.rel_err, '.3e')}</td></tr>"
            for r in comparison.rows
        )
        parts.append(
            f"<h4>{_e(comparison.name)} {status_badge(comparison.status)}</h4><table><thead>"
            "<tr><th>index</th><th>yours</th><th>reference</th><th>abs err</th><th>rel err</th>"
            f"</tr></thead><tbody>{cells}</tbody></table>"
        )
        if comparison.hint:
            parts.append(f"<p class='gv-hint'>hint: {_e(comparison.hint)}</p>")
    return "".join(parts)


def _tensor_table(tensors: Sequence[TensorResult]) -> str:
    """One row per gradient: its shape, verdict, how it was checked and its numbers."""
    rows = "".join(
        f"<tr><td>{_e(t.grad_name)}</td><td>{_e(str(t.shape))} {_e(t.dtype)}</td>"
        f"<td>{status_badge(t.status)}</td><td>{t.checked_by}</td>"
        + (
            "<td class='num'>-</td>" * 3
            if t.problem
            else f"<td class='num'>{t.mismatched} / {t.checked}</td>"
            f"<td class='num'>{_number(t.max_rel_err, '.1e')}</td>"
            f"<td class='num'>{_number(t.margin, '.2g')}</td>"
        )
        + f"<td>{_e(t.problem or t.hint)}</td></tr>"
        for t in tensors
    )
    return (
        "<table><thead><tr><th>gradient</th><th>shape</th><th>status</th><th>checked by</th>"
        "<th>mismatched</th><th>max rel err</th><th>margin</th><th>problem or hint</th></tr>"
        f"</thead><tbody>{rows}</tbody></table>"
    )


def _tensor_section(tensor: TensorResult) -> str:
    """A gradient that did not pass: its numbers, worst elements, hint and pictures."""
    parts = [f"<h4>{_e(tensor.grad_name)} {status_badge(tensor.status)}</h4>"]
    if tensor.problem:
        parts.append(f"<p>{_e(tensor.problem)}</p>")
    else:
        parts.append(
            f"<p>{_e(tensor.method)} | tolerance |analytic - numeric| &le; atol + "
            f"rtol&middot;|numeric| + noise (rtol={tensor.rtol:.0e}, atol={tensor.atol:.0e})"
            f" | {tensor.mismatched} of {tensor.checked} outside</p>"
        )
    if tensor.rows:
        parts.append(_element_table(tensor))
    if tensor.hint:
        parts.append(f"<p class='gv-hint'>hint: {_e(tensor.hint)}</p>")
    parts += [f"<p>note: {_e(note)}</p>" for note in tensor.notes]
    drawn = [
        pictures.heat_map(tensor.error_map, tensor.grad_name, tensor.shape)
        if tensor.error_map is not None
        else "",
        pictures.scatter(tensor.rows, tensor.grad_name),
    ]
    if any(drawn):
        parts.append(f"<div class='gv-pictures'>{''.join(drawn)}</div>")
    return "".join(parts)


def _element_table(tensor: TensorResult) -> str:
    """The worst elements of a gradient, as the text report lists them."""
    rows = "".join(
        f"<tr><td class='num'>{_e(str(r.index or '()'))}</td>"
        f"<td class='num'>{r.analytic:.4e}</td><td class='num'>{r.numeric:.4e}</td>"
        f"<td class='num'>{r.abs_err:.3e}</td><td class='num'>{_number(r.rel_err, '.3e')}</td>"
        f"<td>{_e(r.note)}</td></tr>"
        for r in tensor.rows
    )
    more = (
        f"<p>showing {len(tensor.rows)} of {tensor.mismatched}</p>"
        if tensor.mismatched > len(tensor.rows)
        else ""
    )
    return (
        "<table><thead><tr><th>index</th><th>analytic</th><th>numeric</th><th>abs err</th>"
        f"<th>rel err</th><th>note</th></tr></thead><tbody>{rows}</tbody></table>{more}"
    )


def _number(value: float | None, spec: str) -> str:
    if value is None:
        return "-"
    return "inf" if value == float("inf") else format(value, spec)


def _e(text: str) -> str:
    return html.escape(str(text), quote=True)


def write_page(
    path: str, title: str, records: Sequence[Mapping[str, Any]], warnings: Sequence[str]
) -> None:
    """Write the `page` of `records` to `path` (raises OSError as `open` does)."""
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(page(title, records, warnings))

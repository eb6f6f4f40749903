"""Plain-text rendering of a `CheckResult`: pure string formatting, golden-tested.

The block for a gradient that does not pass has a fixed shape: headline (where),
setup (shape, dtype, method, step, seed), the tolerance rule with its numbers,
counts and worst errors, a capped table of the worst elements, a hint, and how to
reproduce.  Lines stay under 100 columns; whole arrays are never printed.
"""

from __future__ import annotations

from dataclasses import dataclass

from gradverify.results import (
    CheckedBy,
    CheckResult,
    Comparison,
    ComparisonKind,
    DifferenceRow,
    ElementRow,
    Severity,
    Status,
    TensorResult,
)

_RULE = "|analytic - numeric| <= atol + rtol*|numeric| + noise"


def format_result(result: CheckResult) -> str:
    """The full report: a summary line, one line per gradient, then each problem in detail."""
    lines = [_summary_line(result)]
    if result.tensors or result.undifferentiated:
        lines.append(_checked_line(result))
    if result.error:
        lines.append(f"  error: {result.error}".replace("\n", "\n  "))
    lines += [f"  note: {note}" for note in result.notes]
    lines += [f"  {f.severity}: {f.message}" for f in result.findings]
    width = max([10, *(len(t.grad_name) for t in result.tensors)])
    for tensor in result.tensors:
        lines.append(_tensor_line(tensor, width))
        if tensor.status is Status.PASS:
            lines += [f"    note: {note}" for note in tensor.notes]
    if result.comparisons:
        lines.append(f"  held against {result.against}:")
        lines += [_comparison_line(c) for c in result.comparisons]
    lines += layer_lines(result)
    for tensor in result.tensors:
        if tensor.status is not Status.PASS:
            lines += ["", format_tensor(result, tensor)]
    for comparison in result.comparisons:
        if comparison.status is not Status.PASS:
            lines += ["", format_comparison(result, comparison)]
    for block in _faulty_layer_blocks(result):
        lines += ["", block]
    return "\n".join(lines)


def projection_notes(result: CheckResult) -> list[str]:
    """One line per gradient checked by projections: what they could see, and how to see all."""
    return [
        f"{t.grad_name}: {'; '.join(t.notes[:2])}"
        for t in result.tensors
        if t.projected and t.status is Status.PASS
    ]


def format_failure(result: CheckResult) -> str:
    """The message of a `GradientMismatch`: every gradient that did not pass, in detail."""
    blocks = [format_tensor(result, t) for t in result.tensors if t.status is not Status.PASS]
    blocks += [
        format_comparison(result, c) for c in result.comparisons if c.status is not Status.PASS
    ]
    if result.error or not blocks:
        return format_result(result)
    findings = "\n".join(f"{f.severity}: {f.message}" for f in result.findings)
    layers = "\n".join(line.removeprefix("  ") for line in layer_lines(result))
    extra = [text for text in (findings, layers) if text]
    return "\n\n".join([*blocks, *extra, *_faulty_layer_blocks(result)])


def layer_lines(result: CheckResult) -> list[str]:
    """A failing network's layers, each checked alone, and what that says (see `diagnosis`)."""
    diagnosis = result.diagnosis
    if diagnosis is None:
        return []
    lines = ["  each layer alone, on the inputs it saw in the forward pass:"] * bool(
        diagnosis.layers
    )
    for verdict in diagnosis.layers:
        where = f"{verdict.name} ({verdict.class_name})"
        detail = verdict.problem or (
            worst_of(verdict.result).describe() if verdict.result is not None else ""
        )
        if verdict.status is Status.PASS:
            detail = ""
        lines.append(f"    {verdict.status.name:<12} {where}{f' | {detail}' if detail else ''}")
    lines += [f"  note: {note}" for note in diagnosis.notes]
    faulty = diagnosis.faulty
    undecided = [v.name for v in diagnosis.layers if v.status not in (Status.PASS, Status.FAIL)]
    own_code = f"{result.label}'s own code" + (" (see the notes above)" if diagnosis.notes else "")
    if faulty:
        names = ", ".join(f"{v.name} ({v.class_name})" for v in faulty)
        lines.append(
            f"  faulty layer{'s' if len(faulty) > 1 else ''}: {names}: "
            f"{'it fails' if len(faulty) == 1 else 'each fails'} a check of its own, on the "
            f"inputs it saw (below)"
        )
    elif diagnosis.passes_differ:
        lines.append(
            "  no layer fails alone: the numbers differentiate another forward pass than "
            "backward does (the note above); check again with the switch passed to both"
        )
    elif undecided:
        lines.append(
            f"  no layer fails alone; {', '.join(undecided)} could not be decided alone, so the "
            f"fault is there or in {own_code}"
        )
    elif diagnosis.layers:
        lines.append(
            f"  no layer fails alone: the fault is in {own_code}: the order of its backward "
            f"calls, a layer it skips, what it computes outside its layers (a weight decay "
            f"term), or which gradient it hands back as which"
        )
    return lines


def _faulty_layer_blocks(result: CheckResult) -> list[str]:
    """The failure report of each faulty layer, as its own check gave it."""
    return [format_failure(v.result) for v in result.faulty_layers if v.result is not None]


def _summary_line(result: CheckResult) -> str:
    return (
        f"{result.label}: {result.status.name} | seed={result.seed} | "
        f"{result.forward_calls} forward calls | {result.seconds:.2f} s"
    )


def _checked_line(result: CheckResult) -> str:
    """What the check differentiated (and how), and what it did not."""
    checked = [
        f"{t.name} (projections)" if t.projected else t.name
        for t in result.tensors
        if t.checked_by is not CheckedBy.NOT_CHECKED
    ]
    line = f"  checked: {', '.join(checked) or 'nothing'}"
    skipped = [
        *result.undifferentiated,
        *(t.name for t in result.tensors if t.checked_by is CheckedBy.NOT_CHECKED),
    ]
    return f"{line} | not differentiated: {', '.join(skipped)}" if skipped else line


def _tensor_line(tensor: TensorResult, width: int) -> str:
    if tensor.problem:
        detail = tensor.problem
    else:
        detail = (
            f"max abs err {tensor.max_abs_err:.1e} | max rel err {_rel(tensor.max_rel_err)} | "
            f"margin {tensor.margin:.2g}"
        )
        if tensor.projected:
            detail = f"by projections | {detail}"
    return f"  {tensor.status.name:<12} {tensor.grad_name:<{width}} {_shape(tensor)} | {detail}"


def format_tensor(result: CheckResult, tensor: TensorResult) -> str:
    """The detailed block for one gradient (the canonical failure message)."""
    verb = {
        Status.FAIL: "disagrees with finite differences",
        Status.INCONCLUSIVE: "could not be decided by finite differences",
        Status.ERROR: "could not be checked",
        Status.PASS: "agrees with finite differences",
    }[tensor.status]
    if tensor.checked_by is CheckedBy.NOT_CHECKED:
        verb = "was not checked"
    elif tensor.status is Status.FAIL and not tensor.mismatched:
        verb = "is wrong"  # for a reason other than finite differences: the lines below say
    lines = [f"{result.label} — {tensor.grad_name} {verb}"]
    if tensor.problem:
        lines.append(f"  {tensor.name}: {_shape(tensor)} | {tensor.problem}")
    else:
        lines += _numbers(result, tensor)
    if tensor.hint:
        lines.append(f"  hint: {tensor.hint}")
    lines += [f"  note: {note}" for note in tensor.notes]
    if result.reproduce:
        lines.append(f"  reproduce: {result.reproduce}")
    return "\n".join(lines)


def _numbers(result: CheckResult, tensor: TensorResult) -> list[str]:
    share = 100.0 * tensor.mismatched / tensor.checked if tensor.checked else 0.0
    where = "" if tensor.max_abs_index is None else f" at {tensor.max_abs_index}"
    lines = [
        f"  {tensor.name}: {_shape(tensor)} | {tensor.method}, h={tensor.step:.1e}, "
        f"noise <= {tensor.max_noise:.1e} | seed={result.seed}",
        f"  tolerance: {_RULE}  (rtol={tensor.rtol:.0e}, atol={tensor.atol:.0e})",
        f"  mismatched: {'at least ' if tensor.projected else ''}{tensor.mismatched} / "
        f"{tensor.checked} ({share:.1f}%) | "
        f"max abs err {tensor.max_abs_err:.1e}{where} | max rel err {_rel(tensor.max_rel_err)}",
    ]
    if tensor.reestimated:
        lines.append(f"  re-estimated with smaller steps: {tensor.reestimated} worst element(s)")
    if tensor.rows:
        lines.append(_header())
        lines += [_row(row) for row in tensor.rows]
        if tensor.mismatched > len(tensor.rows):
            lines.append(f"    ... showing {len(tensor.rows)} of {tensor.mismatched}")
    return lines


def _header() -> str:
    return f"    {'index':>10}  {'analytic':>12}  {'numeric':>12}  {'abs err':>10}  {'rel err':>10}"


def _row(row: ElementRow) -> str:
    index = str(row.index) if row.index else "()"
    text = (
        f"    {index:>10}  {row.analytic:>12.4e}  {row.numeric:>12.4e}  "
        f"{row.abs_err:>10.3e}  {_rel(row.rel_err):>10}"
    )
    return f"{text}  {row.note}" if row.note else text


def _shape(tensor: TensorResult) -> str:
    return f"shape {tensor.shape} {tensor.dtype}"


def _rel(value: float) -> str:
    return "inf" if value == float("inf") else f"{value:.3e}"


def _comparison_line(comparison: Comparison) -> str:
    if comparison.problem:
        detail = comparison.problem
    elif comparison.differing:
        row = comparison.rows[0]
        detail = (
            f"differs at {row.index or '()'}: {row.yours:.4g} vs {row.reference:.4g} "
            f"({comparison.differing} of {comparison.checked})"
        )
    else:
        detail = f"same values | max abs err {comparison.max_abs_err:.1e}"
    shape = f"shape {comparison.shape} {comparison.dtype} | " if comparison.dtype else ""
    return f"  {comparison.status.name:<12} {comparison.name:<10} {shape}{detail}"


def format_comparison(result: CheckResult, comparison: Comparison) -> str:
    """The detailed block for one output or gradient that differs from the trusted one."""
    what = "forward output" if comparison.kind is ComparisonKind.OUTPUT else comparison.name
    baseline = result.trusted == "baseline"
    trusted = "the baseline" if baseline else result.against  # its path: the line below
    if comparison.kind is ComparisonKind.BASELINE:
        lines = [f"{result.label} — {trusted}: {comparison.problem}"]
    else:
        lines = [f"{result.label} — {what} differs from {trusted}"]
        problem = [f"  {comparison.problem}"] if comparison.problem else []
        lines += problem or _difference_numbers(result, comparison)
    if baseline:
        lines.append(f"  baseline: {result.against.removeprefix('the baseline ')}")
    if comparison.hint:
        lines.append(f"  hint: {comparison.hint}")
    if comparison.kind is ComparisonKind.OUTPUT and result.trusted == "reference":
        lines.append(
            "  note: a gradient check cannot see this: a backward consistent with a wrong "
            "forward passes it"
        )
    if result.reproduce:
        lines.append(f"  reproduce: {result.reproduce}")
    return "\n".join(lines)


def _difference_numbers(result: CheckResult, comparison: Comparison) -> list[str]:
    trusted = result.trusted
    share = 100.0 * comparison.differing / comparison.checked if comparison.checked else 0.0
    index = comparison.max_abs_index
    where = "" if index is None else f" at {index or '()'}"
    lines = [
        f"  {comparison.name}: shape {comparison.shape} {comparison.dtype} | seed={result.seed}",
        f"  tolerance: |yours - {trusted}| <= atol + rtol*|{trusted}|  "
        f"(rtol={comparison.rtol:.0e}, atol={comparison.atol:.0e})",
        f"  differing: {comparison.differing} / {comparison.checked} ({share:.1f}%) | "
        f"max abs err {comparison.max_abs_err:.1e}{where} | max rel err "
        f"{_rel(comparison.max_rel_err)}",
        f"    {'index':>10}  {'yours':>12}  {trusted:>12}  {'abs err':>10}  {'rel err':>10}",
    ]
    lines += [_difference_row(row) for row in comparison.rows]
    if comparison.differing > len(comparison.rows):
        lines.append(f"    ... showing {len(comparison.rows)} of {comparison.differing}")
    return lines


def _difference_row(row: DifferenceRow) -> str:
    index = str(row.index) if row.index else "()"
    return (
        f"    {index:>10}  {row.yours:>12.4e}  {row.reference:>12.4e}  "
        f"{row.abs_err:>10.3e}  {_rel(row.rel_err):>10}"
    )


@dataclass(frozen=True)
class Worst:
    """What a summary row shows for a check: its worst gradient's numbers, or, where no
    number says why it did not pass (a shape, a contract, a comparison), the reason."""

    name: str = ""
    rel_err: float | None = None
    margin: float | None = None
    reason: str = ""

    def describe(self) -> str:
        """The reason, or the worst gradient's numbers; '-' when there is neither."""
        if self.reason:
            return self.reason
        if self.rel_err is None or self.margin is None:
            return "-"
        return f"{self.name} rel {self.rel_err:.1e} margin {self.margin:.2g}"


def worst_of(result: CheckResult) -> Worst:
    """The summary of `result` for one row of a table (the CLI's, the pytest session's)."""
    if result.error:
        return Worst(reason=result.error.splitlines()[0])
    if result.faulty_layers:
        names = ", ".join(v.name for v in result.faulty_layers)
        return Worst(reason=f"faulty layer {names}")
    tensor = result.worst
    unnumbered = tensor is not None and tensor.status is Status.FAIL and not tensor.mismatched
    if tensor is not None and tensor.status is not Status.PASS and (tensor.problem or unnumbered):
        return Worst(
            tensor.grad_name, reason=f"{tensor.grad_name}: {tensor.problem or tensor.hint}"
        )
    if tensor is not None and tensor.status is not Status.PASS:
        return Worst(tensor.grad_name, tensor.max_rel_err, tensor.margin)
    finding = next((f for f in result.findings if f.severity is Severity.ERROR), None)
    if finding is not None:
        return Worst(reason=finding.name)
    differing = result.worst_comparison
    if differing is not None and differing.kind is ComparisonKind.BASELINE:
        return Worst(reason=f"baseline {'written' if differing.written else 'not written'}")
    if differing is not None:
        why = differing.problem or f"not the {result.trusted}"
        return Worst(differing.name, reason=f"{differing.name}: {why}")
    if tensor is None:
        return Worst()
    return Worst(tensor.grad_name, tensor.max_rel_err, tensor.margin)

"""``gradverify check``: check shipped reference layers or a user's layer from the shell.

(``gradverify grade`` and ``gradverify autograder`` live in `gradverify.grading.commands`.)

With no target it checks every registered reference layer and prints one row per
layer, then the report of anything that did not pass.  Exit codes: 0 every check
passed; 1 a check did not pass; 2 the command itself was wrong (an option, a value);
3 a target could not be loaded (no such case, a module that does not import, no such
object); 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from gradverify.adapters.conventions import parse_layout
from gradverify.checks import check
from gradverify.config import DEFAULT_BUDGET, CheckConfig
from gradverify.errors import GradverifyError, InvalidArgument, TargetNotFound
from gradverify.grading.commands import add_commands
from gradverify.grading.commands import run as run_command
from gradverify.jobs import Job
from gradverify.jobs import jobs as find_jobs
from gradverify.objects import gradient_path
from gradverify.progress import EstimateLine, RichBar, watching
from gradverify.report import format_result, projection_notes, worst_of
from gradverify.results import CheckResult, Role, Status, worst_status
from gradverify.session import session_warnings, summary_record

if TYPE_CHECKING:
    from gradverify.fuzzing import FuzzResult


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gradverify",
        description="Verify hand-written backpropagation against finite differences, "
        "and grade a class on it.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "check",
        help="check layers against finite differences",
        epilog="exit codes: 0 every check passed, 1 one did not, 2 the command was wrong, "
        "3 a target could not be loaded",
    )
    run.add_argument(
        "targets",
        nargs="*",
        metavar="TARGET",
        help="MODULE:OBJECT or ./file.py:OBJECT naming a layer class or instance, e.g. "
        "layers_under_test.broken:AffineNoTranspose, or a shipped case's name in any case or "
        "by its textbook name, e.g. Affine4D, mul (default: every shipped reference layer)",
    )
    run.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="NAME=[DOMAIN:]SHAPE",
        help="an input, in forward's order: --input x=2,4 (floats from N(0, 1)), "
        "--input t=onehot:2,4, --input idx=labels:8,classes=5; domains: positive, unit, "
        "probabilities, onehot, labels (the last two never differentiated)",
    )
    run.add_argument(
        "--init",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a constructor argument for a class target: an array as for --input "
        "(--init W=4,3 --init b=3), or a number (--init stride=int:2 --init alpha=float:0.1)",
    )
    run.add_argument(
        "--nondiff",
        action="append",
        default=[],
        metavar="NAME",
        help="an input (labels) or a held constant (running_mean) not to differentiate",
    )
    declare = run.add_argument_group(
        "declared conventions", "for a layer written another way (see README, Other conventions)"
    )
    declare.add_argument(
        "--params",
        action="append",
        default=[],
        metavar="NAME[=GRADIENT]",
        help="a weight the layer holds, and where backward puts its gradient: --params W "
        "(in dW), --params W=dEdW",
    )
    declare.add_argument(
        "--methods",
        action="append",
        default=[],
        metavar="ROLE=NAME",
        help="another name for forward or backward: --methods backward=back_propogate",
    )
    declare.add_argument(
        "--returns",
        metavar="LAYOUT",
        help="what backward returns, naming each gradient's input or weight: --returns "
        "'x,[W,b]' for `return dx, [dW, db]`",
    )
    declare.add_argument(
        "--optimizer",
        action="append",
        default=[],
        metavar="ATTRIBUTE",
        help="an optimizer backward hands gradients to (--optimizer W_opt): recorded, not run",
    )
    declare.add_argument(
        "--flush",
        metavar="METHOD",
        help="a reset called before every forward: --flush flush_gradients",
    )
    declare.add_argument(
        "--backward-args",
        metavar="NAMES",
        help="what a function pair's backward takes, in order: --backward-args dout,W,x",
    )
    run.add_argument("--seed", type=int, default=0, help="seed of every random draw (default 0)")
    run.add_argument(
        "--mode",
        choices=["auto", "full", "fast"],
        default="auto",
        help="full: every element; fast: projections + bisection; auto (default): every "
        "element of every tensor whose full check fits the --budget, projections beyond",
    )
    run.add_argument(
        "--budget",
        type=float,
        default=DEFAULT_BUDGET,
        metavar="SECONDS",
        help=f"seconds a full check may take in mode auto (default {DEFAULT_BUDGET:g})",
    )
    run.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="processes sharing the elements of a full check: the same numbers, sooner (default 1)",
    )
    run.add_argument("--rtol", type=float, default=None, help="relative tolerance")
    run.add_argument("--atol", type=float, default=None, help="absolute tolerance")
    run.add_argument(
        "--fuzz",
        type=int,
        default=0,
        metavar="N",
        help="also check N cases drawn over varying shapes; a failure shrinks to the smallest",
    )
    run.add_argument(
        "--spec",
        metavar="FILE.json",
        help="the shape spec of a MODULE:OBJECT class (see gradverify.specs): what --fuzz "
        "draws from, and without --input the fixed case, drawn from it",
    )
    run.add_argument(
        "--reference",
        metavar="TARGET",
        help="also hold forward outputs and gradients against a trusted implementation, on "
        "the same inputs with the same weights: MODULE:OBJECT, or a shipped layer's name "
        "(--reference Affine); a class is built from the arguments the target holds",
    )
    run.add_argument(
        "--baseline",
        metavar="DIR",
        help="also compare forward outputs and gradients with those stored in DIR/LAYER.npz; "
        "a missing file is written (and the check is INCONCLUSIVE until the next run)",
    )
    run.add_argument(
        "--regen", action="store_true", help="rewrite the --baseline files from this run"
    )
    run.add_argument("--json", action="store_true", help="print the results as JSON")
    run.add_argument(
        "--html",
        metavar="PATH",
        help="also write every check to PATH as one self-contained HTML page (each check's "
        "report, with pictures of where a gradient is wrong)",
    )
    add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    if arguments.command != "check":
        return run_command(arguments)
    try:
        with watching(RichBar() if sys.stderr.isatty() else EstimateLine()):
            return _check(arguments)
    except KeyboardInterrupt:
        print("gradverify: interrupted; the checked layers are left as they were.", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `gradverify check --json | head`: the reader left, quietly
        sys.stderr.close()
        return 0


def _check(arguments: argparse.Namespace) -> int:
    try:
        CheckConfig(  # fail early, before any layer is imported or built
            seed=arguments.seed,
            rtol=arguments.rtol,
            atol=arguments.atol,
            budget=arguments.budget,
            workers=arguments.workers,
        )
        _check_comparison_flags(arguments)
        jobs = find_jobs(arguments)
        results: list[CheckResult] = []
        fuzzed: list[FuzzResult | None] = []
        try:
            for job in jobs:  # one by one: an interruption keeps those done
                results.append(_run(job, arguments))
            for job in jobs:
                fuzzed.append(_fuzz(job, arguments))
        except KeyboardInterrupt as stop:  # what was found so far, then the usual message
            partial = getattr(stop, "result", None)
            if partial is not None and len(results) < len(jobs):
                results.append(partial)
            fuzzed += [None] * (len(results) - len(fuzzed))
            _output(arguments, jobs[: len(results)], results, fuzzed)
            raise
    except TargetNotFound as error:
        print(f"gradverify: error: {error}", file=sys.stderr)
        return 3
    except GradverifyError as error:
        print(f"gradverify: error: {error}", file=sys.stderr)
        return 2
    if not _output(arguments, jobs, results, fuzzed):
        return 2
    passed = all(r.passed for r in results) and all(f is None or f.passed for f in fuzzed)
    return 0 if passed else 1


def _output(
    arguments: argparse.Namespace,
    jobs: list[Job],
    results: list[CheckResult],
    fuzzed: list[FuzzResult | None],
) -> bool:
    """Print the results as asked (JSON or the table and reports) and write the --html
    page; False if the page could not be written."""
    if arguments.json:
        print(json.dumps([_json(r, f) for r, f in zip(results, fuzzed)], indent=2))
    else:
        _print_report(jobs, results, fuzzed)
    return not arguments.html or _write_html(arguments.html, jobs, results, fuzzed)


def declarations(arguments: argparse.Namespace) -> dict[str, Any]:
    """The declared conventions on the command line, as `check`'s keywords."""
    found: dict[str, Any] = {}
    if arguments.params:
        pairs = [text.partition("=") for text in arguments.params]
        if any(sep for _, sep, _ in pairs):
            found["params"] = {name: grad or gradient_path(name) for name, _, grad in pairs}
        else:
            found["params"] = [name for name, _, _ in pairs]
    if arguments.methods:
        roles = [text.partition("=") for text in arguments.methods]
        if not all(sep and name for _, sep, name in roles):
            raise InvalidArgument(
                f"--methods takes ROLE=NAME, got --methods {arguments.methods!r}; e.g. "
                f"--methods forward=forward_pass --methods backward=backward_pass."
            )
        found["methods"] = {role: name for role, _, name in roles}
    if arguments.returns is not None:
        found["returns"] = parse_layout(arguments.returns)
    if arguments.optimizer:
        found["optimizer"] = list(arguments.optimizer)
    if arguments.flush is not None:
        found["flush"] = arguments.flush
    if arguments.backward_args is not None:
        found["backward_args"] = [a.strip() for a in arguments.backward_args.split(",")]
    return found


def _check_comparison_flags(arguments: argparse.Namespace) -> None:
    baseline = arguments.baseline
    if arguments.regen and baseline is None:
        raise InvalidArgument("--regen rewrites baselines: give --baseline DIR with it.")
    if arguments.reference is not None and baseline is not None:
        raise InvalidArgument("give --reference or --baseline, not both.")
    page = arguments.html
    if page is not None and (not page or os.path.isdir(page)):
        raise InvalidArgument(
            f"--html takes a file to write, got --html {page!r}; e.g. --html report.html."
        )
    folder = os.path.dirname(os.path.abspath(page)) if page else ""
    if page and not os.path.isdir(folder):
        raise InvalidArgument(
            f"--html {page}: the folder {os.path.dirname(page)!r} does not exist; create it first."
        )
    if baseline is not None and (not baseline or os.path.isfile(baseline)):
        raise InvalidArgument(
            f"--baseline takes a folder (one LAYER.npz per layer in it), got --baseline "
            f"{baseline!r}{', a file' if baseline else ''}; e.g. --baseline tests/baselines."
        )


def _json(result: CheckResult, fuzzed: FuzzResult | None) -> dict[str, Any]:
    data = result.to_dict()
    if fuzzed is not None:
        data["fuzz"] = fuzzed.to_dict()
    return data


def _print_report(
    jobs: list[Job], results: list[CheckResult], fuzzed: list[FuzzResult | None]
) -> None:
    _print_table(jobs, results, fuzzed)
    for job, result in zip(jobs, results):
        if result.status is Status.PASS:
            for finding in result.findings:
                print(f"  {job.name}: {finding.severity}: {finding.message}")
        for note in projection_notes(result):
            print(f"  {job.name}: {note}")
    for result, fuzz_result in zip(results, fuzzed):
        if result.status is not Status.PASS:
            print()
            print(format_result(result))
        if fuzz_result is not None and not fuzz_result.passed:
            print()
            print(fuzz_result)


def _write_html(
    path: str, jobs: list[Job], results: list[CheckResult], fuzzed: list[FuzzResult | None]
) -> bool:
    """Write the HTML page of the checks; say so, or why it could not be written."""
    from gradverify.html_report import fragment, write_page

    records = []
    for job, result, fuzz_result in zip(jobs, results, fuzzed):
        record = summary_record(job.name, result)
        record["html"] = fragment(result)
        if fuzz_result is not None:
            record["html"] += fragment(fuzz_result)
            record["status"] = worst_status([result.status, fuzz_result.status]).value
            if not fuzz_result.passed:
                record["reason"] = f"fuzz: {fuzz_result.status.name} on a drawn case"
        records.append(record)
    try:
        write_page(path, "gradverify check", records, session_warnings(records))
    except OSError as error:
        print(f"gradverify: error: cannot write --html {path}: {error.strerror}", file=sys.stderr)
        return False
    print(f"gradverify: wrote {path}", file=sys.stderr)
    return True


def _fuzz(job: Job, arguments: argparse.Namespace) -> FuzzResult | None:
    """Fuzz a job over its spec's shapes when --fuzz N asks for it."""
    if arguments.fuzz <= 0:
        return None
    if job.spec is None:
        raise InvalidArgument(
            f"--fuzz needs a shape spec for {job.name}: shipped cases have one; for "
            f"MODULE:OBJECT pass --spec FILE.json (see gradverify.specs)."
        )
    from gradverify.fuzzing import fuzz

    options = {k: v for k, v in _options(job, arguments).items() if k not in ("baseline", "regen")}
    if not isinstance(job.reference, (str, type, type(None))):
        options["reference"] = type(job.reference)  # built again for each drawn case
    return fuzz(job.factory, job.spec, examples=arguments.fuzz, **options)


def _options(job: Job, arguments: argparse.Namespace) -> dict[str, Any]:
    """The check options of a job that the command line sets."""
    options = {
        "kwargs": job.kwargs,
        "nondiff": job.nondiff,
        "seed": arguments.seed,
        "rtol": arguments.rtol,
        "atol": arguments.atol,
        "mode": arguments.mode,
        "budget": arguments.budget,
        "workers": arguments.workers,
        "reference": job.reference,
        **declarations(arguments),
    }
    if arguments.baseline is not None:  # one file per target: a shipped case, MODULE.OBJECT
        file_name = re.sub(r"[^\w.-]+", "_", job.source.replace(":", "."))
        options["baseline"] = os.path.join(arguments.baseline, f"{file_name}.npz")
        options["regen"] = arguments.regen
    return options


#: How many times generated inputs sitting on a kink are redrawn before the verdict stands.
KINK_REDRAWS = 3


def _run(job: Job, arguments: argparse.Namespace) -> CheckResult:
    """Check a job; inputs that landed on a kink are redrawn there, since they prove less."""
    inputs, rng = dict(job.inputs), np.random.default_rng([arguments.seed, 2])
    for redraws in range(KINK_REDRAWS + 1):
        result = check(job.target, inputs, **_options(job, arguments))
        at_kinks = _elements_at_kinks(result)
        if not at_kinks or redraws == KINK_REDRAWS:
            break
        inputs = _redrawn(inputs, at_kinks, rng)
    notes = result.notes
    if redraws:
        notes += (f"generated inputs redrawn {redraws} time(s) where they sat on a kink",)
    return replace(result, notes=notes, reproduce=_reproduce(job, arguments))


def _reproduce(job: Job, arguments: argparse.Namespace) -> str:
    """The command that checks `job` again: every option given that changes the check."""
    given = {
        "--seed": arguments.seed,
        "--mode": None if arguments.mode == "auto" else arguments.mode,
        "--budget": None if arguments.budget == DEFAULT_BUDGET else arguments.budget,
        "--rtol": arguments.rtol,
        "--atol": arguments.atol,
        "--baseline": arguments.baseline,
    }
    return " ".join([job.reproduce, *(f"{flag} {v}" for flag, v in given.items() if v is not None)])


def _elements_at_kinks(result: CheckResult) -> dict[str, list[tuple[int, ...]]]:
    return {
        tensor.name: [row.index for row in tensor.rows if row.outcome.at_kink]
        for tensor in result.tensors
        if tensor.role is Role.INPUT and any(row.outcome.at_kink for row in tensor.rows)
    }


def _redrawn(
    inputs: dict[str, Any], at_kinks: dict[str, list[tuple[int, ...]]], rng: np.random.Generator
) -> dict[str, Any]:
    redrawn = dict(inputs)
    for name, indices in at_kinks.items():
        array = inputs[name].copy()
        spread = max(1.0, float(np.std(array)))
        for index in indices:
            array[index] = spread * rng.standard_normal()
        redrawn[name] = array
    return redrawn


_COLUMNS = ("layer", "status", "worst", "forward", "time", "checked", "fuzz")
_STYLES = {"PASS": "bold green", "FAIL": "bold red", "INCONCLUSIVE": "bold yellow"}


def _cells(
    jobs: list[Job], results: list[CheckResult], fuzzed: list[FuzzResult | None]
) -> tuple[list[list[str]], str]:
    """The table's rows, one per job (the fuzz column only when a job was fuzzed), and
    the count of each status."""
    rows = []
    for job, result, fuzz_result in zip(jobs, results, fuzzed):
        fuzz_cell = (
            ""
            if fuzz_result is None
            else f"{fuzz_result.status.name} {fuzz_result.examples} cases "
            f"{fuzz_result.seconds:.1f}s"
        )
        rows.append(
            [
                job.name,
                result.status.name,
                _worst(result),
                str(result.forward_calls),
                f"{result.seconds:.2f}s",
                result.coverage,
                fuzz_cell,
            ]
        )
    combined = [
        worst_status([r.status, *([f.status] if f is not None else [])])
        for r, f in zip(results, fuzzed)
    ]
    counts = ", ".join(f"{combined.count(s)} {s.name.lower()}" for s in Status if combined.count(s))
    return rows, counts


def _table(jobs: list[Job], results: list[CheckResult], fuzzed: list[FuzzResult | None]) -> str:
    """The table as plain text, for a pipe or a file: one row per layer, then the counts."""
    rows, counts = _cells(jobs, results, fuzzed)
    columns = len(_COLUMNS) - (not any(f is not None for f in fuzzed))
    width = max([len(j.name) for j in jobs] + [5])
    checked = max([len(r.coverage) for r in results] + [14])
    aligned = [f"<{width}", "<12", "<28", ">8", ">7", f"<{checked}", ""]
    lines = [
        "  ".join(format(cell, how) for cell, how in zip(row[:columns], aligned)).rstrip()
        for row in [list(_COLUMNS), *rows]
    ]
    return "\n".join([*lines, counts])


def _print_table(
    jobs: list[Job], results: list[CheckResult], fuzzed: list[FuzzResult | None]
) -> None:
    """The table through rich on a terminal (statuses in colour), as plain text elsewhere."""
    if not sys.stdout.isatty():
        print(_table(jobs, results, fuzzed))
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    rows, counts = _cells(jobs, results, fuzzed)
    columns = len(_COLUMNS) - (not any(f is not None for f in fuzzed))
    table = Table(box=None, header_style="bold", pad_edge=False)
    for name in _COLUMNS[:columns]:
        table.add_column(name, justify="right" if name in ("forward", "time") else "left")
    for row in rows:
        status = f"[{_STYLES.get(row[1], 'bold magenta')}]{row[1]}[/]"
        table.add_row(escape(row[0]), status, *(escape(cell) for cell in row[2:columns]))
    console = Console(highlight=False)
    console.print(table)
    console.print(counts)


def _worst(result: CheckResult) -> str:
    worst = worst_of(result)
    return worst.reason[:28] if worst.reason else worst.describe()


if __name__ == "__main__":
    sys.exit(main())

"""The pytest plugin: the ``gradcheck`` fixture and marker, options, and the session summary.

Registered through the ``pytest11`` entry point, so installing gradverify is enough.
This module only wires hooks; the logic lives in `gradverify.session` and the
checker itself is imported on first use.  State lives in ``config.stash`` and
``item.stash``, never in globals.

Option precedence: the fixture call's own keywords > ``@pytest.mark.gradcheck``
> command line > ini file > default.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from gradverify.results import CheckResult

_RECORDS = pytest.StashKey[list]()  # controller: every check of the session (summary records)
_ITEM_RECORDS = pytest.StashKey[list]()  # one test's checks, until its report is made
_WRITTEN = pytest.StashKey[list]()  # one test's baselines written instead of compared
_CLI = {
    "mode": "gradverify_mode",
    "rtol": "gradverify_rtol",
    "atol": "gradverify_atol",
    "seed": "gradverify_seed",
    "budget": "gradverify_budget",
    "workers": "gradverify_workers",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gradverify", "gradient checks (gradverify)")
    helps = {
        "mode": "auto (default), full or fast",
        "rtol": "relative tolerance (default: by the layer's precision)",
        "atol": "absolute tolerance (default: by the layer's precision)",
        "seed": "session seed; each test's seed is derived from it and the test id (default 0)",
        "budget": "seconds a full check may take in mode auto before projections (default 5)",
        "workers": "processes sharing the elements of a full check (default 1)",
    }
    for name, dest in _CLI.items():
        flag = f"--gradverify-{name}"
        group.addoption(flag, dest=dest, default=None, metavar=name.upper(), help=helps[name])
        parser.addini(dest, f"gradverify {helps[name]}", default="")
    group.addoption(
        "--gradverify-json",
        dest="gradverify_json",
        default=None,
        metavar="PATH",
        help="write every check of the session to PATH as JSON",
    )
    parser.addini(
        "gradverify_json", "write every check of the session to this JSON file", default=""
    )
    group.addoption(
        "--gradverify-html",
        dest="gradverify_html",
        default=None,
        metavar="PATH",
        help="write every check of the session to PATH as one self-contained HTML page",
    )
    group.addoption(
        "--gradverify-report",
        dest="gradverify_report",
        action="store_true",
        default=None,
        help="print the summary table of checks (the default)",
    )
    group.addoption(
        "--no-gradverify-report",
        dest="gradverify_report",
        action="store_false",
        help="do not print the summary table of checks",
    )
    parser.addini(
        "gradverify_report", "print the summary table of checks", type="bool", default=True
    )
    group.addoption(
        "--gradverify-regen",
        dest="gradverify_regen",
        action="store_true",
        default=False,
        help="rewrite the baselines of gradregression checks instead of comparing with them",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "gradcheck(mode=, rtol=, atol=, seed=, budget=, workers=): options for the gradcheck "
        "fixture",
    )
    config.stash[_RECORDS] = []
    config.pluginmanager.register(_Recorder(config), "gradverify-recorder")
    from gradverify.errors import InvalidArgument

    try:
        _session_options(config)
    except InvalidArgument as error:
        raise pytest.UsageError(f"gradverify: {error}") from None


def _session_options(config: pytest.Config) -> dict[str, Any]:
    """Command line over ini, validated (an error names where the bad value came from).

    None given: nothing to validate, and nothing of the checker is imported (a session
    that runs no gradient check pays nothing for the plugin)."""
    cli = {name: config.getoption(dest) for name, dest in _CLI.items()}
    ini = {name: config.getini(dest) for name, dest in _CLI.items()}
    if all(value in (None, "") for value in (*cli.values(), *ini.values())):
        return {}
    from gradverify.session import Layer, resolve

    return resolve(
        [
            Layer(cli, "the command line (--gradverify-...)"),
            Layer(ini, "the ini file (gradverify_...)"),
        ]
    )


def pytest_report_header(config: pytest.Config) -> str:
    options = _session_options(config)
    return (
        f"gradverify: mode={options.get('mode', 'auto')}, session seed={options.get('seed', 0)} "
        f"(each test's seed derives from it and the test id)"
    )


class GradCheck:
    """The ``gradcheck`` fixture: ``gradcheck(layer, inputs, **options)``.

    Runs `gradverify.check` with the options in force for this test, records the
    result for the session summary, fails the test with the report unless it
    passes, and returns the `CheckResult` when it does.
    """

    def __init__(self, request: pytest.FixtureRequest) -> None:
        self._request = request

    def options(self, test_id: str | None = None) -> dict[str, Any]:
        """The options in force for this test: marker > command line > ini, plus its seed
        (derived from the session seed and `test_id`, the test's node id by default)."""
        from gradverify.errors import InvalidArgument
        from gradverify.session import Layer, resolve, test_seed

        config, node = self._request.config, self._request.node
        marker = node.get_closest_marker("gradcheck")
        unknown = sorted(set(marker.kwargs) - set(_CLI)) if marker else []
        if unknown:
            raise InvalidArgument(
                f"the gradcheck marker takes {', '.join(_CLI)}, got {', '.join(unknown)}"
            )
        marked = resolve([Layer(marker.kwargs, "the gradcheck marker")]) if marker else {}
        options = {**_session_options(config), **marked}
        if "seed" not in marked:
            options["seed"] = test_seed(options.get("seed", 0), test_id or node.nodeid)
        return options

    def __call__(self, target: Any, inputs: Any = None, **options: Any) -> CheckResult:
        __tracebackhide__ = True
        result = self._recorded(target, inputs, {**self.options(), **options})
        _fail_unless_passed(result)
        return result

    def _recorded(self, target: Any, inputs: Any, settings: dict[str, Any]) -> CheckResult:
        """Run the check and record it for the session summary."""
        __tracebackhide__ = True
        import gradverify
        from gradverify.errors import GradverifyError
        from gradverify.session import summary_record

        try:
            with _progress(self._request.config):
                result = gradverify.check(target, inputs, **settings)
        except GradverifyError as error:  # the test's own bad argument: one line, no traceback
            pytest.fail(f"gradverify: {error}", pytrace=False)
        self._record(summary_record(self._request.node.nodeid, result), result)
        return result

    def _record(self, record: dict[str, Any], shown: Any) -> None:
        """Keep `record` for the session summary, with the HTML of `shown` (a check or a
        fuzz run) when the session writes a page: made here, where the result is, since
        only plain data crosses from xdist workers."""
        if self._request.config.getoption("gradverify_html"):
            from gradverify.html_report import fragment

            record["html"] = fragment(shown)
        self._request.node.stash.setdefault(_ITEM_RECORDS, []).append(record)


def _progress(config: pytest.Config) -> contextlib.AbstractContextManager[None]:
    """Long checks show their progress on pytest's terminal line, on a terminal only;
    elsewhere their estimate goes to the test's captured stderr (the default)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or not getattr(reporter, "isatty", False) or _is_worker(config):
        return contextlib.nullcontext()
    from gradverify.progress import watching

    return watching(_TerminalLine(reporter, capture))


class _TerminalLine:
    """A long check's progress as one line of pytest's terminal, rewritten in place at
    most twice a second and cleared at the end (capture is suspended while it writes,
    as pytest's live logging does)."""

    def __init__(self, reporter: Any, capture: Any) -> None:
        self._reporter, self._capture = reporter, capture
        self._label, self._total, self._done = "", 0, 0
        self._started = self._shown = 0.0

    def start(self, estimate: Any) -> None:
        self._label, self._total, self._done = estimate.label, estimate.calls, 0
        self._started = self._shown = time.monotonic()
        text = self._fit(f"gradverify: {self._label}: {estimate.describe()}")

        def first() -> None:  # a line of its own; pytest starts the next one afresh
            self._reporter.ensure_newline()
            self._reporter.rewrite(text, erase=True)

        self._write(first)

    def advance(self, calls: int) -> None:
        self._done += calls
        now = time.monotonic()
        if now - self._shown < 0.5:
            return
        self._shown = now
        from gradverify.progress import duration

        done = f"{self._done:,}/{self._total:,} calls"
        if self._done < self._total:
            left = (now - self._started) / self._done * (self._total - self._done)
            done += f", ~{duration(left)} left"
        else:
            done = f"{self._done:,} calls, beyond the {self._total:,} planned: re-estimating"
        line = self._fit(f"gradverify: {self._label}: {done}")
        self._write(lambda: self._reporter.rewrite(line, erase=True))

    def stop(self) -> None:
        self._write(lambda: self._reporter.rewrite("", erase=True))

    def _fit(self, line: str) -> str:
        """`line`, cut to the terminal's width: a wrapped line cannot be rewritten in place."""
        width = getattr(getattr(self._reporter, "_tw", None), "fullwidth", 80)
        return line if len(line) < width else line[: max(width - 2, 1)] + "…"

    def _write(self, write: Callable[[], None]) -> None:
        if self._capture is None:
            write()
            return
        with self._capture.global_and_fixture_disabled():
            write()


def _fail_unless_passed(result: CheckResult) -> None:
    __tracebackhide__ = True
    from gradverify.report import format_failure
    from gradverify.results import Status

    if result.status is not Status.PASS:
        pytest.fail(f"GradientMismatch: {format_failure(result)}", pytrace=False)


class GradFuzz(GradCheck):
    """The ``gradfuzz`` fixture: ``gradfuzz(factory, spec, examples=100, **options)``.

    Fuzzes with `gradverify.fuzz` under this test's options and seed, fails the
    test with the smallest failing case and its report, and returns the
    `FuzzResult` when every drawn case passes.
    """

    def __call__(  # type: ignore[override]
        self, factory: Any, spec: Any, examples: int = 100, **options: Any
    ) -> Any:
        __tracebackhide__ = True
        from gradverify.errors import GradverifyError
        from gradverify.fuzzing import fuzz
        from gradverify.session import fuzz_record, summary_record

        try:
            settings = {**self.options(), **options}
            found = fuzz(factory, spec, examples=examples, **settings)
        except GradverifyError as error:
            pytest.fail(f"gradverify: {error}", pytrace=False)
        node = self._request.node
        name = getattr(factory, "__qualname__", type(factory).__name__)
        record = (
            fuzz_record(node.nodeid, name, found)
            if found.result is None
            else summary_record(node.nodeid, found.result)
        )
        self._record(record, found)
        if not found.passed:
            pytest.fail(str(found), pytrace=False)
        return found


class GradRegression(GradCheck):
    """The ``gradregression`` fixture: ``gradregression(layer, inputs, **options)``.

    Checks the layer and holds its forward outputs and gradients against the
    baseline stored for this call, as pytest-regressions keeps its data: in a
    folder named after the test module, next to it, one ``.npz`` per call, named
    after the test (``TestClass.test_name.npz``; a second call ``..._2.npz``; or
    ``basename=``).  Its seed derives from that name, not from the node id, so a
    baseline does not depend on the directory pytest runs from.  A call that
    writes its baseline (the first run, ``--gradverify-regen``) lets the test go
    on, so that every baseline of the test is written in one run, and then fails
    the test: a baseline never passes unseen.
    """

    _CALLS = pytest.StashKey[int]()

    def __call__(
        self, target: Any, inputs: Any = None, *, basename: str | None = None, **options: Any
    ) -> CheckResult:
        __tracebackhide__ = True
        node, path = self._request.node, self._request.path
        calls = node.stash.get(self._CALLS, 0) + 1
        node.stash[self._CALLS] = calls
        name = basename or baseline_name(node.nodeid.split("::", 1)[-1], calls)
        settings = {
            **self.options(test_id=f"{path.stem}/{name}"),
            **options,
            "baseline": str(path.parent / path.stem / f"{name}.npz"),
            "regen": bool(self._request.config.getoption("gradverify_regen")),
        }
        result = self._recorded(target, inputs, settings)
        if result.baseline_written:
            node.stash.setdefault(_WRITTEN, []).append(settings["baseline"])
            return result
        _fail_unless_passed(result)
        return result


def baseline_name(test: str, call: int) -> str:
    """A file name for a test's `call`-th baseline: the test's id within its module
    (``TestClass::test[a b]`` -> ``TestClass.test[a_b]-1a2b3c4d``), made safe for a file
    system; where that changed the id, a digest of it keeps two ids from sharing a file."""
    readable = re.sub(r"[^\w.\[\]-]+", "_", test.replace("::", "."))
    if readable != test.replace("::", "."):
        readable += f"-{zlib.crc32(test.encode()):08x}"
    return readable if call == 1 else f"{readable}_{call}"


@pytest.fixture
def gradregression(request: pytest.FixtureRequest) -> GradRegression:
    """Check a layer and compare its outputs and gradients with the baseline stored for the
    test; the first run (and ``--gradverify-regen``) writes it."""
    return GradRegression(request)


@pytest.fixture
def gradfuzz(request: pytest.FixtureRequest) -> GradFuzz:
    """Fuzz a layer over shapes drawn from a spec; fails the test with the smallest failing case."""
    return GradFuzz(request)


@pytest.fixture
def gradcheck(request: pytest.FixtureRequest) -> GradCheck:
    """Check a layer's backward against finite differences; fails the test with the report."""
    return GradCheck(request)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    outcome = yield
    report = outcome.get_result()
    records = item.stash.get(_ITEM_RECORDS, [])
    written = item.stash.get(_WRITTEN, [])
    if call.when == "call" and written and report.passed:  # nothing compared is no pass
        report.outcome = "failed"
        report.longrepr = "\n  ".join(
            [
                "gradverify: baselines written, so nothing was compared (commit them: later "
                "runs compare against them):",
                *written,
            ]
        )
    if call.when == "call" and records:
        from gradverify.session import junit_properties

        report.gradverify = records  # plain data: crosses from xdist workers to the controller
        for record in records:  # as record_property does: JUnit reads them at teardown
            item.user_properties.extend(junit_properties(record))


class _Recorder:
    """Collects the checks of every test report, including those xdist workers send."""

    def __init__(self, config: pytest.Config) -> None:
        self._config = config

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        records = getattr(report, "gradverify", None)
        if records and report.when == "call":
            self._config.stash[_RECORDS].extend(records)


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    records = config.stash.get(_RECORDS, [])
    if _is_worker(config) or not records:
        return
    report = config.getoption("gradverify_report")
    if report is None:
        report = config.getini("gradverify_report")
    if report:
        from gradverify.session import summary_table

        terminalreporter.write_sep("=", "gradverify checks")
        for line in summary_table(records):
            terminalreporter.write_line(line)


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    if _is_worker(config):
        return
    records = config.stash.get(_RECORDS, [])
    path = config.getoption("gradverify_json") or config.getini("gradverify_json")
    if path:
        from gradverify.session import write_json

        _written(config, path, lambda: write_json(path, records))
    page = config.getoption("gradverify_html")
    if page:
        from gradverify.html_report import write_page
        from gradverify.session import session_warnings

        title = f"gradverify: pytest session in {os.path.basename(str(config.rootpath))}"
        _written(config, page, lambda: write_page(page, title, records, session_warnings(records)))


def _written(config: pytest.Config, path: str, write: Callable[[], None]) -> None:
    """Write a session file; a typo in its path must not hide the session's result."""
    try:
        write()
    except OSError as error:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"gradverify: cannot write {path}: {error.strerror}", red=True)

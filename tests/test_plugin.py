"""The pytest plugin end to end, through pytester: what a student sees and what CI reads."""

from __future__ import annotations

import json

import pytest

LAYERS = """
import numpy as np

class Affine:
    def __init__(self, W, b, scale=1.0):
        self.W, self.b, self.scale = W, b, scale
        self.dW = self.db = None

    def forward(self, x):
        self.x = x
        return x @ self.W + self.b

    def backward(self, dout):
        self.dW = self.scale * self.x.T @ dout
        self.db = dout.sum(axis=0)
        return dout @ self.W.T

def make(scale=1.0):
    rng = np.random.default_rng(0)
    layer = Affine(rng.standard_normal((4, 3)), rng.standard_normal(3), scale)
    return layer, {"x": rng.standard_normal((2, 4))}
"""

TESTS = """
import pytest
from layers import make

def test_good(gradcheck):
    layer, inputs = make()
    result = gradcheck(layer, inputs)
    assert result.passed

def test_bad(gradcheck):
    layer, inputs = make(scale=0.5)
    gradcheck(layer, inputs)

@pytest.mark.gradcheck(mode="full", rtol=0.6)
def test_bad_but_tolerated(gradcheck):
    layer, inputs = make(scale=0.5)
    gradcheck(layer, inputs)
"""


@pytest.fixture
def project(pytester):
    pytester.makepyfile(layers=LAYERS, test_layers=TESTS)
    pytester.syspathinsert()
    return pytester


def test_pass_and_fail_read_like_the_canonical_report(project):
    result = project.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*GradientMismatch: Affine.backward — dW disagrees with finite differences",
            "*W: shape (4, 3) float64 | central differences, h=6.1e-06*",
            "*tolerance: |analytic - numeric| <= atol + rtol*|numeric| + noise*",
            "*mismatched: 12 / 12 (100.0%)*",
            "*hint: analytic = 0.5 x numeric on every element: a missing factor of 2, or an "
            "extra 1/N (N = 2)?",
        ]
    )
    assert "Traceback" not in result.stdout.str()


def test_summary_table_and_header(project):
    result = project.runpytest("-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(
        [
            "gradverify: mode=auto, session seed=0*",
            "*= gradverify checks =*",
            "test*target*status*worst rel err*margin*forward*time*checked",
            "test_layers.py::test_bad *Affine.backward*FAIL*",
            "test_layers.py::test_bad_but_tolerated *Affine.backward*PASS*",
            "test_layers.py::test_good *Affine.backward*PASS*",
            "2 pass, 1 fail",
        ]
    )
    quiet = project.runpytest("-p", "no:cacheprovider", "--no-gradverify-report")
    assert "gradverify checks" not in quiet.stdout.str()


def test_marker_beats_command_line_beats_ini(project):
    project.makeini("[pytest]\ngradverify_rtol = 0.6\n")
    # ini tolerates the halved dW ...
    project.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=3)
    # ... the command line overrides ini ...
    project.runpytest("-p", "no:cacheprovider", "--gradverify-rtol", "1e-3").assert_outcomes(
        passed=2, failed=1
    )
    # ... and the marker (rtol=0.6 on test_bad_but_tolerated) overrides the command line.
    tolerated = project.runpytest(
        "-p", "no:cacheprovider", "--gradverify-rtol", "1e-3", "-k", "tolerated"
    )
    tolerated.assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("args", "ini", "message"),
    [
        (
            ["--gradverify-rtol", "abc"],
            "",
            "`rtol` must be a number like 1e-3, got rtol='abc' (from the command line",
        ),
        (
            [],
            "[pytest]\ngradverify_mode = slow\n",
            "`mode` must be one of auto, full, fast, got mode='slow' (from the ini file",
        ),
    ],
)
def test_bad_option_values_name_their_source(project, args, ini, message):
    if ini:
        project.makeini(ini)
    result = project.runpytest("-p", "no:cacheprovider", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()


def test_bad_marker_value_fails_that_test_naming_the_marker(pytester):
    pytester.makepyfile(
        test_marker="""
import pytest
@pytest.mark.gradcheck(rtol=-1)
def test_it(gradcheck):
    gradcheck((lambda v: float((v**2).sum()), lambda v: 2 * v), [[1.0, 2.0]])
"""
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*got rtol=-1 (from the gradcheck marker)*"])


def test_json_file_and_per_test_seeds(project):
    path = project.path / "checks.json"
    project.runpytest("-p", "no:cacheprovider", f"--gradverify-json={path}")
    results = json.loads(path.read_text())["gradverify_results"]
    assert [r["test"] for r in results] == [
        "test_layers.py::test_bad",
        "test_layers.py::test_bad_but_tolerated",
        "test_layers.py::test_good",
    ]
    assert [r["status"] for r in results] == ["fail", "pass", "pass"]
    assert len({r["seed"] for r in results}) == 3  # derived per test id
    selected = project.path / "one.json"
    project.runpytest("-p", "no:cacheprovider", "-k", "test_good", f"--gradverify-json={selected}")
    (alone,) = json.loads(selected.read_text())["gradverify_results"]
    assert alone["seed"] == results[2]["seed"]  # the same seed whatever else runs


def test_an_unwritable_json_path_is_said_and_keeps_the_result_line(project):
    missing = project.path / "no" / "such" / "folder" / "checks.json"
    result = project.runpytest("-p", "no:cacheprovider", f"--gradverify-json={missing}")
    result.stdout.fnmatch_lines(["gradverify: cannot write *checks.json: No such file*"])
    result.assert_outcomes(failed=1, passed=2)


def test_a_bad_target_fails_the_test_in_one_line(pytester):
    pytester.makepyfile(
        """
import numpy as np

def test_none(gradcheck):
    gradcheck(None, {"x": np.ones(2)})
"""
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*gradverify: gradverify does not know how to check None*"])
    assert "adapters/__init__.py" not in result.stdout.str()


def test_junit_properties(project):
    xml = project.path / "junit.xml"
    project.runpytest("-p", "no:cacheprovider", f"--junitxml={xml}")
    text = xml.read_text()
    assert '<property name="gradverify_status" value="fail" />' in text
    assert '<property name="gradverify_worst_error" value="5.00e-01" />' in text
    assert 'name="gradverify_seed"' in text


def test_xdist_gives_the_same_summary_and_json(project):
    pytest.importorskip("xdist")
    serial, parallel = project.path / "serial.json", project.path / "parallel.json"
    project.runpytest("-p", "no:cacheprovider", f"--gradverify-json={serial}")
    result = project.runpytest_subprocess(
        "-p", "no:cacheprovider", "-n", "2", f"--gradverify-json={parallel}"
    )
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*= gradverify checks =*", "2 pass, 1 fail"])

    def comparable(path):
        return [
            {k: v for k, v in r.items() if k != "seconds"}
            for r in json.loads(path.read_text())["gradverify_results"]
        ]

    assert comparable(serial) == comparable(parallel)


def test_gradfuzz_fixture_reports_the_smallest_failing_case(pytester):
    pytester.makepyfile(
        test_fuzzing="""
import numpy as np
from layers_under_test.reference import Affine

SPEC = {"dims": {"N": [1, 3], "D": [1, 3], "M": [1, 3]},
        "init": {"W": ["D", "M"], "b": ["M"]}, "inputs": {"x": ["N", "D"]}}

class Squeezed(Affine):
    def backward(self, dout):
        dx = super().backward(dout)
        self.db = np.squeeze(dout.sum(axis=0, keepdims=True))
        return dx

def test_reference(gradfuzz):
    assert gradfuzz(Affine, SPEC, examples=20).passed

def test_squeezed(gradfuzz):
    gradfuzz(Squeezed, SPEC, examples=20)
"""
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["*fuzz: FAIL after*", "*smallest failing case:*", "*dims: N=1, D=1, M=1*"]
    )
    result.stdout.fnmatch_lines(  # the passing fuzz has its row in the summary too
        ["test_fuzzing.py::test_reference *Affine *PASS *- *- *- *fuzz: 20 cases (0 inconclusive)"]
    )


def test_a_row_failing_for_a_reason_shows_the_reason_not_numbers(pytester):
    pytester.makepyfile(
        test_reasons="""
import numpy as np
from layers_under_test.registry import BROKEN

def _check(gradcheck, name):
    case = BROKEN[name]
    rng = np.random.default_rng(0)
    gradcheck(case.build(rng), case.make_inputs(rng), nondiff=case.nondiff)

def test_shape(gradcheck):
    _check(gradcheck, "AffineNoReshapeBack")

def test_contract(gradcheck):
    _check(gradcheck, "ReluForwardInPlace")
"""
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "test_reasons.py::test_contract *FAIL *- *- *(input modified)",
            "test_reasons.py::test_shape *FAIL *- *- *(dx: dx has shape (2, 12)*",
        ]
    )


def test_a_session_without_gradient_checks_imports_neither_numpy_nor_the_checker(pytester):
    # the plugin loads in every pytest session where gradverify is installed: it must
    # cost nothing there (issue: +130 ms for numpy and the core on every session)
    pytester.makeconftest(
        """
        import sys

        def pytest_unconfigure(config):
            with open("modules.txt", "w") as seen:
                seen.write("\\n".join(sorted(sys.modules)))
        """
    )
    pytester.makepyfile("def test_plain():\n    assert 1 + 1 == 2\n")
    result = pytester.runpytest_subprocess()  # the plugin loads by its entry point
    result.assert_outcomes(passed=1)
    modules = set((pytester.path / "modules.txt").read_text().split())
    assert "gradverify.plugin" in modules
    assert not {"numpy", "gradverify.checks", "gradverify.session"} & modules

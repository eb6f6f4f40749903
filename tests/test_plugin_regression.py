"""Regression tests through pytest: the ``gradregression`` fixture's baselines, and the
``gradcheck`` fixture held against a reference (pytester, as a user's project runs them)."""

from __future__ import annotations

import numpy as np
import pytest

LAYER = """
import numpy as np

class Sigmoid:
    def __init__(self, slope=1.0):
        self.slope = slope

    def forward(self, x):
        self.out = 1 / (1 + np.exp(-self.slope * x))
        return self.out

    def backward(self, dout):
        return self.slope * dout * self.out * (1 - self.out)
"""

TESTS = """
import numpy as np
from sigmoid import Sigmoid

def inputs():
    return {"x": np.random.default_rng(0).standard_normal((3, 4))}

def test_sigmoid(gradregression):
    gradregression(Sigmoid(), inputs())

def test_two_calls(gradregression):
    gradregression(Sigmoid(), inputs())
    gradregression(Sigmoid(), inputs(), basename="named")
"""


def _project(pytester):
    pytester.makepyfile(sigmoid=LAYER, test_regression=TESTS)
    pytester.syspathinsert()
    return pytester


def _run(pytester, *args):
    return pytester.runpytest("-p", "no:cacheprovider", "-p", "no:randomly", *args)


def _stored(pytester, name):
    with np.load(pytester.path / "test_regression" / name) as data:
        return {key: data[key].copy() for key in data.files}


def test_first_run_writes_every_baseline_and_fails_then_passes(pytester):
    project = _project(pytester)
    first = _run(project)
    first.assert_outcomes(failed=2)
    first.stdout.fnmatch_lines(
        [
            "*gradverify: baselines written, so nothing was compared (commit them*",
            "*test_regression/test_two_calls.npz",
            "*test_regression/named.npz",
            # no error number for no comparison: the reason instead
            "*test_sigmoid*INCONCLUSIVE*-*-*vs baseline  (baseline written)",
        ]
    )
    folder = project.path / "test_regression"
    assert sorted(p.name for p in folder.iterdir()) == [
        "named.npz",
        "test_sigmoid.npz",
        "test_two_calls.npz",
    ]
    _run(project).assert_outcomes(passed=2)


CLASSES = """
import numpy as np
import pytest
from sigmoid import Sigmoid

x = np.random.default_rng(0).standard_normal((3, 4))

class TestA:
    def test_layer(self, gradregression):
        gradregression(Sigmoid(1.0), {"x": x})

class TestB:
    def test_layer(self, gradregression):
        gradregression(Sigmoid(2.0), {"x": x})

@pytest.mark.parametrize("slope", [1.0, 3.0], ids=["a b", "a/b"])
def test_param(gradregression, slope):
    gradregression(Sigmoid(slope), {"x": x})
"""


def test_same_test_names_in_classes_or_sanitized_ids_never_share_a_file(pytester):
    pytester.makepyfile(sigmoid=LAYER, test_names=CLASSES)
    pytester.syspathinsert()
    _run(pytester).assert_outcomes(failed=4)
    names = sorted(p.name for p in (pytester.path / "test_names").iterdir())
    assert len(names) == 4 and "TestA.test_layer.npz" in names and "TestB.test_layer.npz" in names
    assert all(n.startswith("test_param[a_b]-") for n in names if n.startswith("test_param"))
    _run(pytester).assert_outcomes(passed=4)


def test_a_baseline_does_not_depend_on_the_directory_pytest_runs_from(pytester):
    tests = pytester.mkdir("tests")
    (tests / "sigmoid.py").write_text(LAYER)
    (tests / "test_regression.py").write_text(TESTS)
    pytester.syspathinsert(tests)
    _run(pytester, "tests").assert_outcomes(failed=2)  # writes
    _run(pytester, "tests").assert_outcomes(passed=2)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tests)  # another rootdir: other node ids, same baselines
        _run(pytester, ".").assert_outcomes(passed=2)


def test_a_changed_layer_fails_naming_the_moved_output(pytester):
    project = _project(pytester)
    _run(project)
    project.makepyfile(sigmoid=LAYER.replace("slope=1.0", "slope=2.0"))
    result = _run(project, "-k", "test_sigmoid")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*Sigmoid.backward — forward output differs from the baseline",
            "*differing: 12 / 12 (100.0%)*",
            "  baseline: *test_regression/test_sigmoid.npz",
            "*dx differs from the baseline",
        ]
    )


def test_regen_rewrites_every_baseline_of_a_test(pytester):
    project = _project(pytester)
    _run(project)
    before = _stored(project, "named.npz")
    project.makepyfile(sigmoid=LAYER.replace("slope=1.0", "slope=2.0"))
    regen = _run(project, "-k", "test_two_calls", "--gradverify-regen")
    regen.assert_outcomes(failed=1)  # rewriting compares nothing, so it does not pass
    regen.stdout.fnmatch_lines(["*test_two_calls.npz", "*named.npz"])
    after = _stored(project, "named.npz")
    assert not np.allclose(before["output_0"], after["output_0"])
    _run(project, "-k", "test_two_calls").assert_outcomes(passed=1)


def test_a_corrupt_baseline_is_a_clear_error(pytester):
    project = _project(pytester)
    _run(project)
    (project.path / "test_regression" / "test_sigmoid.npz").write_bytes(b"not an archive")
    result = _run(project, "-k", "test_sigmoid")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*baseline *test_sigmoid.npz cannot be read (not an .npz archive)*--gradverify-regen*"]
    )
    result.stdout.no_fnmatch_line("*Traceback*")


def test_gradcheck_fixture_takes_a_reference(pytester):
    pytester.makepyfile(
        sigmoid=LAYER,
        test_reference="""
import numpy as np
from sigmoid import Sigmoid

def test_steep(gradcheck):
    x = np.random.default_rng(0).standard_normal((3, 4))
    gradcheck(Sigmoid(slope=2.0), {"x": x}, reference="Sigmoid")
""",
    )
    pytester.syspathinsert()
    result = _run(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*forward output differs from the reference Sigmoid",
            "*note: a gradient check cannot see this*",
            "*test_reference.py::test_steep*FAIL*-*-*vs reference  (output: not the reference)",
        ]
    )

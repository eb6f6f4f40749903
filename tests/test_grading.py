"""Grading a class: assignment files, the example class, outputs, Gradescope, Dask, resume."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from gradverify.errors import InvalidArgument
from gradverify.grading import protocol, scoring, summary
from gradverify.grading.assignment import load_assignment, parse_assignment
from gradverify.grading.autograder import write_zip
from gradverify.grading.grader import Submission, grade_submission
from gradverify.grading.gradescope import results_json
from gradverify.grading.notebooks import notebook_source
from gradverify.grading.runner import grade, grade_one, read_records
from tests.processes import running

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "assignment"


@pytest.fixture
def example(tmp_path):
    """The example class with a 2-second time limit (its endless submission waits out each)."""
    copy = tmp_path / "assignment"
    shutil.copytree(EXAMPLE, copy)
    toml = copy / "chapter5.toml"
    toml.write_text(toml.read_text().replace("time_limit = 5", "time_limit = 2"))
    return copy


EXPECTED = {  # submission: (score, {check: status}) for the checks that do not pass
    "correct": (18.0, {}),
    "notebook": (18.0, {}),
    "partly_wrong": (12.0, {"Relu": "fail", "Affine": "fail", "SoftmaxWithLoss": "fail"}),
    "endless": (10.0, {"Affine": "error", "Affine (other shapes)": "error"}),
    "sneaky": (6.0, {"MulLayer": "fail", "Sigmoid": "fail", "SoftmaxWithLoss": "fail"}),
}


def _without_timing(records):
    """Every record as text, without what a clock decides (its seconds, in and out of its
    report): the rest must be the same however and wherever it was graded."""
    return sorted(
        re.sub(
            r"\b\d+\.\d+ s\b",
            "_ s",
            json.dumps({k: v for k, v in r.items() if k != "seconds"}, sort_keys=True),
        )
        for rs in records.values()
        for r in rs
    )


def test_the_example_class_is_graded_as_each_submission_deserves(example, tmp_path):
    out = tmp_path / "out"
    run = grade(str(example / "chapter5.toml"), str(example / "submissions"), str(out), workers=2)
    assert run.graded == 5
    records = read_records(str(out / "results.jsonl"))
    for name, (score, statuses) in EXPECTED.items():
        document = json.loads((out / name / "results.json").read_text())
        assert document["score"] == score, (name, [t["output"] for t in document["tests"]])
        failing = {r["check"]: r["status"] for r in records[name] if r["status"] != "pass"}
        assert {k: failing.get(k) for k in statuses} == statuses, (name, failing)
    summary = (out / "summary.md").read_text()
    assert "5 submissions graded." in summary and "| Relu | 3 | 5 | 60% |" in summary
    assert "forward differs from the reference" in summary
    sneaky = {r["check"]: r["output"] for r in records["sneaky"]}
    # finite differences agree with its backward: the header must not say they disagree
    assert "Sigmoid.backward — dx is wrong" in sneaky["Sigmoid"], sneaky["Sigmoid"]
    page = (out / "summary.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page and "http" not in page
    shown = run._repr_html_()  # a notebook shows the summary, its style kept in a frame
    assert "<iframe" in shown and html.escape(page, quote=True) in shown


def test_results_json_follows_gradescopes_format(example, tmp_path):
    results = tmp_path / "results" / "results.json"
    document = grade_one(
        str(example / "chapter5.toml"), str(example / "submissions" / "partly_wrong"), str(results)
    )
    assert json.loads(results.read_text()) == document
    assert set(document) == {"score", "execution_time", "output", "stdout_visibility", "tests"}
    for test in document["tests"]:
        assert set(test) == {
            "name",
            "number",
            "score",
            "max_score",
            "status",
            "output",
            "visibility",
        }
        assert test["status"] in ("passed", "failed")
    hidden = [t for t in document["tests"] if t["visibility"] != "visible"]
    assert [t["name"] for t in hidden] == ["Affine (other shapes)"]
    affine = next(t for t in document["tests"] if t["name"] == "Affine")
    assert affine["score"] == 3.0 and "db: 0 / 1 (FAIL)" in affine["output"]
    assert "hint: analytic = 0.5 x numeric" in affine["output"]


def test_a_failing_check_worth_no_points_is_not_passed(tmp_path):
    from gradverify.results import CheckResult, Status

    table = {"object": "layers.py:Relu", "points": 0, "spec": {"inputs": {"x": [2]}}}
    (graded,) = parse_assignment({"check": [table]}, str(tmp_path / "a.toml")).checks
    for status, passed in ((Status.FAIL, False), (Status.PASS, True)):
        record = scoring.record("s", graded, CheckResult("Relu", "Relu.backward", status, 0), "", 0)
        assert record["score"] == 0 and record["passed"] is passed
        test = results_json([record], 1.0)["tests"][0]
        assert test["status"] == ("passed" if passed else "failed")


def test_a_dask_cluster_grades_the_same_as_the_process_pool(example, tmp_path, monkeypatch):
    distributed = pytest.importorskip("distributed")
    assignment, submissions = str(example / "chapter5.toml"), str(example / "submissions")
    grade(assignment, submissions, str(tmp_path / "pool"), workers=2)
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, dashboard_address=None
    ) as cluster:
        monkeypatch.chdir(example)  # paths relative to here, where the workers are not
        grade(
            "chapter5.toml",
            "submissions",
            str(tmp_path / "dask"),
            scheduler=cluster.scheduler_address,
        )
    pool = read_records(str(tmp_path / "pool" / "results.jsonl"))
    dask = read_records(str(tmp_path / "dask" / "results.jsonl"))
    assert _without_timing(pool) == _without_timing(dask)


def test_a_killed_run_resumes_to_the_same_results(example, tmp_path):
    command = [sys.executable, "-m", "gradverify", "grade", str(example / "chapter5.toml")]
    submissions = str(example / "submissions")
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    subprocess.run([*command, submissions, "--out", str(clean), "--workers", "1"], check=True)
    run = subprocess.Popen([*command, submissions, "--out", str(killed), "--workers", "1"])
    journal = killed / "results.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (
        journal.exists() and '"complete": true' in journal.read_text()
    ):
        time.sleep(0.05)
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    assert 0 < len(read_records(str(journal))) < 5, "kill the run midway"
    deadline = time.monotonic() + 10
    while running(str(killed)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not running(str(killed)), "the killed run's workers outlived it"
    subprocess.run([*command, submissions, "--out", str(killed), "--resume"], check=True)
    assert _without_timing(read_records(str(journal))) == _without_timing(
        read_records(str(clean / "results.jsonl"))
    )


def test_the_autograder_zip_grades_a_submission_as_gradescope_would(example, tmp_path):
    archive = tmp_path / "autograder.zip"
    write_zip(str(example / "chapter5.toml"), str(archive))
    with zipfile.ZipFile(archive) as opened:
        names = opened.namelist()
        opened.extractall(tmp_path / "source")
        assert opened.getinfo("run_autograder").external_attr >> 16 & 0o111
    assert {"setup.sh", "run_autograder", "chapter5.toml", "solution.py"} <= set(names)
    assert "lib/gradverify/grading/grader.py" in names
    results = tmp_path / "results.json"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "gradverify",
            "grade",
            "chapter5.toml",
            "--gradescope",
            "--submission",
            str(example / "submissions" / "correct"),
            "--results",
            str(results),
        ],
        cwd=tmp_path / "source",
        env={**os.environ, "PYTHONPATH": str(tmp_path / "source" / "lib")},
        check=True,
    )
    assert json.loads(results.read_text())["score"] == 18.0


ASSIGNMENTS = {
    "unknown key": ("[assignment]\npionts = 1\n", "unknown key(s) ['pionts']"),
    "no checks": ("[assignment]\nname = 'x'\n", "no [[check]] tables"),
    "no object": ("[[check]]\nname = 'A'\n", "needs object = the class to check"),
    "no module": ("[[check]]\nobject = 'Affine'\n", "must name a class in a .py file"),
    "bad visibility": (
        "[[check]]\nobject = 'l.py:A'\nvisibility = 'secret'\nspec = {inputs = {x = [2]}}\n",
        "visibility = 'secret'; it is one of visible, hidden",
    ),
    "points disagree": (
        "[[check]]\nobject = 'l.py:A'\npoints = 3\ngradients = {dx = 1}\n"
        "spec = {inputs = {x = [2]}}\n",
        "points = 3 but the gradients add up to 1",
    ),
    "bad spec": (
        "[[check]]\nobject = 'l.py:A'\nspec = {inputs = {x = ['N']}}\n",
        "uses dimension 'N', which dims does not declare",
    ),
    "missing reference": (
        "[assignment]\nreference = 'nowhere.py'\n[[check]]\nobject = 'l.py:A'\n"
        "spec = {inputs = {x = [2]}}\n",
        "reference file",
    ),
    "not TOML": ("[[check]\n", "is not valid TOML"),
    "not UTF-8": ("name = '\udcff'\n", "is not valid TOML"),
    "assignment not a table": ("assignment = 5\n", "[assignment] must be a table"),
    "points not a number": (
        "[[check]]\nobject = 'l.py:A'\npoints = 'abc'\ngradients = {dx = 1}\n"
        "spec = {inputs = {x = [2]}}\n",
        "points must be a non-negative number, got 'abc'",
    ),
    "dims not a table": (
        "[[check]]\nobject = 'l.py:A'\nspec = {dims = 3, inputs = {x = [2]}}\n",
        "`spec` dims must map names to entries",
    ),
    "params not names": (
        "[[check]]\nobject = 'l.py:A'\nparams = 5\nspec = {inputs = {x = [2]}}\n",
        "params must be a list of names or a table",
    ),
    "time limit of years": (
        "[assignment]\ntime_limit = 1e300\n[[check]]\nobject = 'l.py:A'\n"
        "spec = {inputs = {x = [2]}}\n",
        "is over a day",
    ),
    "memory under a MiB": (
        "[assignment]\nmemory_limit = 0.5\n[[check]]\nobject = 'l.py:A'\n"
        "spec = {inputs = {x = [2]}}\n",
        "memory_limit must be a whole number of MiB, at least 16",
    ),
    "module outside the submission": (
        "[[check]]\nobject = '../grader.py:A'\nspec = {inputs = {x = [2]}}\n",
        "must be a path inside the submission folder",
    ),
    "time limit typo, blamed where it is": (
        "[assignment]\ntime_limit = '5s'\n[[check]]\nobject = 'l.py:A'\n"
        "spec = {inputs = {x = [2]}}\n",
        "[assignment] time_limit must be a positive number, got '5s'",
    ),
    "reference not Python": (
        "[assignment]\nreference = 'a.toml'\n[[check]]\nobject = 'l.py:A'\n"
        "spec = {inputs = {x = [2]}}\n",
        "must name a .py file",
    ),
}


@pytest.mark.parametrize("case", ASSIGNMENTS)
def test_a_bad_assignment_file_names_the_key_and_the_fix(tmp_path, case):
    text, message = ASSIGNMENTS[case]
    path = tmp_path / "a.toml"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.raises(InvalidArgument) as raised:
        load_assignment(str(path))
    assert message in str(raised.value)


def test_the_cli_says_what_is_wrong_in_one_line_and_exits_2(tmp_path):
    (tmp_path / "a.toml").write_text("[assignment]\n")
    ran = subprocess.run(
        [sys.executable, "-m", "gradverify", "grade", str(tmp_path / "a.toml"), "x", "--out", "o"],
        capture_output=True,
        text=True,
    )
    assert ran.returncode == 2 and ran.stderr.startswith("gradverify: error: ")
    assert "Traceback" not in ran.stderr


REFERENCES = {
    "a name it does not have": ("", "solution.py:Nope", "the reference solution.py has no .Nope."),
    "a constructor that raises": (
        "class Double:\n    def __init__(self):\n        raise RuntimeError('unfinished')\n",
        "solution.py:Double",
        "cannot be built: RuntimeError: unfinished",
    ),
    "a wrong gradient": (
        "class Double:\n    def forward(self, x):\n        return 2 * x\n"
        "    def backward(self, dout):\n        return 3 * dout\n",
        "solution.py:Double",
        "does not pass its own check, so no submission could",
    ),
}


@pytest.mark.parametrize("case", REFERENCES)
def test_a_broken_reference_is_one_error_before_any_submission_runs(tmp_path, case):
    source, reference, message = REFERENCES[case]
    (tmp_path / "solution.py").write_text(source)
    (tmp_path / "a.toml").write_text(
        f"[[check]]\nobject = 'l.py:Double'\nreference = '{reference}'\n"
        f"spec = {{dims = {{N = 2}}, inputs = {{x = ['N']}}}}\n"
    )
    (tmp_path / "class" / "student").mkdir(parents=True)
    with pytest.raises(InvalidArgument, match=message):
        grade(str(tmp_path / "a.toml"), str(tmp_path / "class"), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()
    with pytest.raises(InvalidArgument, match=message):
        write_zip(str(tmp_path / "a.toml"), str(tmp_path / "autograder.zip"))
    assert not (tmp_path / "autograder.zip").exists()


DOUBLE = (
    "class Double:\n    def forward(self, x):\n        return 2 * x\n"
    "    def backward(self, dout):\n        return 2 * dout\n"
)


def _double_class(tmp_path, check_keys=""):
    """A one-check assignment (Double, with its reference) and a class of one correct student."""
    (tmp_path / "solution.py").write_text(DOUBLE)
    (tmp_path / "a.toml").write_text(
        f"[[check]]\nobject = 'l.py:Double'\nreference = 'solution.py'\n{check_keys}"
        f"spec = {{dims = {{N = 2}}, inputs = {{x = ['N']}}}}\n"
    )
    (tmp_path / "class" / "student").mkdir(parents=True)
    (tmp_path / "class" / "student" / "l.py").write_text(DOUBLE)
    return str(tmp_path / "a.toml"), str(tmp_path / "class")


def test_a_gradient_no_submission_could_have_is_one_error(tmp_path):
    assignment, submissions = _double_class(tmp_path, "gradients = {dX = 1}\n")
    with pytest.raises(InvalidArgument, match=r"'dX' is not a gradient its check has.* dx"):
        grade(assignment, submissions, str(tmp_path / "out"))


def test_resuming_against_a_changed_assignment_is_refused(tmp_path):
    assignment, submissions = _double_class(tmp_path, "points = 1\n")
    out = str(tmp_path / "out")
    grade(assignment, submissions, out, workers=1)
    grade(assignment, submissions, out, workers=1, resume=True)  # unchanged: fine
    path = tmp_path / "a.toml"
    path.write_text(path.read_text().replace("points = 1", "points = 5"))
    with pytest.raises(InvalidArgument, match=r"graded against another version of a\.toml"):
        grade(assignment, submissions, out, workers=1, resume=True)
    assert grade(assignment, submissions, out, workers=1).graded == 1  # without --resume


def test_a_results_folder_inside_the_class_is_not_a_student(tmp_path):
    assignment, submissions = _double_class(tmp_path)
    out = str(tmp_path / "class" / "results")
    for _ in range(2):
        assert grade(assignment, submissions, out, workers=1).graded == 1
    assert set(read_records(os.path.join(out, "results.jsonl"))) == {"student"}


def test_a_module_most_submissions_lack_is_warned_of_once(tmp_path, capsys):
    assignment, submissions = _double_class(tmp_path)
    grade(assignment, submissions, str(tmp_path / "out"), workers=1)
    assert "warning" not in capsys.readouterr().err
    path = tmp_path / "a.toml"
    path.write_text(path.read_text().replace("l.py:Double", "layer.py:Double"))
    grade(assignment, submissions, str(tmp_path / "out2"), workers=1)
    assert "1 of 1 submission folders have no layer.py" in capsys.readouterr().err


def test_one_students_folder_given_as_the_class_says_so(tmp_path):
    assignment, submissions = _double_class(tmp_path)
    student = os.path.join(submissions, "student")
    with pytest.raises(InvalidArgument, match=r"holds \.py files itself, as one student.s folder"):
        grade(assignment, student, str(tmp_path / "out"))


def test_notebooks_without_nbformat_stop_the_run_before_it_starts(tmp_path, monkeypatch):
    assignment, submissions = _double_class(tmp_path)
    shutil.copy(EXAMPLE / "submissions" / "notebook.ipynb", os.path.join(submissions, "nb.ipynb"))
    monkeypatch.setitem(sys.modules, "nbformat", None)  # import nbformat now fails
    with pytest.raises(InvalidArgument, match=r"pip install 'gradverify\[grade\]'"):
        grade(assignment, submissions, str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("layout", "says"),
    [
        ({"l.py": "class Other:\n    pass\n"}, "l.py has no 'Double' (it defines: Other)"),
        ({"hw5/l.py": DOUBLE}, "has no file l.py (found hw5/l.py: it must be at the top"),
    ],
)
def test_a_missing_class_or_misplaced_file_is_said_as_such(tmp_path, layout, says):
    assignment, submissions = _double_class(tmp_path)
    folder = Path(submissions) / "student"
    (folder / "l.py").unlink()
    for name, text in layout.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    (record,) = grade_submission(assignment, Submission("student", str(folder)))
    assert record["status"] == "error" and record["score"] == 0
    assert says in record["output"] and "raised" not in record["output"], record["output"]


MASKED = (
    "import numpy as np\n\n\nclass Masked:\n    def forward(self, x):\n"
    "        self.mask = np.random.rand(*x.shape) > 0.5\n        return x * self.mask\n\n"
    "    def backward(self, dout):\n        return dout * self.mask\n"
)


def test_a_layer_drawing_a_mask_every_call_is_graded_from_one_random_state(tmp_path):
    (tmp_path / "a.toml").write_text(
        "[[check]]\nobject = 'l.py:Masked'\nspec = {dims = {N = 3}, inputs = {x = ['N', 'N']}}\n"
    )
    folder = tmp_path / "class" / "student"
    folder.mkdir(parents=True)
    (folder / "l.py").write_text(MASKED)
    (record,) = grade_submission(str(tmp_path / "a.toml"), Submission("student", str(folder)))
    assert record["status"] == "pass", record["output"]


def test_the_summary_says_how_many_failures_it_leaves_out():
    records = [
        {"submission": f"s{n}", "check": f"c{n}", "score": 0, "passed": False, "error": f"e{n}"}
        for n in range(summary.TOP_FAILURES + 3)
    ]
    made = summary.summarize("t", records, 1.0, "")
    assert len(made.failures) == summary.TOP_FAILURES
    assert "and 3 rarer failure(s)" in summary.markdown(made)
    assert "and 3 rarer failure(s)" in summary.page(made)


def test_a_notebook_keeps_its_definitions_and_drops_everything_else(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    cells = [
        "%matplotlib inline\n!pip install tqdm\nimport numpy as np\nimport no_such_module",
        "RATE = 0.1\nclass Layer:\n    def forward(self, x):\n        return RATE * x",
        "for epoch in range(10**9):\n    train()\nopen('/etc/passwd')",
        "def helper(): return 1\nhelper()",
        "this is not (python",
    ]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    path = tmp_path / "work.ipynb"
    nbformat.write(notebook, str(path))
    source = notebook_source(str(path))
    namespace: dict = {}
    exec(compile(source, "layers.py", "exec"), namespace)
    assert namespace["Layer"]().forward(2.0) == pytest.approx(0.2)
    assert "train()" not in source and "helper()\n" not in source and "pip" not in source
    assert "# cell 5 skipped: it does not parse" in source


def test_a_notebook_that_cannot_be_read_is_the_submissions_error_not_the_graders(tmp_path):
    pytest.importorskip("nbformat")
    path = tmp_path / "work.ipynb"
    path.write_text("{ not json")
    source = notebook_source(str(path))
    with pytest.raises(ImportError, match=r"the notebook work\.ipynb cannot be read"):
        exec(compile(source, "layers.py", "exec"), {})


def _frame(header: bytes) -> bytes:
    return len(header).to_bytes(4, "big") + header


@pytest.mark.parametrize(
    "frame",
    [
        b"\xff\xff\xff\xff",
        _frame(b"notjs"),
        _frame(b'{"_arrays": [["|O", [1], 8]]}'),
        _frame(b'{"_arrays": [["<f8", [3], 8]]}') + bytes(8),  # the 8 bytes it declares
        _frame(b'{"_arrays": [["<f8", [1073741824], 8589934592]]}'),
    ],
    ids=["huge header", "not JSON", "object dtype", "wrong byte count", "huge array"],
)
def test_the_wire_trusts_nothing_a_child_sends(frame):
    import socket

    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(frame)
        theirs.shutdown(socket.SHUT_WR)
        with pytest.raises(protocol.ProtocolError):  # not EOF: refused before reading on
            protocol.read_message(ours)


def test_values_cross_the_wire_as_what_they_are():
    arrays: list[np.ndarray] = []
    value = (np.arange(3.0), {"train_flg": True}, [[1.0, 2.0]], None, np.float64(2.5), object())
    back = protocol.decode(protocol.encode(value, arrays), arrays)
    assert np.array_equal(back[0], np.arange(3.0)) and back[1] == {"train_flg": True}
    assert back[2] == [[1.0, 2.0]] and back[3] is None and back[4].shape == ()
    assert type(back[5]).__name__ == "object"


DENSE = """
import numpy as np

class SGD:
    def update(self, w, grad_wrt_w):
        return w - 0.01 * grad_wrt_w

class Dense:
    def __init__(self, W, w0):
        self.W, self.w0 = W, w0
        self.W_opt, self.w0_opt = SGD(), SGD()

    def forward_pass(self, X):
        self.layer_input = X
        return X.dot(self.W) + self.w0

    def backward_pass(self, accum_grad):
        W = self.W
        grad_w = self.layer_input.T.dot(accum_grad)
        grad_w0 = np.sum(accum_grad, axis=0, keepdims=True)
        self.W = self.W_opt.update(self.W, grad_w)
        self.w0 = self.w0_opt.update(self.w0, grad_w0)
        return accum_grad.dot(W.T)
"""


def test_a_class_written_another_way_is_graded_with_the_assignments_declarations(tmp_path):
    """ML-From-Scratch's style (forward_pass, optimizers inside backward): the assignment
    declares it once; the reference and every submission's child apply it."""
    (tmp_path / "solution.py").write_text(DENSE)
    (tmp_path / "a.toml").write_text(
        "[[check]]\nobject = 'l.py:Dense'\nreference = 'solution.py'\n"
        "methods = {forward = 'forward_pass', backward = 'backward_pass'}\n"
        "optimizer = ['W_opt', 'w0_opt']\n"
        "gradients = {dX = 1, 'dW via W_opt' = 1, 'dw0 via w0_opt' = 1}\n"
        "spec = {dims = {N = 2, D = 3, M = 2}, init = {W = ['D', 'M'], w0 = [1, 'M']}, "
        "inputs = {X = ['N', 'D']}}\n"
    )
    records = _graded_class(
        tmp_path,
        right=DENSE,
        mean_bias=DENSE.replace("np.sum(accum_grad", "np.mean(accum_grad"),
        renamed=DENSE.replace("backward_pass", "backprop"),
    )
    assert (records["right"]["status"], records["right"]["score"]) == ("pass", 3.0)
    assert (records["mean_bias"]["status"], records["mean_bias"]["score"]) == ("fail", 2.0)
    assert records["renamed"]["status"] == "error"
    assert "`methods['backward']`: 'backward_pass' was not found" in records["renamed"]["output"]


def _graded_class(tmp_path, **students):
    """Grade ``tmp_path/a.toml`` over one ``l.py`` per student; each student's record."""
    for student, source in students.items():
        (tmp_path / "class" / student).mkdir(parents=True)
        (tmp_path / "class" / student / "l.py").write_text(source)
    out = tmp_path / "out"
    grade(str(tmp_path / "a.toml"), str(tmp_path / "class"), str(out), workers=1)
    return {name: rs[0] for name, rs in read_records(str(out / "results.jsonl")).items()}


def test_an_assignments_declarations_are_validated_when_it_is_read(tmp_path):
    spec = {"inputs": {"X": [2]}}
    table = {"object": "l.py:Dense", "methods": {"fwd": "forward_pass"}, "spec": spec}
    with pytest.raises(InvalidArgument, match=r"\[\[check\]\].*`methods` names the role"):
        parse_assignment({"check": [table]}, str(tmp_path / "a.toml"))


STATEFUL = """
import numpy as np

class Stateful:
    def __init__(self, W):
        self.W, self.h, self.dW = W, np.ones(W.shape[1]), None

    def forward(self, x):
        self.x = x
        self.out = np.tanh(x @ self.W + self.h)
        self.h = self.out.sum(axis=0)  # the next call starts from it
        return self.out

    def backward(self, dout):
        dz = dout * (1 - self.out ** 2)
        self.dW = self.x.T @ dz
        return dz @ self.W.T
"""


def test_a_submission_carrying_state_is_held_to_its_state_in_its_own_process(tmp_path):
    (tmp_path / "solution.py").write_text(STATEFUL)
    (tmp_path / "a.toml").write_text(
        "[[check]]\nobject = 'l.py:Stateful'\nreference = 'solution.py'\n"
        "gradients = {dx = 1, dW = 1}\n"
        "spec = {dims = {N = 2, D = 3, M = 2}, init = {W = ['D', 'M']}, "
        "inputs = {x = ['N', 'D']}}\n"
    )
    records = _graded_class(
        tmp_path,
        right=STATEFUL,
        no_tanh_slope=STATEFUL.replace("self.dW = self.x.T @ dz", "self.dW = self.x.T @ dout"),
    )
    assert (records["right"]["status"], records["right"]["score"]) == ("pass", 2.0)
    assert "carries state from one call to the next" in records["right"]["output"]
    assert (records["no_tanh_slope"]["status"], records["no_tanh_slope"]["score"]) == ("fail", 1.0)

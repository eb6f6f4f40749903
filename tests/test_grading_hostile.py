"""Hostile submissions: each act gets the verdict it deserves, and costs no one else anything.

Every test grades a submission of its own (a `layers.py` with a correct Sigmoid and
an Affine carrying the act) against a two-check assignment.  The Sigmoid check
must stay a full PASS whatever the Affine does, no act may earn a point it
should not, and the grader's own process, files and results must come out
untouched.  Acts that need root to be contained (no network, other users' files)
are skipped with the reason where the tests do not run as root.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest

from gradverify.grading.grader import Submission, grade_submission
from gradverify.grading.runner import grade
from gradverify.grading.sandbox import Limits, Sandbox
from tests.processes import running

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="contained only when the grader runs as root")

SIGMOID = """
import numpy as np


class Sigmoid:
    def forward(self, x):
        self.out = 1 / (1 + np.exp(-x))
        return self.out

    def backward(self, dout):
        return dout * (1 - self.out) * self.out
"""

AFFINE = """

class Affine:
    def __init__(self, W, b):
        self.W, self.b = W, b

    def forward(self, x):
        {forward}
        self.x = x
        return x @ self.W + self.b

    def backward(self, dout):
        {backward}
        self.dW = self.x.T @ dout
        self.db = dout.sum(axis=0)
        return dout @ self.W.T
"""

ASSIGNMENT = """
[assignment]
name = "hostile"
module = "layers.py"
time_limit = 1.5
memory_limit = 256

[[check]]
object = "Sigmoid"
spec = {dims = {N = 2, D = 3}, inputs = {x = ["N", "D"]}}

[[check]]
object = "Affine"
spec = {dims = {N = 2, D = 3, M = 2}, init = {W = ["D", "M"], b = ["M"]}, inputs = {x = ["N", "D"]}}
"""


@pytest.fixture
def tmp_path():
    """A folder every user may enter (pytest's own are 0700): the walls under test must
    be the sandbox's, not a folder the submission cannot even reach."""
    folder = Path(tempfile.mkdtemp(prefix="gradverify-hostile-"))
    folder.chmod(0o777)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _submission(tmp_path, name, *, top="", forward="pass", backward="pass", extra=""):
    folder = tmp_path / "submissions" / name
    folder.mkdir(parents=True)
    source = SIGMOID + AFFINE.format(forward=forward, backward=backward) + extra
    (folder / "layers.py").write_text(textwrap.dedent(top) + source)
    return Submission(name, str(folder))


def _assignment(tmp_path):
    path = tmp_path / "assignment.toml"
    path.write_text(ASSIGNMENT)
    return str(path)


def _body(code):
    """Statements for the body of Affine.forward (indented to fit the template)."""
    return textwrap.dedent(code).strip().replace("\n", "\n        ")


def _grade(tmp_path, **act):
    records = grade_submission(_assignment(tmp_path), _submission(tmp_path, "student", **act))
    sigmoid, affine = records
    assert sigmoid["status"] == "pass" and sigmoid["score"] == 1.0, sigmoid["output"]
    return affine


ERRORS = {
    "infinite loop": ({"forward": "while True: pass"}, "no answer within the time limit of 1.5 s"),
    "sleep": ({"forward": "import time; time.sleep(60)"}, "no answer within the time limit"),
    "memory bomb": ({"forward": "[bytearray(2**26) for _ in range(10**4)]"}, "MemoryError"),
    "sys.exit(0) in forward": ({"forward": "import sys; sys.exit(0)"}, "SystemExit"),
    "os._exit(0) in forward": ({"forward": "import os; os._exit(0)"}, "exited with status 0"),
    "KeyboardInterrupt in backward": ({"backward": "raise KeyboardInterrupt"}, "KeyboardInterrupt"),
    "segfault": ({"forward": "import ctypes; ctypes.string_at(0)"}, "killed by SIGSEGV"),
    "NaN forward": ({"forward": "x = x * float('nan')"}, "is not finite"),
}


@pytest.mark.parametrize("act", ERRORS)
def test_an_act_that_stops_the_check_is_an_error_worth_nothing(tmp_path, act):
    changes, reason = ERRORS[act]
    affine = _grade(tmp_path, **changes)
    assert affine["status"] == "error" and affine["score"] == 0.0
    assert reason in affine["output"], affine["output"]


@pytest.mark.parametrize(
    ("act", "top"),
    [
        ("sys.exit(0) at import", "import sys\nsys.exit(0)\n"),
        ("os._exit(0) at import", "import os\nos._exit(0)\n"),
        ("an import error", "import numpy_but_misspelled\n"),
    ],
)
def test_an_act_at_import_errors_every_check(tmp_path, act, top):
    records = grade_submission(_assignment(tmp_path), _submission(tmp_path, "student", top=top))
    assert [r["status"] for r in records] == ["error", "error"]
    assert sum(r["score"] for r in records) == 0.0


def test_a_random_forward_fails_on_its_contract(tmp_path):
    affine = _grade(tmp_path, forward="x = x + np.random.default_rng().standard_normal(x.shape)")
    assert affine["status"] == "fail" and "nondeterministic forward" in affine["findings"]


def test_patching_numpy_and_gradverify_in_the_child_changes_nothing(tmp_path):
    top = """
        import numpy as np
        np.allclose = lambda *a, **k: True
        np.testing.assert_allclose = lambda *a, **k: None
        import gradverify
        gradverify.check = lambda *a, **k: None
        import gradverify.checks
        gradverify.checks.check = lambda *a, **k: None
    """
    affine = _grade(tmp_path, top=top, backward="dout = 0 * dout")
    assert affine["status"] == "fail" and affine["score"] == 0.0


def test_printing_megabytes_is_captured_truncated_and_costs_nothing(tmp_path):
    affine = _grade(tmp_path, forward="print('PASSED ' * 1000000)")
    assert affine["status"] == "pass" and affine["score"] == 1.0
    assert "what the submission printed:" in affine["output"]
    assert len(affine["output"]) < 10_000 and "more bytes)" in affine["output"]


def test_forged_results_files_are_never_read(tmp_path):
    forge = """
        import glob, os
        places = ["..", "../..", "/autograder/results", *glob.glob("/tmp/*"), *glob.glob("{out}/*")]
        for folder in places:
            try:
                with open(os.path.join(folder, "results.json"), "w") as handle:
                    handle.write('{{"score": 1000, "tests": []}}')
            except OSError:
                pass
    """
    out = tmp_path / "out"
    _submission(tmp_path, "honest")
    _submission(tmp_path, "forger", top=forge.format(out=out), backward="dout = 0 * dout")
    grade(_assignment(tmp_path), str(tmp_path / "submissions"), str(out), workers=1)
    honest = json.loads((out / "honest" / "results.json").read_text())
    forger = json.loads((out / "forger" / "results.json").read_text())
    assert honest["score"] == 2.0 and forger["score"] == 1.0  # its Sigmoid is right
    assert all(len(line) < 100_000 for line in (out / "results.jsonl").read_text().splitlines())


@needs_root
def test_deleting_sibling_submissions_and_the_results_fails(tmp_path):
    vandal = """
        import glob, shutil
        for path in glob.glob("{root}/**", recursive=True):
            shutil.rmtree(path, ignore_errors=True)
    """
    out = tmp_path / "out"
    _submission(tmp_path, "a_vandal", top=vandal.format(root=tmp_path))
    _submission(tmp_path, "b_sibling")
    grade(_assignment(tmp_path), str(tmp_path / "submissions"), str(out), workers=1)
    assert (tmp_path / "submissions" / "b_sibling" / "layers.py").exists()
    assert json.loads((out / "b_sibling" / "results.json").read_text())["score"] == 2.0
    assert json.loads((out / "a_vandal" / "results.json").read_text())["score"] == 2.0


@pytest.mark.parametrize(
    "how",
    [
        "os.setsid()",  # a session of its own: out of reach of the child's process group
        "os.setsid()\nif os.fork(): os._exit(0)",  # a daemon: orphaned while the check runs
    ],
)
def test_processes_left_behind_are_killed_when_the_check_ends(tmp_path, how):
    marker = f"gradverify-leftover-{os.getpid()}-{len(how)}"
    body = f"import os, time\n{how}\ntime.sleep(60)  # {marker}"
    spawn = f"""
        import subprocess, sys
        subprocess.Popen([sys.executable, "-c", {body!r}])
        import time; time.sleep(0.5)
    """
    records = grade_submission(_assignment(tmp_path), _submission(tmp_path, "s", top=spawn))
    assert [r["status"] for r in records] == ["pass", "pass"]
    assert not running(marker), "a process the submission started outlived its check"


def test_a_process_forking_in_a_loop_is_killed_when_the_check_ends(tmp_path):
    marker = f"gradverify-hydra-{os.getpid()}"
    loop = (  # two children a round, each going on, up to the cap: a population, not a chain
        "import os\nos.setsid()\nwhile True:\n    try:\n"
        "        if os.fork() and os.fork():\n            os._exit(0)\n"
        f"    except OSError:\n        pass  # {marker}"
    )
    spawn = f"""
        import subprocess, sys, time
        subprocess.Popen([sys.executable, "-c", {loop!r}])
        time.sleep(0.3)
    """
    started = time.monotonic()
    records = grade_submission(_assignment(tmp_path), _submission(tmp_path, "s", top=spawn))
    assert [r["status"] for r in records] == ["pass", "pass"]
    assert not running(marker), "a process forking in a loop outlived its check"
    assert time.monotonic() - started < 8, "the reap chased the loop until its deadline"


@needs_root
def test_strays_of_a_zygote_killed_from_outside_die_before_the_next_check(tmp_path):
    marker = f"gradverify-stray-{os.getpid()}"
    folder = tmp_path / "stray"
    folder.mkdir()
    (folder / "layers.py").write_text(
        "import subprocess, sys\n"
        f"subprocess.Popen([sys.executable, '-c', 'import os, time; os.setsid(); "
        f"time.sleep(60)  # {marker}'])\n"
        "class Sigmoid:\n    pass\n"
    )
    sandbox = Sandbox()
    limits = Limits(seconds=10, memory=256 * 2**20)
    child = sandbox.run(
        lambda scratch: shutil.copytree(folder, scratch, dirs_exist_ok=True), limits, ()
    )
    setup = {"op": "setup", "module": "layers.py", "object": "Sigmoid", "seed": 0}
    child.request(
        {**setup, "init": {"dict": {}}, "args": {"tuple": []}, "kwargs": {"dict": {}}},
        [],
        time.monotonic() + 10,
    )
    deadline = time.monotonic() + 5
    while not running(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert running(marker), "the submission's process never started"
    sandbox._zygote.kill()  # killed from outside: its children go to init, unreaped
    sandbox._zygote.wait()
    next_child = sandbox.run(lambda scratch: None, limits, ())
    # killed (SIGKILL: no more of its code runs) before the next check; on a loaded machine
    # it may take a moment to leave /proc, and left alone it would sleep for a minute
    deadline = time.monotonic() + 2
    while running(marker) and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        assert not running(marker), "a stray of the dead zygote outlived it into the next check"
    finally:
        for each in (child, next_child):
            sandbox.discard(each)
        sandbox.shutdown()


def test_a_fork_bomb_meets_the_process_cap(tmp_path):
    bomb = "import os\nwhile True:\n    os.fork()"
    affine = _grade(tmp_path, forward=_body(bomb))
    assert affine["status"] == "error" and affine["score"] == 0.0
    # stopped by the cap (fork fails at once), not by the time limit
    assert "BlockingIOError" in affine["error"], affine["error"]


@needs_root
def test_the_network_is_out_of_reach(tmp_path):
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    server.settimeout(5)
    accepted = []
    threading.Thread(target=lambda: accepted.append(_accept(server)), daemon=True).start()
    dial = f"""
        import socket
        try:
            socket.create_connection(("127.0.0.1", {port}), timeout=1).sendall(b"leak")
        except OSError:
            pass
    """
    affine = _grade(tmp_path, forward=_body(dial))
    assert affine["status"] == "pass"
    time.sleep(0.5)
    server.close()
    assert accepted in ([], [None]), "the submission reached a server on this machine"


def _accept(server):
    try:
        return server.accept()
    except OSError:
        return None


def test_garbage_written_to_the_grader_is_an_error_for_that_check_alone(tmp_path):
    garbage = """
        import os, stat
        for fd in os.listdir("/proc/self/fd"):
            try:
                if stat.S_ISSOCK(os.fstat(int(fd)).st_mode):
                    os.write(int(fd), b"\\xff\\xff\\xff\\xff garbage")
            except OSError:
                pass
    """
    affine = _grade(tmp_path, forward=_body(garbage))
    assert affine["status"] == "error" and "garbage" in affine["output"]


def test_a_trickling_answer_cannot_stretch_the_time_limit(tmp_path):
    trickle = """
        import os, stat, time
        for fd in os.listdir("/proc/self/fd"):
            try:
                if stat.S_ISSOCK(os.fstat(int(fd)).st_mode):
                    os.write(int(fd), (1 << 20).to_bytes(4, "big"))
                    for _ in range(100):
                        time.sleep(0.5)
                        os.write(int(fd), b" ")
            except OSError:
                pass
    """
    started = time.monotonic()
    affine = _grade(tmp_path, forward=_body(trickle))
    assert affine["status"] == "error" and time.monotonic() - started < 10


def test_a_decoy_weight_earns_nothing_against_the_reference(tmp_path):
    """`self.W` is a copy forward never reads, with a zero `dW` to match: consistent, so the
    gradient check alone passes it; the reference's dW does not."""
    decoy = """

class Decoy:
    def __init__(self, W, b):
        self.weights, self.b = W, b
        self.W, self.dW = W.copy(), np.zeros_like(W)

    def forward(self, x):
        self.x = x
        return x @ self.weights + self.b

    def backward(self, dout):
        self.db = dout.sum(axis=0)
        return dout @ self.weights.T
"""
    (tmp_path / "solution.py").write_text(SIGMOID + AFFINE.format(forward="pass", backward="pass"))
    assignment = tmp_path / "assignment.toml"
    assignment.write_text(
        ASSIGNMENT.replace(
            'object = "Affine"',
            'object = "Decoy"\ngradients = {dx = 1, dW = 1, db = 1}\n'
            'reference = "solution.py:Affine"',
        )
    )
    submission = _submission(tmp_path, "decoy", extra=decoy)
    _, graded = grade_submission(str(assignment), submission)
    assert graded["score"] == 2.0, graded["output"]
    assert "dW agrees with this forward but is not the reference's gradient" in graded["output"]

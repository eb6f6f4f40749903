"""``gradverify check``: the shipped layers, a user's layer, JSON, and the command's own errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gradverify import Status
from gradverify.cli import main


def test_no_argument_checks_every_reference_layer_and_exits_0(capsys):
    assert main(["check"]) == 0
    out = capsys.readouterr().out
    assert "TwoLayerNet" in out and "Affine4D" in out
    from layers_under_test.registry import REFERENCE

    assert f"\n{len(REFERENCE)} pass\n" in out


def test_a_broken_twin_by_module_path_fails_with_the_report(capsys):
    assert main(["check", "layers_under_test.broken:AffineDbMean", "--seed", "3"]) == 1
    out = capsys.readouterr().out
    assert "AffineDbMean.backward — db disagrees with finite differences" in out
    assert "hint: analytic = 0.5 x numeric" in out
    assert "reproduce: gradverify check AffineDbMean --seed 3" in out


def test_a_users_class_with_init_and_input_shapes(capsys):
    argv = [
        "check",
        "layers_under_test.reference:Affine",
        "--init",
        "W=4,3",
        "--init",
        "b=3",
        "--input",
        "x=2,4",
    ]
    assert main(argv) == 0
    assert "PASS" in capsys.readouterr().out


def test_json_output_is_a_list_of_results(capsys):
    assert main(["check", "Sigmoid", "MulNoSwap", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert [d["status"] for d in data] == ["pass", "fail"]
    assert data[1]["tensors"][0]["rows"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["check", "NoSuchCase"], "nor a shipped case. The reference cases are MulLayer"),
        (["check", "Affin"], "Did you mean Affine"),
        (["check", "no_such_module:X"], "cannot import module 'no_such_module'"),
        (["check", "layers_under_test.reference:Nope"], "has no 'Nope'"),
    ],
)
def test_a_target_that_cannot_be_loaded_exits_3_with_one_line(argv, message, capsys):
    assert main(argv) == 3
    err = capsys.readouterr().err
    assert err.startswith("gradverify: error:") and message in err and err.count("\n") == 1


@pytest.mark.parametrize("name", ["affine", "RELU", "Mul", "mul", "BatchNorm"])
def test_shipped_cases_are_found_in_any_case_and_by_their_textbook_names(name, capsys):
    assert main(["check", name]) == 0
    assert "PASS" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["check", "layers_under_test.reference:Affine", "--input", "x=2,a"], "NAME=SHAPE"),
        (
            ["check", "layers_under_test.reference:Affine", "--input", "x=2,4"],
            "could not construct",
        ),
        (
            ["check", "layers_under_test.reference:Relu", "--init", "W=2", "--input", "x=2"],
            "could not construct",
        ),
        (["check", "Affine", "--seed", "-1"], "`seed` must be a non-negative integer"),
    ],
)
def test_bad_command_lines_exit_2_with_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("gradverify: error:") and message in err


def test_console_entry_point_runs_as_a_module():
    done = subprocess.run(
        [sys.executable, "-m", "gradverify", "check", "Relu"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "Relu" in done.stdout


def test_generated_inputs_on_a_kink_are_redrawn():
    from gradverify.cli import Job, _run, build_parser

    from .test_verdicts import AbsWithBadSubgradient

    job = Job("Abs", AbsWithBadSubgradient(), {"x": np.array([0.0, 1.0, -2.0, 0.0])})
    result = _run(job, build_parser().parse_args(["check"]))
    assert result.status is Status.PASS
    assert "redrawn 1 time(s)" in result.notes[-1]


def test_mode_flag_reaches_the_check(capsys):
    assert main(["check", "TwoLayerNet", "--mode", "fast", "--json"]) == 0
    tensors = json.loads(capsys.readouterr().out)[0]["tensors"]
    assert all("projections" in t["method"] for t in tensors)


def test_fuzzing_a_users_class_with_a_spec_file(tmp_path, capsys):
    spec = tmp_path / "spec.json"
    spec.write_text(
        json.dumps(
            {
                "dims": {"N": [1, 3], "D": [1, 3], "M": [1, 3]},
                "init": {"W": ["D", "M"], "b": ["M"]},
                "inputs": {"x": ["N", "D"]},
            }
        )
    )
    common = ["--init", "W=4,3", "--init", "b=3", "--input", "x=2,4", "--spec", str(spec)]
    assert main(["check", "layers_under_test.reference:Affine", *common, "--fuzz", "20"]) == 0
    assert "PASS 20 cases" in capsys.readouterr().out
    assert main(["check", "tests.test_fuzz:AffineDbSqueeze", *common, "--fuzz", "20"]) == 1
    out = capsys.readouterr().out
    assert "smallest failing case:" in out and "dims: N=1, D=1, M=1" in out


def test_fuzz_without_a_spec_is_a_usage_error(capsys):
    argv = ["check", "layers_under_test.reference:Relu", "--input", "x=2,3", "--fuzz", "5"]
    assert main(argv) == 2
    assert "--fuzz needs a shape spec" in capsys.readouterr().err


def test_a_module_in_the_current_directory_imports(tmp_path, monkeypatch, capsys):
    (tmp_path / "my_own_layers.py").write_text(
        "import numpy as np\n"
        "class Square:\n"
        "    def forward(self, x):\n"
        "        self.x = x\n"
        "        return x * x\n"
        "    def backward(self, dout):\n"
        "        return 2 * self.x * dout\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.path", [p for p in __import__("sys").path if p not in ("", ".")])
    assert main(["check", "my_own_layers:Square", "--input", "x=2,3"]) == 0
    assert "Square" in capsys.readouterr().out


def test_a_module_that_fails_to_import_is_one_line_with_its_own_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "broken_syntax.py").write_text(
        "class A:\n    def forward(self, x)\n        return x\n"
    )
    (tmp_path / "raises.py").write_text("raise RuntimeError('boom at import')\n")
    monkeypatch.chdir(tmp_path)
    assert main(["check", "broken_syntax:A", "--input", "x=2,2"]) == 3
    assert "raised SyntaxError: expected ':' (broken_syntax.py, line 2)" in capsys.readouterr().err
    assert main(["check", "raises.py:A", "--input", "x=2,2"]) == 3
    err = capsys.readouterr().err
    assert "raised RuntimeError: boom at import" in err and 'File "raises.py", line 1' in err


def test_a_module_importing_what_is_not_installed_names_that_import(tmp_path, monkeypatch, capsys):
    (tmp_path / "needs_torch.py").write_text("import not_installed_anywhere\nclass A: pass\n")
    monkeypatch.chdir(tmp_path)
    assert main(["check", "needs_torch.py:A", "--input", "x=2,2"]) == 3
    err = capsys.readouterr().err
    assert "No module named 'not_installed_anywhere'" in err and "Run from the directory" not in err
    assert 'File "needs_torch.py", line 1' in err
    assert "needs_torch" not in __import__("sys").modules  # nothing half-imported left behind


def test_a_target_named_by_its_file_path(tmp_path, monkeypatch, capsys):
    (tmp_path / "mine.py").write_text(
        "class Double:\n    def forward(self, x):\n        return 2 * x\n"
        "    def backward(self, dout):\n        return 2 * dout\n"
    )
    monkeypatch.chdir(tmp_path)
    assert main(["check", "./mine.py:Double", "--input", "x=2,3"]) == 0
    assert "PASS" in capsys.readouterr().out


def test_a_wrong_function_twin_is_held_against_its_reference(capsys):
    assert main(["check", "SigmoidWrongSlope"]) == 1
    out = capsys.readouterr().out
    assert "SigmoidWrongSlope.backward — forward output differs from the reference Sigmoid" in out
    assert "output: not the reference" in out  # the table's worst column


def test_reference_flag_builds_a_class_from_the_same_init_arrays(capsys, tmp_path):
    layer = tmp_path / "mylayers.py"
    layer.write_text(
        "import numpy as np\n"
        "class Scaled:\n"
        "    def __init__(self, W, b):\n"
        "        self.W, self.b, self.dW, self.db = W, b, None, None\n"
        "    def forward(self, x):\n"
        "        self.x = x\n"
        "        return 2 * (x @ self.W + self.b)\n"
        "    def backward(self, dout):\n"
        "        self.dW, self.db = 2 * self.x.T @ dout, 2 * dout.sum(axis=0)\n"
        "        return 2 * dout @ self.W.T\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        shapes = ["--init", "W=4,3", "--init", "b=3", "--input", "x=2,4"]
        argv = [
            "check",
            "mylayers:Scaled",
            *shapes,
            "--reference",
            "layers_under_test.reference:Affine",
        ]
        assert main(argv) == 1
    finally:
        sys.path.remove(str(tmp_path))
    out = capsys.readouterr().out
    assert (
        "hint: yours = 2 x the reference Affine on every element: an extra factor of 2, or a "
        "missing 1/N (N = 2)?" in out
    )
    assert "--reference layers_under_test.reference:Affine --seed 0" in out


def test_baseline_dir_writes_then_compares_and_regen_rewrites(capsys, tmp_path):
    folder = str(tmp_path / "baselines")
    assert main(["check", "Affine", "Sigmoid", "--baseline", folder]) == 1
    assert "baseline written" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "baselines").iterdir()) == [
        "Affine.npz",
        "Sigmoid.npz",
    ]
    assert main(["check", "Affine", "Sigmoid", "--baseline", folder]) == 0
    assert "all elements; vs baseline" in capsys.readouterr().out
    assert main(["check", "Affine", "--baseline", folder, "--seed", "1"]) == 1
    assert "was recorded with seed=0, this check runs with seed=1" in capsys.readouterr().out
    assert main(["check", "Affine", "--baseline", folder, "--regen"]) == 1
    assert "rewrote it (4 arrays)" in capsys.readouterr().out
    user = ["layers_under_test.reference:Affine", "--init", "W=4,3", "--init", "b=3"]
    assert main(["check", *user, "--input", "x=2,4", "--baseline", folder]) == 1
    assert (tmp_path / "baselines" / "layers_under_test.reference.Affine.npz").exists()
    assert main(["check", *user, "--input", "x=5,4", "--baseline", folder]) == 1
    assert "recorded at other shapes (x (2, 4) float64 then, (5, 4) float64 now)" in (
        capsys.readouterr().out
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--regen"], "--regen rewrites baselines: give --baseline DIR with it."),
        (["--reference", "Sigmoid", "--baseline", "b"], "give --reference or --baseline, not both"),
        (["--reference", "Sigmod"], "reference 'Sigmod' is not a shipped reference layer"),
        (["--baseline", ""], "--baseline takes a folder (one LAYER.npz per layer in it), got"),
        (["--baseline", "README.md"], "got --baseline 'README.md', a file; e.g."),
    ],
)
def test_bad_comparison_flags_exit_2(capsys, argv, message, monkeypatch):
    monkeypatch.chdir(Path(__file__).parents[1])  # where README.md is a file
    assert main(["check", "Sigmoid", *argv]) == 2
    assert message in capsys.readouterr().err


def test_the_reproduce_line_carries_every_option_that_changes_the_check(capsys):
    argv = ["check", "layers_under_test.broken:SoftmaxWithLossNoDivN", "--input", "x=3,4"]
    argv += ["--input", "t=3,4", "--nondiff", "t", "--mode", "full", "--rtol", "1e-4"]
    assert main([*argv, "--seed", "2"]) == 1
    out = capsys.readouterr().out
    line = next(x.strip() for x in out.splitlines() if x.strip().startswith("reproduce:"))
    command = line.removeprefix("reproduce: gradverify ").split()
    assert "--nondiff" in command and command[command.index("--nondiff") + 1] == "t"
    assert main(command) == 1  # the same check again: the same failure, line for line

    def untimed(text):
        return re.sub(r"\d+\.\d+ ?s\b", "", text)

    assert untimed(capsys.readouterr().out) == untimed(out)


@pytest.mark.parametrize(
    "argv",
    [
        # labels as one-hot rows or as integers: never differentiated, never N(0, 1)
        [
            "layers_under_test.reference:SoftmaxWithLoss",
            "--input",
            "x=3,4",
            "--input",
            "t=onehot:3,4",
        ],
        [
            "layers_under_test.reference:SoftmaxWithLoss",
            "--input",
            "x=3,4",
            "--input",
            "t=labels:3,classes=4",
        ],
        # integer indices, and int and float constructor arguments
        [
            "layers_under_test.reference:Embedding",
            "--init",
            "W=5,3",
            "--input",
            "idx=labels:8,classes=5",
        ],
        [
            "layers_under_test.reference:Convolution",
            "--init",
            "W=2,2,3,3",
            "--init",
            "b=2",
            "--init",
            "stride=int:2",
            "--input",
            "x=2,2,5,5",
        ],
        ["layers_under_test.reference:LeakyRelu", "--init", "alpha=float:0.2", "--input", "x=3,4"],
    ],
)
def test_inputs_with_a_domain_and_numbers_from_the_shell(argv, capsys):
    assert main(["check", *argv]) == 0, capsys.readouterr()


def test_a_spec_alone_gives_the_fixed_case(tmp_path, capsys):
    spec = {
        "dims": {"V": [3, 6], "D": [2, 4], "N": [2, 5]},
        "init": {"W": ["V", "D"]},
        "inputs": {"idx": {"shape": ["N"], "domain": "labels", "classes": "V"}},
    }
    path = tmp_path / "embedding.json"
    path.write_text(json.dumps(spec))
    assert main(["check", "layers_under_test.reference:Embedding", "--spec", str(path)]) == 0
    assert (
        main(
            [
                "check",
                "layers_under_test.broken:EmbeddingLosesRepeats",
                "--spec",
                str(path),
                "--seed",
                "1",
            ]
        )
        == 1
    )
    assert f"--spec {path}" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("t=labels:3", "say how many classes"),
        ("t=bogus:3", "NAME=DOMAIN:SHAPE"),
        ("t=onehot:0,4", "NAME=SHAPE"),
    ],
)
def test_a_malformed_input_says_the_syntax(value, message, capsys):
    argv = ["check", "layers_under_test.reference:SoftmaxWithLoss", "--input", "x=3,4"]
    assert main([*argv, "--input", value]) == 2
    assert message in capsys.readouterr().err


def test_on_a_terminal_the_table_is_drawn_by_rich_with_statuses_in_colour(capsys, monkeypatch):
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    monkeypatch.setenv("COLUMNS", "160")
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert main(["check", "Relu", "ReluNoMask"]) == 1
    out = capsys.readouterr().out
    assert "\x1b[1;32mPASS\x1b[0m" in out and "\x1b[1;31mFAIL\x1b[0m" in out
    assert "1 pass, 1 fail" in out and "ReluNoMask.backward — dx disagrees" in out


def test_off_a_terminal_the_table_is_plain_text(capsys):
    assert main(["check", "Relu"]) == 0
    out = capsys.readouterr().out
    assert "\x1b[" not in out and out.splitlines()[0].split() == [
        "layer",
        "status",
        "worst",
        "forward",
        "time",
        "checked",
    ]

"""Golden text of each kind of report, and JSON that round-trips through json."""

from __future__ import annotations

import json

import numpy as np

import gradverify
from gradverify.report import format_failure
from gradverify.results import SCHEMA_VERSION, FindingKind, Severity

from .test_checks import Affine, RaisesOnCall

CANONICAL_FAILURE = """\
Affine.backward — dW disagrees with finite differences
  W: shape (4, 3) float64 | central differences, h=6.1e-06, noise <= 7.6e-10 | seed=0
  tolerance: |analytic - numeric| <= atol + rtol*|numeric| + noise  (rtol=1e-03, atol=4e-05)
  mismatched: 12 / 12 (100.0%) | max abs err 3.5e-01 at (3, 1) | max rel err 5.000e-01
  re-estimated with smaller steps: 12 worst element(s)
         index      analytic       numeric     abs err     rel err
        (3, 1)   -3.5131e-01   -7.0261e-01   3.513e-01   5.000e-01  confirmed
        (3, 2)    3.0605e-01    6.1210e-01   3.060e-01   5.000e-01  confirmed
        (2, 1)   -2.6783e-01   -5.3567e-01   2.678e-01   5.000e-01  confirmed
        (1, 1)   -1.8436e-01   -3.6873e-01   1.844e-01   5.000e-01  confirmed
        (2, 2)    1.8080e-01    3.6160e-01   1.808e-01   5.000e-01  confirmed
        (0, 1)   -1.0089e-01   -2.0178e-01   1.009e-01   5.000e-01  confirmed
        (3, 0)    8.1279e-02    1.6256e-01   8.128e-02   5.000e-01  confirmed
        (0, 2)   -6.9707e-02   -1.3941e-01   6.971e-02   5.000e-01  confirmed
        (1, 2)    5.5545e-02    1.1109e-01   5.555e-02   5.000e-01  confirmed
        (2, 0)    5.2450e-02    1.0490e-01   5.245e-02   5.000e-01  confirmed
    ... showing 10 of 12
  hint: analytic = 0.5 x numeric on every element: a missing factor of 2, or an extra 1/N (N = 2)?
  reproduce: gradverify.check(<the same Affine>, <same inputs>, seed=0)"""


FORWARD_DIFFERENCE = """\
SigmoidWrongSlope.backward — forward output differs from the reference Sigmoid
  output: shape (2, 3) float64 | seed=0
  tolerance: |yours - reference| <= atol + rtol*|reference|  (rtol=1e-03, atol=7e-05)
  differing: 6 / 6 (100.0%) | max abs err 1.5e-01 at (1, 2) | max rel err 4.582e-01
         index         yours     reference     abs err     rel err
        (0, 0)    1.6798e-01    3.1003e-01   1.420e-01   4.582e-01
        (0, 1)    2.8225e-01    3.8541e-01   1.032e-01   2.677e-01
        (1, 2)    8.4984e-01    7.0405e-01   1.458e-01   2.071e-01
        (1, 1)    7.4396e-01    6.3026e-01   1.137e-01   1.804e-01
        (1, 0)    5.9869e-01    5.4983e-01   4.885e-02   8.885e-02
        (0, 2)    4.3373e-01    4.6672e-01   3.299e-02   7.069e-02
  note: a gradient check cannot see this: a backward consistent with a wrong forward passes it
  reproduce: gradverify.check(<the same SigmoidWrongSlope>, <same inputs>, seed=0, \
reference='Sigmoid')"""


def _half_dw_affine():
    layer = Affine(np.arange(12.0).reshape(4, 3) / 10, np.array([0.1, 0.2, 0.3]), dw_scale=0.5)
    return gradverify.check(layer, {"x": np.arange(8.0).reshape(2, 4) / 4 - 0.5})


def test_canonical_failure_message():
    assert format_failure(_half_dw_affine()) == CANONICAL_FAILURE


def test_forward_difference_message():
    from layers_under_test.broken import SigmoidWrongSlope

    x = np.arange(6.0).reshape(2, 3) / 3 - 0.8
    result = gradverify.check(SigmoidWrongSlope(), {"x": x}, reference="Sigmoid")
    assert format_failure(result).split("\n\n")[0] == FORWARD_DIFFERENCE
    lines = str(result).splitlines()
    assert lines[3:6] == [
        "  held against the reference Sigmoid:",
        "  FAIL         output     shape (2, 3) float64 | differs at (0, 0): 0.168 vs 0.31 "
        "(6 of 6)",
        "  FAIL         dx         shape (2, 3) float64 | differs at (1, 0): -0.6873 vs -0.354 "
        "(6 of 6)",
    ]


def test_summary_lists_every_gradient_then_the_failing_one():
    lines = str(_half_dw_affine()).splitlines()
    assert lines[0].startswith("Affine.backward: FAIL | seed=0 | ")
    assert lines[1] == "  checked: x, W, b"
    assert [line.split()[:2] for line in lines[2:5]] == [
        ["PASS", "dx"],
        ["FAIL", "dW"],
        ["PASS", "db"],
    ]
    assert lines[6] == "Affine.backward — dW disagrees with finite differences"


def test_error_report_shows_the_target_frame():
    layer = RaisesOnCall(np.ones((4, 3)), np.zeros(3), fail_at=1)
    text = str(gradverify.check(layer, {"x": np.ones((2, 4))}))
    assert text.splitlines()[1] == "  error: RaisesOnCall.forward raised ValueError: boom at call 1"
    assert 'File "test_checks.py"' in text


def test_json_round_trip():
    data = json.loads(json.dumps(_half_dw_affine().to_dict()))
    assert data["schema_version"] == SCHEMA_VERSION
    assert data["status"] == "fail"
    dw = data["tensors"][1]
    assert dw["grad_name"] == "dW" and dw["mismatched"] == 12 and dw["rows"][0]["index"] == [3, 1]
    # the typed kinds are written as their plain values
    assert (dw["role"], dw["checked_by"]) == ("parameter", "elements")
    assert dw["rows"][0]["outcome"] == "confirmed" and dw["rows"][0]["note"] == "confirmed"


def test_findings_are_typed_and_written_as_their_names():
    class DoutWriter:
        def forward(self, x):
            return 2 * x

        def backward(self, dout):
            dout *= 2  # writes into dout: a warning
            return dout

    result = gradverify.check(DoutWriter(), {"x": np.ones((2, 3))})
    (finding,) = result.findings
    assert (finding.kind, finding.severity) == (FindingKind.DOUT_MODIFIED, Severity.WARNING)
    assert finding.to_dict()["name"] == "dout modified"
    assert finding.to_dict()["severity"] == "warning"
    assert f"{finding.severity}: " in str(result)  # rendered as its value, not Severity.WARNING


def test_a_pass_never_shows_an_infinite_relative_error():
    class ReluWithSpecks:
        """Correct, but backward leaves rounding specks (1e-20) where the unit is off."""

        def forward(self, x):
            self.x = x
            return np.maximum(x, 0)

        def backward(self, dout):
            return np.where(self.x > 0, dout, 1e-20)

    x = np.array([[-1.0, 0.5, -2.0, 1.5]])
    result = gradverify.check(ReluWithSpecks(), {"x": x})
    assert result.status is gradverify.Status.PASS
    (dx,) = result.tensors
    assert dx.max_rel_err < 1e-6 and "inf" not in str(result)


def test_a_pass_summarizes_the_elements_it_cleared_as_within_tolerance():
    class Wiggle:  # x[1] does not move the output; a budget of 1 clears it unexamined
        def forward(self, x):
            self.x = x
            return np.array([np.sin(3e4 * x[0]), 0.0 * x[1]])

        def backward(self, dout):
            return np.array([dout[0] * 3e4 * np.cos(3e4 * self.x[0]), 9.0 * dout[1]])

    result = gradverify.check(Wiggle(), {"x": np.array([0.3, 0.7])}, max_reestimate=1)
    (dx,) = result.tensors
    assert result.status is gradverify.Status.PASS
    assert dx.margin <= 1.0 and dx.max_rel_err < 1e-6 and "inf" not in str(result)


def test_a_row_names_why_a_gradient_could_not_be_checked():
    from gradverify.report import worst_of

    class NanGradient(Affine):
        def backward(self, dout):
            dx = super().backward(dout)
            dx[0, 0] = np.nan
            return dx

    layer = NanGradient(np.ones((4, 3)), np.zeros(3))
    worst = worst_of(gradverify.check(layer, {"x": np.ones((2, 4))}))
    assert worst.reason.startswith("dx: dx is not finite at (0, 0)")

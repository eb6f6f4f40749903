"""Long checks: the estimate before, progress during, and what Ctrl-C leaves."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import gradverify
from gradverify import progress
from gradverify.errors import CheckInterrupted
from gradverify.progress import Estimate, RichBar, Tracker, watching


class SlowAffine:
    """An affine layer (without bias) whose forward takes `delay` seconds, whose dW is
    half what it should be, and whose forward call number `stop_at` is a Ctrl-C."""

    def __init__(self, W, delay=0.0, stop_at=None):
        self.W, self.delay, self.stop_at, self.calls = W, delay, stop_at, 0
        self.dW = None

    def forward(self, x):
        self.calls += 1
        if self.calls == self.stop_at:
            raise KeyboardInterrupt
        time.sleep(self.delay)
        self.x = x
        return x @ self.W

    def backward(self, dout):
        self.dW = 0.5 * self.x.T @ dout
        return dout @ self.W.T


class Recorder:
    def __init__(self):
        self.started, self.calls, self.stopped = [], 0, 0

    def start(self, estimate):
        self.started.append(estimate)

    def advance(self, calls):
        self.calls += calls

    def stop(self):
        self.stopped += 1


def test_estimate_says_calls_time_and_what_fast_mode_and_workers_would_take(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    estimate = Estimate("Conv.backward", 20_000, 1.0, fast_calls=40)
    assert estimate.describe() == (
        "~20,000 forward calls at ~1.0 s: ~5.6 h; mode='fast' takes ~40 calls; "
        "workers=2 takes ~2.8 h"
    )
    shared = Estimate("Conv.backward", 20_000, 1.0, workers=2)
    assert shared.describe() == "~20,000 forward calls at ~1.0 s on 2 workers: ~2.8 h"
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    assert Estimate("A", 30, 0.0002).describe() == "~30 forward calls at ~200 µs: ~6.0 ms"


def test_a_long_check_is_announced_with_its_cost_then_counted_call_by_call():
    rng = np.random.default_rng(0)
    layer = SlowAffine(rng.standard_normal((30, 10)), delay=0.004)
    watcher = Recorder()
    with watching(watcher):
        result = gradverify.check(layer, {"x": rng.standard_normal((2, 30))}, mode="full")
    (estimate,) = watcher.started
    assert estimate.label == "SlowAffine.backward" and estimate.fast_calls == 2 * 2 * (2 + 2)
    planned = 2 * 60 + 2 * 300 + 2 * 3  # every element of x and W, and 3 noise probes each
    assert estimate.calls == planned and estimate.seconds > progress.SHOW_AFTER
    assert planned <= watcher.calls <= result.forward_calls and watcher.stopped == 1


def test_a_short_check_shows_nothing():
    watcher = Recorder()
    rng = np.random.default_rng(0)
    with watching(watcher):
        gradverify.check(SlowAffine(rng.standard_normal((3, 2))), {"x": np.ones((2, 3))})
    assert not watcher.started and not watcher.calls


def test_the_default_prints_the_estimate_once_to_stderr(capsys, monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    tracker = Tracker()
    tracker.start(Estimate("Big.backward", 5_000, 0.01))
    tracker.advance(100)
    tracker.stop()
    assert capsys.readouterr().err == (
        "gradverify: Big.backward: ~5,000 forward calls at ~10.0 ms: ~50.0 s\n"
    )


def test_a_check_inside_a_watched_check_is_not_shown_apart():
    watcher, inner = Recorder(), Tracker()
    with watching(watcher):
        outer = Tracker()
        outer.start(Estimate("Net", 1_000, 0.01))
        inner.start(Estimate("Layer", 1_000, 0.01))
        inner.stop()
        outer.stop()
        after = Tracker()
        after.start(Estimate("Next", 1_000, 0.01))
    assert [e.label for e in watcher.started] == ["Net", "Next"]


def test_rich_bar_draws_on_a_terminal_and_clears_itself(monkeypatch):
    import rich.console

    screen = io.StringIO()
    real = rich.console.Console
    monkeypatch.setattr(
        rich.console, "Console", lambda **kw: real(file=screen, force_terminal=True, width=100)
    )
    bar = RichBar()
    bar.start(Estimate("Slow.backward", 400, 0.01))
    bar.advance(200)
    bar.stop()
    text = screen.getvalue()
    assert "~400 forward calls at ~10.0 ms: ~4.0 s" in text and "/400 calls" in text


def test_ctrl_c_keeps_what_was_found_and_restores_the_target():
    rng = np.random.default_rng(0)
    layer = SlowAffine(rng.standard_normal((50, 20)), stop_at=1_500)
    weights = layer.W.copy()
    with pytest.raises(KeyboardInterrupt) as caught:
        gradverify.check(layer, {"x": rng.standard_normal((2, 50))}, mode="full")
    assert isinstance(caught.value, CheckInterrupted)
    assert np.array_equal(layer.W, weights) and layer.dW is None
    result = caught.value.result
    assert result.status is gradverify.Status.INCONCLUSIVE and not result.passed
    dx, dW = result.tensors
    assert dx.status is gradverify.Status.PASS and dx.checked == 100
    assert dW.status is gradverify.Status.INCONCLUSIVE and 0 < dW.checked < 1_000
    assert dW.mismatched == dW.checked  # a missing factor of 2 shows in every element done
    assert "interrupted after 1,500 forward calls" in result.notes[0]
    assert f"interrupted: {dW.checked:,} of 1,000 elements estimated" in dW.notes[0]


def test_ctrl_c_in_a_long_network_check_restores_every_weight():
    from layers_under_test.reference import TwoLayerNet

    net = TwoLayerNet(20, 10, 3)
    before = {k: v.copy() for k, v in net.params.items()}
    calls = {"n": 0}
    loss = net.loss

    def interrupting(x, t):
        calls["n"] += 1
        if calls["n"] == 300:
            raise KeyboardInterrupt
        return loss(x, t)

    net.loss = interrupting
    x, t = np.random.default_rng(1).standard_normal((2, 20)), np.eye(3)[[0, 2]]
    with pytest.raises(CheckInterrupted):
        gradverify.check(net, {"x": x, "t": t}, mode="full")
    assert all(np.array_equal(net.params[k], before[k]) for k in before)


SLOW_MODULE = """
import time
import numpy as np

class Slow:
    def __init__(self):
        self.W = np.random.default_rng(0).standard_normal((40, 25))

    def forward(self, x):
        time.sleep(0.002)
        self.x = x
        return x @ self.W

    def backward(self, dout):
        self.dW = 0.5 * self.x.T @ dout
        return dout @ self.W.T

layer = Slow()
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process is POSIX")
def test_ctrl_c_on_the_command_line_prints_what_was_found_without_a_traceback(tmp_path):
    (tmp_path / "slowmod.py").write_text(textwrap.dedent(SLOW_MODULE))
    command = [sys.executable, "-m", "gradverify", "check", "./slowmod.py:layer"]
    command += ["--input", "x=2,40", "--mode", "full"]
    child = subprocess.Popen(
        command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert child.stderr is not None
    first = child.stderr.readline()  # the estimate: the check is under way
    assert "forward calls at" in first, first
    time.sleep(1.5)  # into W's 2,000 calls of 2 ms (x's 160 come first)
    os.kill(child.pid, signal.SIGINT)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 130, err
    assert "Traceback" not in err and "interrupted; the checked layers are left" in err
    assert "Slow.backward: INCONCLUSIVE" in out and "interrupted after" in out
    assert "INCONCLUSIVE dW" in out  # the gradient in progress, with what it had, if anything


class InterruptAt:
    """Raise KeyboardInterrupt on the `at`-th call of `method` of any object of `cls`."""

    def __init__(self, monkeypatch, cls, method, at):
        original, self.calls = getattr(cls, method), 0

        def counted(obj, *args, **kwargs):
            self.calls += 1
            if self.calls == at:
                raise KeyboardInterrupt
            return original(obj, *args, **kwargs)

        monkeypatch.setattr(cls, method, counted)


def test_ctrl_c_in_a_networks_diagnosis_reports_the_network_not_its_layer(monkeypatch):
    from gradverify.checks import verdict_only
    from layers_under_test import broken

    net = broken.TwoLayerNetReluNoMask(20, 10, 3)
    x, t = np.random.default_rng(1).standard_normal((2, 20)), np.eye(3)[[0, 2]]
    plain = gradverify.check(net, {"x": x, "t": t})
    assert plain.diagnosis is not None  # the diagnosis runs on this one
    before = {k: v.copy() for k, v in net.params.items()}
    counter = InterruptAt(monkeypatch, broken.ReluNoMask, "forward", 0)
    with verdict_only():
        gradverify.check(net, {"x": x, "t": t})
    network_calls, counter.calls = counter.calls, 0
    InterruptAt(monkeypatch, broken.ReluNoMask, "forward", network_calls + 50)  # in Relu1's own
    with pytest.raises(CheckInterrupted) as caught:
        gradverify.check(net, {"x": x, "t": t})
    result = caught.value.result
    assert result.label == plain.label and result.status is gradverify.Status.INCONCLUSIVE
    assert [t.grad_name for t in result.tensors] == [t.grad_name for t in plain.tensors]
    assert "interrupted while checking the network's layers alone" in result.notes[0]
    assert all(np.array_equal(net.params[k], before[k]) for k in before)


def test_ctrl_c_while_re_estimating_keeps_the_gradient_it_was_judging(monkeypatch):
    from gradverify import every_element

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(every_element, "reestimate_element", interrupted)
    rng = np.random.default_rng(0)
    layer = SlowAffine(rng.standard_normal((5, 3)))
    with pytest.raises(CheckInterrupted) as caught:
        gradverify.check(layer, {"x": rng.standard_normal((2, 5))}, mode="full")
    dx, dW = caught.value.result.tensors
    assert dx.status is gradverify.Status.PASS
    assert dW.status is gradverify.Status.INCONCLUSIVE and dW.mismatched == dW.checked == 15
    assert "15 of 15 elements estimated; none re-estimated" in dW.notes[0]


def test_ctrl_c_in_fast_mode_names_the_gradient_it_stopped_in(monkeypatch):
    from gradverify import by_projections

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(by_projections, "Probe", interrupted)
    rng = np.random.default_rng(0)
    with pytest.raises(CheckInterrupted) as caught:
        gradverify.check(
            SlowAffine(rng.standard_normal((5, 3))), {"x": np.ones((2, 5))}, mode="fast"
        )
    (dx,) = caught.value.result.tensors
    assert dx.status is gradverify.Status.INCONCLUSIVE
    assert dx.notes == ("interrupted before any element of it was compared",)


@pytest.mark.parametrize("flags", [["--json"], ["--fuzz", "3"], ["--html", "page.html"]])
def test_an_interrupted_command_line_run_outputs_what_it_found_as_asked(
    flags, monkeypatch, capsys, tmp_path
):
    from gradverify import cli
    from layers_under_test import reference

    monkeypatch.chdir(tmp_path)
    at = 1 if "--fuzz" not in flags else 60  # fuzzing: after both checks, in a drawn case
    InterruptAt(monkeypatch, reference.Relu, "forward", at if "--fuzz" in flags else 10**9)
    InterruptAt(monkeypatch, reference.Sigmoid, "forward", 30 if "--fuzz" not in flags else 10**9)
    with pytest.raises(KeyboardInterrupt):
        cli._check(cli.build_parser().parse_args(["check", "Affine", "Sigmoid", "Relu", *flags]))
    out = capsys.readouterr().out
    if "--json" in flags:
        found = json.loads(out)
        assert [r["status"] for r in found] == ["pass", "inconclusive"]
    elif "--fuzz" in flags:
        assert "Affine" in out and "Sigmoid" in out and "Relu" in out.split("\n\n")[0]
    else:
        page = (tmp_path / "page.html").read_text(encoding="utf-8")
        assert "2 check(s): 1 pass, 1 inconclusive" in page

"""Full checks shared among forked workers: the serial check's numbers, to the bit."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

import gradverify
from gradverify import Status, workers
from gradverify.errors import CheckInterrupted
from layers_under_test.registry import BROKEN, REFERENCE

pytestmark = pytest.mark.skipif(bool(workers.unavailable()), reason=workers.unavailable())


@pytest.fixture(autouse=True)
def fork_for_any_share(monkeypatch):
    """Shipped layers are fast: without this, their shares would be too small to fork for."""
    monkeypatch.setattr(workers, "MIN_SHARE_SECONDS", 0.0)


def _comparable(result):
    """Everything a check reports but its time and its reproduce lines (which name no
    workers: they do not change the numbers), recursively through a diagnosis."""
    data = result.to_dict()

    def strip(node):
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k not in ("seconds", "reproduce")}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    return strip(data)


def _check(case, count):
    rng = np.random.default_rng(3)
    target, inputs = case.build(rng), case.make_inputs(rng)
    return gradverify.check(
        target, inputs, nondiff=case.nondiff, kwargs=case.kwargs, mode="full", workers=count
    )


SAMPLE = [
    *REFERENCE,
    *[n for n in BROKEN if n.startswith(("Affine", "Relu", "TwoLayerNet", "Convolution"))][:12],
]


@pytest.mark.parametrize("name", SAMPLE)
def test_workers_give_the_serial_numbers_and_verdicts(name):
    case = REFERENCE.get(name) or BROKEN[name]
    serial = _check(case, 1)
    for count in (2, 3):
        assert _comparable(_check(case, count)) == _comparable(serial), (name, count)


class Flaky:
    """An affine layer whose forward fails only in a worker process (as a killed worker,
    a raise, or a Ctrl-C), or, with `everywhere`, on its 100th call in any process."""

    def __init__(self, how, everywhere=False):
        rng = np.random.default_rng(0)
        self.W = rng.standard_normal((12, 5))
        self.how, self.everywhere, self.home, self.calls = how, everywhere, os.getpid(), 0

    def forward(self, x):
        self.calls += 1
        in_worker = os.getpid() != self.home
        if (in_worker and not self.everywhere) or (self.everywhere and self.calls == 100):
            if self.how == "kill":
                os._exit(9)
            if self.how == "interrupt":
                raise KeyboardInterrupt
            raise RuntimeError("broken in a worker")
        self.x = x
        return x @ self.W

    def backward(self, dout):
        self.dW = self.x.T @ dout
        return dout @ self.W.T


X = np.random.default_rng(1).standard_normal((3, 12))


@pytest.mark.parametrize("how", ["kill", "raise", "interrupt"])
def test_a_worker_that_fails_has_its_share_done_by_the_checking_process(how):
    layer, before = Flaky(how), _children()
    weights = layer.W.copy()
    shared = gradverify.check(layer, {"x": X}, mode="full", workers=3)
    alone = gradverify.check(Flaky(how), {"x": X}, mode="full")
    assert shared.status is Status.PASS and _comparable(shared) == _comparable(alone)
    assert np.array_equal(layer.W, weights)
    assert _children() <= before


def test_an_error_of_the_target_is_the_same_error_as_in_one_process():
    layer, before = Flaky("raise", everywhere=True), _children()
    weights = layer.W.copy()
    shared = gradverify.check(layer, {"x": X}, mode="full", workers=2)
    alone = gradverify.check(Flaky("raise", everywhere=True), {"x": X}, mode="full")
    assert shared.status is Status.ERROR and shared.error == alone.error
    assert "broken in a worker" in shared.error
    assert np.array_equal(layer.W, weights) and _children() <= before


def test_ctrl_c_in_the_checking_process_ends_the_workers_and_restores_the_target():
    layer, before = Flaky("interrupt", everywhere=True), _children()
    weights = layer.W.copy()
    with pytest.raises(CheckInterrupted) as caught:
        gradverify.check(layer, {"x": X}, mode="full", workers=2)
    assert np.array_equal(layer.W, weights) and _children() <= before
    assert caught.value.result.status is Status.INCONCLUSIVE


def test_workers_must_be_a_positive_integer():
    with pytest.raises(gradverify.InvalidArgument, match="`workers` must be an integer >= 1"):
        gradverify.check(Flaky("raise"), {"x": X}, workers=0)


def test_the_command_line_and_pytest_take_workers(pytester):
    from gradverify.cli import main

    assert main(["check", "Affine", "--mode", "full", "--workers", "2"]) == 0
    pytester.makepyfile(
        """
        import numpy as np
        from layers_under_test.reference import Relu

        def test_relu(gradcheck):
            result = gradcheck(Relu(), {"x": np.array([[1.0, -2.0], [0.5, 3.0]])})
            assert "workers" not in result.reproduce
        """
    )
    result = pytester.runpytest("--gradverify-workers", "2", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    bad = pytester.runpytest("--gradverify-workers", "0", "-p", "no:cacheprovider")
    assert "`workers` must be an integer >= 1, got workers='0' (from the command line" in (
        bad.stderr.str()
    )


def _children() -> set[str]:
    """The processes this one forked that are left (running or unreaped): compared with
    those from before a check, since another test in this pytest worker may have left its
    own (a notebook's kernel shutting down) that the check has nothing to do with."""
    if not sys.platform.startswith("linux"):
        return set()
    me, found = str(os.getpid()), set()
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as stat:
                if stat.read().rsplit(")", 1)[1].split()[1] == me:
                    found.add(entry)
        except (OSError, IndexError):
            continue
    return found

"""Checks held against a reference or a baseline: false differences, detection, cost.

Part 1, false differences: every shipped reference layer held against a fresh build of
itself with other weights (the target's are copied in), over `SEEDS` seeds; and three
correct alternative formulas (sigmoid via tanh, softmax via log-softmax, softmax
cross-entropy via log-sum-exp) against the shipped layers, with inputs scaled by 1, 3
and 10 (large logits are where the book's ``log(y + 1e-7)`` departs).  FAIL is a
false difference (target 0); ERROR is the reference refuted by its own gradient check.

Part 2, detection: every wrong-function twin against its reference (target: caught on
every seed), and the smallest relative error of forward (the output times ``1 + e``,
backward to match, so that the gradient check passes it) that the comparison catches
on every seed, per parameter-free or Affine-like shipped layer.

Part 3, cost: a check held against a reference, and against a baseline, over the plain
check of the same case, best of `REPEATS`, in one process.

    python bench/regression.py           # a few minutes on 2 cores
    python bench/regression.py --quick   # fewer seeds
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from typing import Any

import numpy as np

import gradverify
from gradverify import Status
from layers_under_test.alternatives import SigmoidViaTanh, SoftmaxViaLog, SoftmaxWithLossLogSumExp
from layers_under_test.registry import REFERENCE, WRONG_FUNCTION, LayerCase

QUICK = "--quick" in sys.argv
SEEDS = 20 if QUICK else 200
SWEEP_SEEDS = 10 if QUICK else 50
REPEATS = 5
ERRORS = (1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4)


def held(case: LayerCase, seed: int, reference: Any, target: Any = None) -> gradverify.CheckResult:
    rng = np.random.default_rng(seed)
    built, inputs = case.build(rng), case.make_inputs(rng)
    return gradverify.check(
        built if target is None else target(built),
        inputs,
        nondiff=case.nondiff,
        kwargs=case.kwargs,
        seed=seed,
        reference=reference(seed) if callable(reference) else reference,
    )


# ---------------------------------------------------------------- part 1: false differences


ALTERNATIVES = (
    ("SigmoidViaTanh", SigmoidViaTanh, "Sigmoid"),
    ("SoftmaxViaLog", SoftmaxViaLog, "Softmax"),
    ("SoftmaxWithLossLogSumExp", SoftmaxWithLossLogSumExp, "SoftmaxWithLoss"),
)


def false_differences() -> None:
    print(f"{'layer (against)':<44} {'false FAIL':>10} {'ERROR':>9}")
    print(f"{'':<44} {'':>10} (the reference refuted by its own check)")
    for name, case in REFERENCE.items():
        statuses = [
            held(case, seed, lambda s, c=case: c.build(np.random.default_rng(s + 10**6))).status
            for seed in range(SEEDS)
        ]
        _row(f"{name} (a fresh one)", statuses)
    for name, cls, shipped in ALTERNATIVES:
        case = REFERENCE[shipped]
        for scale in (1, 3, 10):
            statuses = []
            for seed in range(SEEDS):
                inputs = case.make_inputs(np.random.default_rng(seed))
                inputs["x"] = scale * inputs["x"]
                result = gradverify.check(
                    cls(), inputs, nondiff=case.nondiff, seed=seed, reference=shipped
                )
                statuses.append(result.status)
            _row(f"{name} x{scale} ({shipped})", statuses)


def _row(label: str, statuses: list[Status]) -> None:
    fails = sum(s is Status.FAIL for s in statuses)
    errors = sum(s is Status.ERROR for s in statuses)
    print(f"{label:<44} {fails:>5}/{len(statuses):<4} {errors:>4}/{len(statuses):<4}", flush=True)


# ---------------------------------------------------------------- part 2: detection


class ScaledForward:
    """A layer whose forward is ``factor`` times the wrapped one's, backward to match."""

    def __init__(self, layer: Any, factor: float) -> None:
        self.layer, self.factor = layer, factor

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.factor * self.layer.forward(*args, **kwargs)

    def backward(self, dout: Any) -> Any:
        return self.layer.backward(self.factor * dout)


def _same_build(case: LayerCase) -> Any:
    """The reference built from the same seed: its weights hold the target's values."""
    return lambda seed: case.build(np.random.default_rng(seed))


def detection() -> None:
    print(f"{'wrong-function twin':<32} {'caught':>10}")
    for name, case in WRONG_FUNCTION.items():
        caught = [held(case, seed, case.reference).status is Status.FAIL for seed in range(SEEDS)]
        print(f"{name:<32} {sum(caught):>5}/{SEEDS:<4}", flush=True)
    print()
    print(f"{'forward scaled by 1 + e':<32} {'smallest caught':>16}")
    for name, case in REFERENCE.items():
        held_constants = set(case.nondiff) - set(case.make_inputs(np.random.default_rng(0)))
        if hasattr(case.target, "gradient") or name.startswith("SoftmaxWithLoss") or held_constants:
            continue  # a network's loss is no layer call; the book's loss ignores dout; the
            # wrapper does not hold the running statistics a test-mode BatchNorm reads
        caught = None
        for error in ERRORS:
            statuses = [
                held(case, s, _same_build(case), lambda t, e=error: ScaledForward(t, 1 + e))
                for s in range(SWEEP_SEEDS)
            ]
            if not all(r.comparisons and r.comparisons[0].status is Status.FAIL for r in statuses):
                break
            caught = error
        print(f"{name:<32} {'none' if caught is None else f'{caught:.0e}':>16}", flush=True)
    print(f"(caught = the output FAILs on all {SWEEP_SEEDS} seeds)")


# ---------------------------------------------------------------- part 3: cost


def _best(run: Any) -> float:
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def _ratios(name: str, case: LayerCase, folder: str) -> tuple[float, float, float]:
    """Seconds of the plain check; reference and baseline checks as ratios of it."""
    rng = np.random.default_rng(0)
    target, inputs = case.build(rng), case.make_inputs(rng)
    trusted = case.build(np.random.default_rng(1))
    path = f"{folder}/{name}.npz"
    options: dict[str, Any] = {"nondiff": case.nondiff, "kwargs": case.kwargs}
    gradverify.check(target, inputs, baseline=path, **options)  # writes it
    plain = _best(lambda: gradverify.check(target, inputs, **options))
    against = _best(lambda: gradverify.check(target, inputs, reference=trusted, **options))
    stored = _best(lambda: gradverify.check(target, inputs, baseline=path, **options))
    return plain, against / plain, stored / plain


def cost() -> None:
    print(f"{'layer':<32} {'plain':>9} {'reference':>10} {'baseline':>9}")
    reference_ratios, baseline_ratios = [], []
    with tempfile.TemporaryDirectory() as folder:
        for name, case in REFERENCE.items():
            plain, against, stored = _ratios(name, case, folder)
            reference_ratios.append(against)
            baseline_ratios.append(stored)
            print(f"{name:<32} {plain * 1e3:>7.2f}ms {against:>9.2f}x {stored:>8.2f}x", flush=True)
    print(
        f"median: reference {statistics.median(reference_ratios):.2f}x, baseline "
        f"{statistics.median(baseline_ratios):.2f}x the plain check"
    )


if __name__ == "__main__":
    false_differences()
    print()
    detection()
    print()
    cost()

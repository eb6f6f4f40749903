"""Full check of TwoLayerNet(784, 50, 10) on a batch of 3 against the bare loop it needs.

A black-box checker must call the loss twice per parameter element (central
differences); the bare loop below does exactly that and nothing else.  The ratio
of the two times is what gradverify's bookkeeping costs.  Both are measured in
the same run, alternating, best of `REPEATS`, so that a noisy machine affects both.

    python bench/full_check.py
"""

from __future__ import annotations

import time

import numpy as np

import gradverify
from layers_under_test.reference import TwoLayerNet

REPEATS = 3


def bare_loop(net: TwoLayerNet, x: np.ndarray, t: np.ndarray) -> int:
    """2n loss evaluations with in-place perturbation, the textbook's numerical_gradient."""
    calls = 0
    for array in net.params.values():
        flat = array.reshape(-1)
        for i in range(flat.size):
            original = flat[i]
            flat[i] = original + 1e-5
            net.loss(x, t)
            flat[i] = original - 1e-5
            net.loss(x, t)
            flat[i] = original
            calls += 2
    return calls


def main() -> None:
    rng = np.random.default_rng(0)
    net = TwoLayerNet(784, 50, 10, rng=rng)
    x = rng.standard_normal((3, 784))
    t = np.eye(10)[[1, 4, 7]]
    bare_times, check_times = [], []
    for _ in range(REPEATS):
        started = time.perf_counter()
        bare_calls = bare_loop(net, x, t)
        bare_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        result = gradverify.check(net, {"x": x, "t": t}, mode="full")
        check_times.append(time.perf_counter() - started)
    assert result.status is gradverify.Status.PASS, str(result)
    bare, full = min(bare_times), min(check_times)
    print(f"TwoLayerNet(784, 50, 10), batch 3, best of {REPEATS}")
    print(f"  bare loop : {bare:7.3f} s  {bare_calls} forward calls")
    print(f"  full check: {full:7.3f} s  {result.forward_calls} forward calls")
    print(f"  ratio     : {full / bare:.3f}  (target <= 1.10)")


if __name__ == "__main__":
    main()

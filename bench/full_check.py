"""Full check of TwoLayerNet(784, 50, 10) on a batch of 3 against the bare loop it needs.

A black-box checker must call the loss twice per parameter element (central
differences); the bare loop below does exactly that and nothing else.  The ratio
of the two times is what gradverify's bookkeeping costs.  With ``workers=2`` the
elements are shared between two forked processes; its anchor is the same bare loop
split over two processes.  All four are measured in the same run, in rotating order,
best of `REPEATS`, so that a noisy machine affects each alike; the two checks must
report the same numbers.

    python bench/full_check.py
"""

from __future__ import annotations

import os
import time

import numpy as np

import gradverify
from layers_under_test.reference import TwoLayerNet

REPEATS = 3


def bare_loop(net: TwoLayerNet, x: np.ndarray, t: np.ndarray) -> int:
    """2n loss evaluations with in-place perturbation, the textbook's numerical_gradient."""
    elements = _elements(net)
    _differences(net, x, t, elements)
    return 2 * len(elements)


def split_loop(net: TwoLayerNet, x: np.ndarray, t: np.ndarray) -> int:
    """The bare loop with its elements split in two halves: this process and a fork of it."""
    elements = _elements(net)
    half = len(elements) // 2
    pid = os.fork()
    _differences(net, x, t, elements[half:] if pid == 0 else elements[:half])
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return 2 * len(elements)


def _elements(net: TwoLayerNet) -> list[tuple[np.ndarray, int]]:
    return [(a.reshape(-1), i) for a in net.params.values() for i in range(a.size)]


def _differences(
    net: TwoLayerNet, x: np.ndarray, t: np.ndarray, elements: list[tuple[np.ndarray, int]]
) -> None:
    for flat, i in elements:
        original = flat[i]
        flat[i] = original + 1e-5
        net.loss(x, t)
        flat[i] = original - 1e-5
        net.loss(x, t)
        flat[i] = original


def main() -> None:
    rng = np.random.default_rng(0)
    net = TwoLayerNet(784, 50, 10, rng=rng)
    x = rng.standard_normal((3, 784))
    t = np.eye(10)[[1, 4, 7]]
    runs = {
        "bare": lambda: bare_loop(net, x, t),
        "split": lambda: split_loop(net, x, t),
        "full": lambda: gradverify.check(net, {"x": x, "t": t}, mode="full"),
        "workers": lambda: gradverify.check(net, {"x": x, "t": t}, mode="full", workers=2),
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    done: dict[str, object] = {}
    order = list(runs)
    for repeat in range(REPEATS):
        for name in order[repeat:] + order[:repeat]:
            started = time.perf_counter()
            done[name] = runs[name]()
            times[name].append(time.perf_counter() - started)
    full, shared = done["full"], done["workers"]
    assert isinstance(full, gradverify.CheckResult) and isinstance(shared, gradverify.CheckResult)
    assert full.status is gradverify.Status.PASS, str(full)
    same = _numbers(full) == _numbers(shared)
    best = {name: min(spent) for name, spent in times.items()}
    bare = best["bare"]
    print(f"TwoLayerNet(784, 50, 10), batch 3, best of {REPEATS}, order rotated")
    print(f"  bare loop          : {bare:7.3f} s  {done['bare']} forward calls")
    print(
        f"  bare loop, 2 procs : {best['split']:7.3f} s  ({best['split'] / bare:.3f}x, the anchor)"
    )
    print(f"  full check         : {best['full']:7.3f} s  {full.forward_calls} forward calls")
    print(f"  full, workers=2    : {best['workers']:7.3f} s  {shared.forward_calls} forward calls")
    print(f"  ratio, full        : {best['full'] / bare:.3f}  (target <= 1.10)")
    print(f"  ratio, workers=2   : {best['workers'] / bare:.3f}  (target <= 0.60)")
    print(f"  same numbers as one process: {same}")


def _numbers(result: gradverify.CheckResult) -> dict[str, object]:
    data = result.to_dict()
    data.pop("seconds")
    data.pop("reproduce")
    return data


if __name__ == "__main__":
    main()

"""Issue 13's table in one run: each speed and memory measure against its anchor and goal.

Rows, all measured here and now (medians or bests of repeated runs, order rotated
where two things are compared, so that the machine's load falls on both):

* a full check of ``TwoLayerNet(784, 50, 10)``, batch 3, with ``workers=2``, against
  the bare one-process loop of 2n loss calls; anchor: that loop split over two
  processes (`full_check.py`);
* a fast-mode verdict on the same network, in forward-pass equivalents (its time over
  one ``net.loss``); anchor: ``torch.autograd.gradcheck(fast_mode=True)`` on the same
  function written in torch, when torch is installed (the row says so when not);
* a small check (``Affine`` 4x3), against the time of the forward calls it makes;
* what loading the pytest plugin costs a session (`startup.py`);
* the peak memory of a fast-mode check of ``Affine`` 1000x1000 (tracemalloc), in
  multiples of ``W``, beyond the gradients the layer's own backward allocates.

    python bench/speed.py
"""

from __future__ import annotations

import statistics
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np
from full_check import bare_loop, split_loop
from startup import _import_cost

import gradverify
from layers_under_test.reference import Affine, TwoLayerNet

ROWS: list[tuple[str, str, str, str, bool | None]] = []


def median_time(action: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def row(measure: str, now: str, anchor: str, goal: str, met: bool | None) -> None:
    ROWS.append((measure, now, anchor, goal, met))


def full_with_workers(net: TwoLayerNet, x: np.ndarray, t: np.ndarray) -> None:
    runs: dict[str, Callable[[], Any]] = {
        "bare": lambda: bare_loop(net, x, t),
        "split": lambda: split_loop(net, x, t),
        "workers": lambda: gradverify.check(net, {"x": x, "t": t}, mode="full", workers=2),
    }
    best = {name: float("inf") for name in runs}
    order = list(runs)
    for repeat in range(3):
        for name in order[repeat:] + order[:repeat]:
            started = time.perf_counter()
            runs[name]()
            best[name] = min(best[name], time.perf_counter() - started)
    ratio = best["workers"] / best["bare"]
    row(
        "full check, workers=2",
        f"{ratio:.3f}x the bare loop ({best['workers']:.2f} s)",
        f"loop over 2 processes: {best['split'] / best['bare']:.3f}x",
        "<= 0.60x",
        ratio <= 0.60,
    )


def fast_verdict(net: TwoLayerNet, x: np.ndarray, t: np.ndarray) -> None:
    loss = median_time(lambda: net.loss(x, t), 200)
    result = gradverify.check(net, {"x": x, "t": t}, mode="fast")
    fast = median_time(lambda: gradverify.check(net, {"x": x, "t": t}, mode="fast"), 31)
    equivalents = fast / loss
    anchor = _torch_fast_gradcheck(net, x, t)
    row(
        "fast-mode verdict",
        f"{fast * 1e3:.2f} ms, {result.forward_calls} calls: {equivalents:.0f} equivalents",
        anchor
        if isinstance(anchor, str)
        else f"torch gradcheck fast: {anchor * 1e3:.2f} ms, {anchor / loss:.0f} equivalents",
        "<= 25 equivalents",
        equivalents <= 25,
    )


def _torch_fast_gradcheck(net: TwoLayerNet, x: np.ndarray, t: np.ndarray) -> float | str:
    try:
        import torch
    except ImportError as missing:  # the row says why there is no anchor
        return f"no torch ({type(missing).__name__}: {missing})"
    names = ("W1", "b1", "W2", "b2")
    params = tuple(
        torch.tensor(net.params[n], dtype=torch.float64, requires_grad=True) for n in names
    )
    inputs, labels = torch.tensor(x), torch.tensor(t)

    def loss(w1: Any, b1: Any, w2: Any, b2: Any) -> Any:
        scores = torch.relu(inputs @ w1 + b1) @ w2 + b2
        return -(labels * torch.log_softmax(scores, dim=1)).sum() / inputs.shape[0]

    check = torch.autograd.gradcheck
    assert check(loss, params, fast_mode=True)
    return median_time(lambda: check(loss, params, fast_mode=True), 31)


def small_check() -> None:
    rng = np.random.default_rng(0)
    layer = Affine(rng.standard_normal((4, 3)), rng.standard_normal(3))
    x = rng.standard_normal((2, 4))
    result = gradverify.check(layer, {"x": x})
    check = median_time(lambda: gradverify.check(layer, {"x": x}), 301)
    forward = median_time(lambda: layer.forward(x), 2001)
    calls = result.forward_calls * forward
    row(
        "small check (Affine 4x3)",
        f"{check * 1e3:.2f} ms",
        f"its {result.forward_calls} forward calls: {calls * 1e3:.3f} ms",
        "<= 0.4 ms",
        check <= 0.4e-3,
    )


def startup() -> None:
    cost = statistics.median(_import_cost() for _ in range(5))
    row(
        "plugin load, no fixture used",
        f"{cost * 1e3:.1f} ms",
        "pytest-regressions: lazy",
        "<= 10 ms",
        cost <= 0.010,
    )


def memory() -> None:
    rng = np.random.default_rng(0)
    layer = Affine(rng.standard_normal((1000, 1000)), rng.standard_normal(1000))
    x = rng.standard_normal((4, 1000))
    gradverify.check(layer, {"x": x}, mode="fast")
    tracemalloc.start()
    gradverify.check(layer, {"x": x}, mode="fast")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    own = layer.W.nbytes + layer.b.nbytes  # the dW, db the layer's own backward makes
    ratio = (peak - own) / layer.W.nbytes
    row(
        "peak memory, fast mode, 1000x1000",
        f"{ratio:.2f}x W beyond the layer's dW, db ({peak / layer.W.nbytes:.2f}x in all)",
        "-",
        "<= 4x",
        ratio <= 4,
    )


def main() -> None:
    rng = np.random.default_rng(0)
    net = TwoLayerNet(784, 50, 10, rng=rng)
    x = rng.standard_normal((3, 784))
    t = np.eye(10)[[1, 4, 7]]
    full_with_workers(net, x, t)
    fast_verdict(net, x, t)
    small_check()
    startup()
    memory()
    widths = [max(len(r[i]) for r in ROWS) for i in range(4)]
    for measure, now, anchor, goal, met in ROWS:
        verdict = "met" if met else "NOT met"
        print(
            f"{measure:<{widths[0]}} | {now:<{widths[1]}} | {anchor:<{widths[2]}} | "
            f"{goal:<{widths[3]}} | {verdict}"
        )


if __name__ == "__main__":
    main()

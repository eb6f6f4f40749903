"""Fast mode on TwoLayerNet(784, 50, 10), batch 3: verdict cost, and localizing one wrong element.

Prints, measured in one run (best of `REPEATS`):
* the time of a fast-mode check, of a full check, and of one loss evaluation and
  one ``gradient()`` call, and the fast check in forward-pass equivalents
  (target: under 100);
* the forward calls fast mode spends to name a single wrong element of W1
  (target: under 40 for the localization), split into the recheck, the
  bisection and the ladder that then confirms the element.

    python bench/fast_mode.py
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

import gradverify
from gradverify.numerics import LADDER_LEVELS
from layers_under_test.reference import TwoLayerNet

REPEATS = 7
WRONG_INDEX = (300, 7)


class OneWrongElement(TwoLayerNet):
    """A network whose gradient is off in one element of W1 (by 5e-2, ~10x a typical entry)."""

    def gradient(self, x: np.ndarray, t: np.ndarray) -> dict[str, np.ndarray]:
        grads = super().gradient(x, t)
        grads["W1"] = grads["W1"].copy()
        grads["W1"][WRONG_INDEX] += 5e-2
        return grads


def best_time(action: Callable[[], object]) -> float:
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    rng = np.random.default_rng(0)
    net = TwoLayerNet(784, 50, 10, rng=rng)
    x, t = rng.standard_normal((3, 784)), np.eye(10)[[1, 4, 7]]
    data = {"x": x, "t": t}
    loss = best_time(lambda: [net.loss(x, t) for _ in range(100)]) / 100
    gradient = best_time(lambda: [net.gradient(x, t) for _ in range(100)]) / 100
    fast = best_time(lambda: gradverify.check(net, data, mode="fast"))
    full = best_time(lambda: gradverify.check(net, data, mode="full"))
    passing = gradverify.check(net, data, mode="fast")
    print("TwoLayerNet(784, 50, 10), batch 3")
    print(f"  one loss() : {loss * 1e6:8.1f} us   one gradient(): {gradient * 1e6:8.1f} us")
    print(f"  fast check : {fast * 1e3:8.2f} ms  {passing.forward_calls} forward calls")
    print(f"  full check : {full * 1e3:8.2f} ms  ({full / fast:.0f}x the fast check)")
    print(f"  fast check = {fast / loss:.0f} forward-pass equivalents (target < 100)")

    wrong = OneWrongElement(784, 50, 10, rng=np.random.default_rng(0))
    caught = gradverify.check(wrong, data, mode="fast")
    clean = gradverify.check(net, data, mode="fast")
    w1 = next(r for r in caught.tensors if r.name == "params['W1']")
    extra = caught.forward_calls - clean.forward_calls
    ladder = 1 + 2 * LADDER_LEVELS  # numerics.reestimate: the centre and two calls a rung
    print(
        f"single wrong element of W1 at {WRONG_INDEX}: {w1.status.name}, named "
        f"{[row.index for row in w1.rows]}"
    )
    print(
        f"  extra forward calls: {extra} = {extra - ladder} to localize "
        f"(recheck + bisection; target < 40) + {ladder} to confirm on the ladder"
    )


if __name__ == "__main__":
    main()

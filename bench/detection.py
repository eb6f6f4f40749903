"""Detection power and false failures of the default check on every reference layer.

For each shipped reference case:
* the false-failure rate: the correct layer over `CLEAN_SEEDS` seeds (FAIL and
  INCONCLUSIVE counted separately; target 0 FAIL);
* the smallest relative scaling error of backward (every gradient times 1 + e)
  caught on every one of `SWEEP_SEEDS` seeds (target: 1% caught on every layer).

    python bench/detection.py            # 1,000 clean seeds per layer, about a minute
    python bench/detection.py --quick    # 100
"""

from __future__ import annotations

import sys

import numpy as np

import gradverify
from gradverify import Status
from gradverify.mutation import scaled_adapter
from layers_under_test.registry import REFERENCE, LayerCase

CLEAN_SEEDS = 1000
SWEEP_SEEDS = 50
ERRORS = (1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4)


def verdict(case: LayerCase, seed: int, error: float = 0.0) -> Status:
    rng = np.random.default_rng(seed)
    target, inputs = case.build(rng), case.make_inputs(rng)
    adapter = (
        scaled_adapter(target, list(inputs.values()), case.kwargs, 1 + error) if error else None
    )
    return gradverify.check(
        target, inputs, nondiff=case.nondiff, kwargs=case.kwargs, seed=seed, adapter=adapter
    ).status


def smallest_caught(case: LayerCase) -> float | None:
    caught = None
    for error in ERRORS:
        if any(verdict(case, seed, error) is not Status.FAIL for seed in range(SWEEP_SEEDS)):
            break
        caught = error
    return caught


def main() -> None:
    clean_seeds = 100 if "--quick" in sys.argv else CLEAN_SEEDS
    print(f"{'layer':<26} {'false FAIL':>10} {'INCONCL.':>9} {'smallest caught':>16}")
    for name, case in REFERENCE.items():
        statuses = [verdict(case, seed) for seed in range(clean_seeds)]
        fails = sum(s is Status.FAIL for s in statuses)
        inconclusive = sum(s is Status.INCONCLUSIVE for s in statuses)
        caught = smallest_caught(case)
        shown = "none of the sweep" if caught is None else f"{caught:.0e}"
        print(
            f"{name:<26} {fails:>5}/{clean_seeds:<4} {inconclusive:>5}/{clean_seeds:<4} {shown:>16}"
        )
    print(
        f"(caught = FAIL on all {SWEEP_SEEDS} seeds; sweep {', '.join(f'{e:g}' for e in ERRORS)})"
    )


if __name__ == "__main__":
    main()

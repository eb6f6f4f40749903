"""Detection power and false failures of the default check and of fast mode.

Part 1, every shipped reference case at its registry shape, default settings:
* false failures over `CLEAN_SEEDS` seeds of the correct layer (FAIL and
  INCONCLUSIVE counted separately; target 0 FAIL);
* the smallest relative scaling error of backward (every gradient times 1 + e)
  caught on every one of `SWEEP_SEEDS` seeds (target: 1% on every layer).

Part 2, every shipped layer at a size above 4,096 elements in one gradient:
* the smallest error confined to one row, one column, one border (and, for the
  Embedding, to the rows of repeated indices) that the default mode and
  ``mode="fast"`` catch on every seed (`CONFINED_SEEDS` seeds each): the
  structure's gradient times ``1 + e``, on seeds where it is live (see `LIVE`: a
  ReLU unit dead on the batch has no gradient to get wrong);
* false failures of ``mode="fast"`` on the correct layers over `FAST_CLEAN_SEEDS` seeds.

    python bench/detection.py            # about an hour on 2 cores
    python bench/detection.py --quick    # fewer seeds, a few minutes
    (--registry-only, --large-only: one part)
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import gradverify
from gradverify import Status
from gradverify.adapters import resolve_adapter
from gradverify.mutation import confined_adapter, scaled_adapter
from layers_under_test import reference
from layers_under_test.registry import REFERENCE, LayerCase, multi_layer_net_full

QUICK = "--quick" in sys.argv
CLEAN_SEEDS = 100 if QUICK else 1000
SWEEP_SEEDS = 10 if QUICK else 50
CONFINED_SEEDS = 3 if QUICK else 10
FAST_CLEAN_SEEDS = 20 if QUICK else 200
ERRORS = (1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4)
CONFINED_ERRORS = (1.0, 3e-1, 1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4)


# ---------------------------------------------------------------- part 1: registry shapes


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


def registry_shapes() -> None:
    print(f"{'layer':<32} {'false FAIL':>10} {'INCONCL.':>9} {'smallest caught':>16}")
    for name, case in REFERENCE.items():
        statuses = [verdict(case, seed) for seed in range(CLEAN_SEEDS)]
        fails = sum(s is Status.FAIL for s in statuses)
        inconclusive = sum(s is Status.INCONCLUSIVE for s in statuses)
        caught = smallest_caught(case)
        shown = "none of the sweep" if caught is None else f"{caught:.0e}"
        print(
            f"{name:<32} {fails:>5}/{CLEAN_SEEDS:<4} {inconclusive:>5}/{CLEAN_SEEDS:<4} "
            f"{shown:>16}",
            flush=True,
        )
    print(
        f"(caught = FAIL on all {SWEEP_SEEDS} seeds; sweep {', '.join(f'{e:g}' for e in ERRORS)})"
    )


# ---------------------------------------------------------------- part 2: large, confined


@dataclass(frozen=True)
class Large:
    """A shipped layer at a size where one gradient has over 4,096 elements."""

    name: str
    make: Callable[[np.random.Generator], tuple[Any, dict[str, Any]]]
    grad_key: int | str  # which gradient to corrupt: an input's position or a weight's name
    nondiff: tuple[str, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    structures: tuple[str, ...] = ("row", "column", "border")


def _onehot(rng: np.random.Generator, n: int, classes: int) -> np.ndarray:
    return np.eye(classes)[rng.integers(0, classes, size=n)]


def _net(rng: np.random.Generator) -> tuple[Any, dict[str, Any]]:
    net = reference.TwoLayerNet(784, 50, 10, 0.01, rng)
    return net, {"x": rng.standard_normal((3, 784)), "t": _onehot(rng, 3, 10)}


def _extend(rng: np.random.Generator) -> tuple[Any, dict[str, Any]]:
    np.random.seed(int(rng.integers(2**31)))  # the book's networks draw from np.random
    net = multi_layer_net_full(100, 50, 10, 2)
    return net, {"x": rng.standard_normal((4, 100)), "t": _onehot(rng, 4, 10)}


def _x(*shape: int) -> Callable[[np.random.Generator], dict[str, Any]]:
    return lambda rng: {"x": rng.standard_normal(shape)}


LARGE = (
    Large(
        "MulLayer",
        lambda r: (reference.MulLayer(), _x(100, 100)(r) | {"y": _x(100, 100)(r)["x"]}),
        0,
    ),
    Large(
        "AddLayer",
        lambda r: (reference.AddLayer(), _x(100, 100)(r) | {"y": _x(100, 100)(r)["x"]}),
        0,
    ),
    Large("Relu", lambda r: (reference.Relu(), _x(100, 100)(r)), 0),
    Large("Sigmoid", lambda r: (reference.Sigmoid(), _x(100, 100)(r)), 0),
    Large(
        "Affine",
        lambda r: (
            reference.Affine(r.standard_normal((100, 100)), r.standard_normal(100)),
            _x(50, 100)(r),
        ),
        "W",
    ),
    Large(
        "SoftmaxWithLoss",
        lambda r: (reference.SoftmaxWithLoss(), _x(100, 50)(r) | {"t": _onehot(r, 100, 50)}),
        0,
        nondiff=("t",),
    ),
    Large("TwoLayerNet", _net, "params['W1']", nondiff=("x", "t")),
    Large(
        "Dropout", lambda r: (reference.Dropout(), _x(100, 100)(r)), 0, kwargs={"train_flg": True}
    ),
    Large(
        "BatchNormalization",
        lambda r: (
            reference.BatchNormalization(r.standard_normal(50), r.standard_normal(50)),
            _x(100, 50)(r),
        ),
        0,
        kwargs={"train_flg": True},
    ),
    Large(
        "Convolution",
        lambda r: (
            reference.Convolution(r.standard_normal((4, 3, 3, 3)), r.standard_normal(4), 1, 1),
            _x(2, 3, 32, 32)(r),
        ),
        0,
    ),
    Large("Pooling", lambda r: (reference.Pooling(2, 2, 2), _x(2, 3, 32, 32)(r)), 0),
    Large(
        "Embedding",
        lambda r: (
            reference.Embedding(r.standard_normal((1000, 8))),
            {"idx": r.integers(0, 1000, 300)},
        ),
        "params[0]",
        nondiff=("idx",),
        structures=("repeats",),
    ),
    Large(
        "MultiLayerNetExtend",
        _extend,
        "params['W1']",
        nondiff=("x", "t"),
        kwargs={"train_flg": True},
    ),
)


def mask(structure: str, shape: tuple[int, ...], inputs: dict[str, Any]) -> np.ndarray:
    """Where a confined bug lives: the last row or column of the last two axes, their border,
    or the rows of an embedding table that the batch indexes more than once."""
    where = np.zeros(shape, dtype=bool)
    if structure == "row":
        where[..., -1, :] = True
    elif structure == "column":
        where[..., -1] = True
    elif structure == "border":
        where[..., [0, -1], :] = True
        where[..., [0, -1]] = True
    else:  # repeats
        values, counts = np.unique(inputs["idx"], return_counts=True)
        where[values[counts > 1]] = True
    return where


def confined_check(large: Large, seed: int, structure: str, error: float, mode: str) -> Status:
    target, inputs = large.make(np.random.default_rng(seed))
    shape = _gradient_shape(target, inputs, large.grad_key)
    adapter = confined_adapter(
        target,
        list(inputs.values()),
        large.kwargs,
        large.grad_key,
        mask(structure, shape, inputs),
        1 + error,
    )
    return gradverify.check(
        target,
        inputs,
        nondiff=large.nondiff,
        kwargs=large.kwargs,
        seed=seed,
        mode=mode,
        adapter=adapter,
    ).status


def _gradient_shape(target: Any, inputs: dict[str, Any], key: int | str) -> tuple[int, ...]:
    if isinstance(key, int):
        return tuple(list(inputs.values())[key].shape)
    from gradverify.objects import lookup

    return tuple(lookup(target, key).shape)


#: A structure counts as live when its gradient's RMS is at least this fraction of the
#: whole gradient's: a ReLU unit active for one sample of the batch carries a gradient
#: so small that an error in it is below every tolerance (the per-element ``atol`` is a
#: tenth of ``rtol`` times the tensor's largest element), in full mode too.
LIVE = 0.1


def live_seeds(large: Large, structure: str) -> list[int]:
    """The first `CONFINED_SEEDS` seeds on which the structure's gradient is live."""
    found: list[int] = []
    seed = 0
    while len(found) < CONFINED_SEEDS:
        target, inputs = large.make(np.random.default_rng(seed))
        args = list(inputs.values())
        view = resolve_adapter(target, args, large.kwargs)
        value = _gradient(view, args, large.grad_key)
        array = np.asarray(value, dtype=np.float64)
        inside = array[mask(structure, array.shape, inputs)]
        if inside.size and _rms(inside) >= LIVE * _rms(array):
            found.append(seed)
        seed += 1
    return found


def _rms(values: np.ndarray) -> float:
    return float(np.sqrt(np.mean(values**2)))


def _gradient(view: Any, args: list[Any], key: int | str) -> Any:
    outputs = view.forward(args)
    dout = np.ones_like(np.asarray(outputs, dtype=np.float64))
    gradients = view.backward(args, dout)
    if isinstance(key, int):
        return gradients.inputs[key]
    return gradients.params.get(
        key, next(s.read_gradient() for s in view.parameters(None) if s.name == key)
    )


def smallest_confined(large: Large, structure: str, mode: str) -> float | None:
    """The smallest error of the sweep caught on every live seed, searched from where each
    mode is expected to land (detection is monotone in the size of the error)."""
    seeds = live_seeds(large, structure)

    def caught(error: float) -> bool:
        return all(
            confined_check(large, seed, structure, error, mode) is Status.FAIL for seed in seeds
        )

    level = CONFINED_ERRORS.index(1e-2 if mode == "auto" else 3e-2)
    if caught(CONFINED_ERRORS[level]):
        while level + 1 < len(CONFINED_ERRORS) and caught(CONFINED_ERRORS[level + 1]):
            level += 1
        return CONFINED_ERRORS[level]
    for error in reversed(CONFINED_ERRORS[:level]):
        if caught(error):
            return error
    return None


def fast_false_failures(large: Large) -> tuple[int, int, float]:
    fails = inconclusive = 0
    calls = []
    for seed in range(FAST_CLEAN_SEEDS):
        target, inputs = large.make(np.random.default_rng(seed))
        result = gradverify.check(
            target, inputs, nondiff=large.nondiff, kwargs=large.kwargs, seed=seed, mode="fast"
        )
        fails += result.status is Status.FAIL
        inconclusive += result.status is Status.INCONCLUSIVE
        calls.append(result.forward_calls)
    return fails, inconclusive, float(np.mean(calls))


def large_shapes() -> None:
    print()
    print(
        f"{'layer (gradient)':<36} {'structure':<9} {'default':>8} {'fast':>8}   "
        f"fast: false FAIL / INCONCL. / calls"
    )
    for large in LARGE:
        started = time.perf_counter()
        target, inputs = large.make(np.random.default_rng(0))
        shape = _gradient_shape(target, inputs, large.grad_key)
        fails, inconclusive, calls = fast_false_failures(large)
        for position, structure in enumerate(large.structures):
            default = smallest_confined(large, structure, "auto")
            fast = smallest_confined(large, structure, "fast")
            label = f"{large.name} {large.grad_key!s} {shape}" if position == 0 else ""
            clean = (
                f"{fails}/{FAST_CLEAN_SEEDS} / {inconclusive}/{FAST_CLEAN_SEEDS} / {calls:.0f}"
                if position == 0
                else ""
            )
            print(
                f"{label:<36} {structure:<9} {_shown(default):>8} {_shown(fast):>8}   {clean}",
                flush=True,
            )
        print(f"{'':<36} ({time.perf_counter() - started:.0f} s)", flush=True)
    print(
        f"(smallest e caught on all {CONFINED_SEEDS} seeds with a live structure (RMS at least "
        f"{LIVE:g} x the tensor's), its gradient times 1 + e; sweep "
        f"{', '.join(f'{e:g}' for e in CONFINED_ERRORS)}; '-': none of them)"
    )


def _shown(error: float | None) -> str:
    return "-" if error is None else f"{error:g}"


def main() -> None:
    if "--large-only" not in sys.argv:
        registry_shapes()
    if "--registry-only" not in sys.argv:
        large_shapes()


if __name__ == "__main__":
    main()

"""How to build and feed every layer in this package: one ``LayerCase`` per target.

``REFERENCE`` holds the correct layers (each must pass a gradient check), ``BROKEN``
the deliberately wrong twins (each must fail one). Shapes are small so that a suite
can afford to check every case over many seeds; every random draw comes from the
``np.random.Generator`` passed in (float64 inputs, one-hot float64 or int64 labels).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from layers_under_test import broken, reference

Builder = Callable[[np.random.Generator], object]
InputMaker = Callable[[np.random.Generator], dict[str, object]]


@dataclass(frozen=True)
class LayerCase:
    """How to build one target and feed it: what `gradverify check` and the tests need."""

    name: str  # e.g. "Affine", "AffineDbWrongAxis"
    target: object  # the class (or function): lets the CLI find a case by the object named
    build: Builder  # returns a fresh instance ready to check
    make_inputs: InputMaker  # forward's positional arguments, in order, by name
    nondiff: tuple[str, ...] = ()  # inputs not to differentiate (labels)
    bug: str = ""  # broken twins: the first docstring line of the class


# ---------------------------------------------------------------- how to build a class


def _no_args(cls: type) -> Builder:
    """A layer whose constructor takes no arguments."""
    return lambda rng: cls()


def _weights(d_in: int, d_out: int) -> Callable[[type], Builder]:
    """An Affine-like layer built with W of shape (d_in, d_out) and b of shape (d_out,)."""
    return lambda cls: (
        lambda rng: cls(rng.standard_normal((d_in, d_out)), rng.standard_normal(d_out))
    )


def _sizes(input_size: int, hidden_size: int, output_size: int) -> Callable[[type], Builder]:
    """A TwoLayerNet-like network, weight_init_std 0.25 (the book's 0.01 gives tiny gradients)."""
    return lambda cls: lambda rng: cls(input_size, hidden_size, output_size, 0.25, rng)


# ---------------------------------------------------------------- what to feed it


def _arrays(**shapes: tuple[int, ...]) -> InputMaker:
    """Standard normal float64 arrays, one per name, in the order given."""
    return lambda rng: {name: rng.standard_normal(shape) for name, shape in shapes.items()}


def _labelled(
    n: int, features: int, classes: int, *, one_hot: bool = True, scale: float = 1.0
) -> InputMaker:
    """x = scale * standard normal of shape (n, features), and labels t over ``classes``.

    t is one-hot float64 rows or int64 class indices (uniform, independent of x).
    """

    def make(rng: np.random.Generator) -> dict[str, object]:
        x = scale * rng.standard_normal((n, features))
        labels = rng.integers(0, classes, size=n, dtype=np.int64)
        return {"x": x, "t": np.eye(classes)[labels] if one_hot else labels}

    return make


_MUL = _arrays(x=(3, 4), y=(3, 4))
_X = _arrays(x=(3, 4))
_RELU_X = _arrays(x=(4, 5))  # 20 elements: all positive about once in a million seeds
_AFFINE_X = _arrays(x=(2, 4))
_AFFINE_4D_X = _arrays(x=(2, 3, 2, 2))
# The book's 1e-7 inside the log makes its exact gradient r * (y - t) / N with
# r = y[label] / (y[label] + 1e-7): a relative error of 1e-7 / y[label] in its
# backward, below gradverify's float64 rtol (1e-3) while y[label] > 1e-4.
_SCORES = _labelled(3, 4, 4)
_NET = _labelled(4, 5, 3)  # 16 hidden pre-activations: nearly always some are <= 0
_LABELS = ("t",)  # labels are never differentiated
_NET_NONDIFF = ("x", "t")  # a network's check differentiates its params, not its inputs


def _case(
    target: type,
    build: Callable[[type], Builder],
    make_inputs: InputMaker,
    *,
    name: str = "",
    nondiff: tuple[str, ...] = (),
) -> LayerCase:
    doc = target.__dict__.get("__doc__") or ""
    bug = doc.strip().splitlines()[0] if target.__module__ == broken.__name__ else ""
    return LayerCase(name or target.__name__, target, build(target), make_inputs, nondiff, bug)


def _by_name(*cases: LayerCase) -> dict[str, LayerCase]:
    return {case.name: case for case in cases}


REFERENCE: dict[str, LayerCase] = _by_name(
    _case(reference.MulLayer, _no_args, _MUL),
    _case(reference.AddLayer, _no_args, _MUL),
    _case(reference.Relu, _no_args, _RELU_X),
    _case(reference.Sigmoid, _no_args, _X),
    _case(reference.Affine, _weights(4, 3), _AFFINE_X),
    _case(reference.Affine, _weights(12, 3), _AFFINE_4D_X, name="Affine4D"),
    _case(reference.SoftmaxWithLoss, _no_args, _SCORES, nondiff=_LABELS),
    _case(
        reference.SoftmaxWithLoss,
        _no_args,
        _labelled(3, 4, 4, one_hot=False),
        name="SoftmaxWithLossIntLabels",
        nondiff=_LABELS,
    ),
    _case(reference.TwoLayerNet, _sizes(5, 4, 3), _NET, nondiff=_NET_NONDIFF),
)

BROKEN: dict[str, LayerCase] = _by_name(
    _case(broken.MulNoSwap, _no_args, _MUL),
    _case(broken.MulSwappedOutputs, _no_args, _MUL),
    _case(broken.AddDropsDout, _no_args, _MUL),
    _case(broken.ReluNoMask, _no_args, _RELU_X),
    _case(broken.ReluMaskInverted, _no_args, _RELU_X),
    _case(broken.ReluForwardInPlace, _no_args, _RELU_X),
    _case(broken.SigmoidMissingOneMinus, _no_args, _X),
    _case(broken.SigmoidSignFlip, _no_args, _X),
    _case(broken.SigmoidUsesInput, _no_args, _X),
    # square x (N == D == 3): the only shapes for which x @ dout runs
    _case(broken.AffineNoTranspose, _weights(3, 4), _arrays(x=(3, 3))),
    # square W (D == M == 4): the only shapes for which dout @ W runs
    _case(broken.AffineDxNoTranspose, _weights(4, 4), _AFFINE_X),
    # square W (D == M == 4): the only shapes for which dout.T @ x fits dW
    _case(broken.AffineDWTransposed, _weights(4, 4), _AFFINE_X),
    # N == M == 3: db has the right shape and wrong values
    _case(broken.AffineDbWrongAxis, _weights(4, 3), _X),
    _case(broken.AffineDbMean, _weights(4, 3), _AFFINE_X),
    _case(broken.AffineMissingDW, _weights(4, 3), _AFFINE_X),
    # a 4-D x: dx comes back (2, 12) instead of (2, 3, 2, 2)
    _case(broken.AffineNoReshapeBack, _weights(12, 3), _AFFINE_4D_X),
    _case(broken.SoftmaxWithLossNoDivN, _no_args, _SCORES, nondiff=_LABELS),
    _case(broken.SoftmaxWithLossSignFlip, _no_args, _SCORES, nondiff=_LABELS),
    _case(broken.SoftmaxWithLossStaleCache, _no_args, _SCORES, nondiff=_LABELS),
    # hidden_size == output_size == 3: b1 and b2 have the same shape, only values differ
    _case(broken.TwoLayerNetSwappedKeys, _sizes(5, 3, 3), _NET, nondiff=_NET_NONDIFF),
    _case(broken.TwoLayerNetCopiedParams, _sizes(5, 4, 3), _NET, nondiff=_NET_NONDIFF),
    _case(broken.TwoLayerNetNoReluBackward, _sizes(5, 4, 3), _NET, nondiff=_NET_NONDIFF),
)


def find_case(obj: object) -> LayerCase | None:
    """The case whose ``target`` is ``obj`` (by identity), else None.

    A target with several cases (Affine, SoftmaxWithLoss) gets its first one, the
    case named after the class.
    """
    for case in (*REFERENCE.values(), *BROKEN.values()):
        if case.target is obj:
            return case
    return None

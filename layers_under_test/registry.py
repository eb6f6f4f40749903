"""How to build and feed every layer in this package: one ``LayerCase`` per target.

``REFERENCE`` holds the correct layers (each must pass a gradient check), ``BROKEN``
the deliberately wrong twins (each must fail one). Shapes are small so that a suite
can afford to check every case over many seeds; every random draw comes from the
``np.random.Generator`` passed in (float64 inputs, one-hot float64 or int64 labels).

Two things the Generator cannot control: the Dropout cases (and the networks built
with ``use_dropout=True``) draw their masks from the GLOBAL ``np.random`` on every
train-mode forward, so a check must fix that RNG (``np.random.seed``) before every
forward; and train-mode BatchNormalization updates its running statistics on every
forward (they do not change the train-mode output, only a later test-mode one).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

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
    # keyword arguments for every forward call (a network's: every loss call)
    kwargs: dict[str, object] = field(default_factory=dict)


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


def _filters(stride: int = 1) -> Callable[[type], Builder]:
    """A Convolution-like layer with 2 filters of 2 channels, 3x3: W (2, 2, 3, 3), b (2,)."""
    return lambda cls: (
        lambda rng: cls(rng.standard_normal((2, 2, 3, 3)), rng.standard_normal(2), stride)
    )


def _pool(stride: int) -> Callable[[type], Builder]:
    """A Pooling-like layer over 2x2 windows (stride 2: disjoint; stride 1: overlapping)."""
    return lambda cls: lambda rng: cls(2, 2, stride)


def _norm(features: int, *, running: bool = False) -> Callable[[type], Builder]:
    """A BatchNormalization-like layer with standard normal gamma and beta of (features,).

    ``running=True`` also gives it running statistics (mean standard normal, variance
    uniform in [0.5, 2]), which is what a test-mode forward normalizes with.
    """

    def build(cls: type) -> Builder:
        def make(rng: np.random.Generator) -> object:
            gamma, beta = rng.standard_normal(features), rng.standard_normal(features)
            if not running:
                return cls(gamma, beta)
            mean, var = rng.standard_normal(features), rng.uniform(0.5, 2.0, features)
            return cls(gamma, beta, running_mean=mean, running_var=var)

        return make

    return build


def _extend(**options: object) -> Callable[[type], Builder]:
    """A MultiLayerNetExtend-like network (5 inputs, hidden [4, 4], 3 classes).

    Every parameter but the weights (biases, gamma, beta) then gets 0.1 * standard
    normal added IN PLACE, so the layers still share it: with the book's zero biases
    and betas, a sample whose hidden units are all off (or a BatchNorm column that is
    constant over the batch) puts the next pre-activation exactly on ReLU's kink at 0.
    """

    def build(cls: type) -> Builder:
        def make(rng: np.random.Generator) -> object:
            net = cls(5, [4, 4], 3, rng=rng, **options)
            for key, param in net.params.items():
                if not key.startswith("W"):
                    param += 0.1 * rng.standard_normal(param.shape)
            return net

        return make

    return build


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
_CONV_X = _arrays(x=(2, 2, 5, 5))  # 3x3 filters, stride 1: 3x3 outputs, overlapping windows
_POOL_X = _arrays(x=(2, 2, 4, 4))  # standard normal: ties within a window almost never
_BN_X = _arrays(x=(4, 3))
_BN_4D_X = _arrays(x=(4, 2, 2, 2))  # the book normalizes each of the 8 (c, h, w) positions
_DROPOUT_X = _arrays(x=(4, 5))  # 20 units at ratio 0.5: some dropped, some kept
_TRAIN: dict[str, object] = {"train_flg": True}  # copied into each case
_TEST: dict[str, object] = {"train_flg": False}
# every option of the book's network: BatchNorm, Dropout (global RNG) and weight decay;
# the networks' loss runs with train_flg=True, as gradient() does (loss defaults to test)
# weight_init_std 0.1 rather than He: the last Affine's scores stay small, so no label's
# probability nears the book's 1e-7 guard in log(y + 1e-7) (see the note above)
_FULL = _extend(use_batchnorm=True, use_dropout=True, weight_decay_lambda=0.1, weight_init_std=0.1)
_PLAIN = _extend(activation="sigmoid", weight_init_std="sigmoid")  # why: see REFERENCE
_DECAY = _extend(activation="sigmoid", weight_init_std="sigmoid", weight_decay_lambda=0.1)


def _case(
    target: type,
    build: Callable[[type], Builder],
    make_inputs: InputMaker,
    *,
    name: str = "",
    nondiff: tuple[str, ...] = (),
    kwargs: dict[str, object] | None = None,
) -> LayerCase:
    doc = target.__dict__.get("__doc__") or ""
    bug = doc.strip().splitlines()[0] if target.__module__ == broken.__name__ else ""
    name = name or target.__name__
    return LayerCase(name, target, build(target), make_inputs, nondiff, bug, dict(kwargs or {}))


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
    # ch. 6-7
    _case(reference.Dropout, _no_args, _DROPOUT_X, kwargs=_TRAIN),
    _case(reference.BatchNormalization, _norm(3), _BN_X, kwargs=_TRAIN),
    _case(
        reference.BatchNormalization,
        _norm(8),
        _BN_4D_X,
        name="BatchNormalization4D",
        kwargs=_TRAIN,
    ),
    _case(
        reference.BatchNormalization,
        _norm(3, running=True),
        _BN_X,
        name="BatchNormalizationTestMode",
        kwargs=_TEST,
    ),
    _case(reference.Convolution, _filters(), _CONV_X),
    _case(reference.Convolution, _filters(stride=2), _CONV_X, name="ConvolutionStride2"),
    _case(reference.Pooling, _pool(2), _POOL_X),
    _case(reference.Pooling, _pool(1), _POOL_X, name="PoolingOverlapping"),
    _case(reference.MultiLayerNetExtend, _FULL, _NET, nondiff=_NET_NONDIFF, kwargs=_TRAIN),
    # no BatchNorm, Dropout or decay. Sigmoid with Xavier init: with ReLU and He init,
    # some seeds give the label a probability below 1e-4 (see the 1e-7 note above)
    _case(
        reference.MultiLayerNetExtend,
        _PLAIN,
        _NET,
        name="MultiLayerNetExtendPlainSigmoid",
        nondiff=_NET_NONDIFF,
        kwargs=_TRAIN,
    ),
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
    # ch. 6-7
    # 3x3 filters with stride 1: every interior pixel is covered by several windows
    _case(broken.ConvolutionCol2imOverwrite, _filters(), _CONV_X),
    _case(broken.ConvolutionDWNotTransposed, _filters(), _CONV_X),
    _case(broken.ConvolutionDoutNotTransposed, _filters(), _CONV_X),
    _case(broken.PoolingWholeWindow, _pool(2), _POOL_X),
    _case(broken.PoolingFirstElement, _pool(2), _POOL_X),
    _case(broken.BatchNormNoMeanTerm, _norm(3), _BN_X, kwargs=_TRAIN),
    _case(broken.BatchNormNoVarianceTerm, _norm(3), _BN_X, kwargs=_TRAIN),
    _case(broken.BatchNormDgammaNoXn, _norm(3), _BN_X, kwargs=_TRAIN),
    # right in train mode: only a test-mode forward shows it
    _case(broken.BatchNormTrainBackwardInTestMode, _norm(3, running=True), _BN_X, kwargs=_TEST),
    _case(broken.DropoutIgnoresMask, _no_args, _DROPOUT_X, kwargs=_TRAIN),
    _case(broken.DropoutNewMaskInBackward, _no_args, _DROPOUT_X, kwargs=_TRAIN),
    # right for one forward/backward pair: a stale-state check (two forwards) shows it
    _case(broken.KeepsFirstInput, _weights(4, 3), _AFFINE_X),
    # weight decay alone (no BatchNorm, no Dropout): every dW is off by 0.1 * W
    _case(broken.MultiLayerNetNoWeightDecayGrad, _DECAY, _NET, nondiff=_NET_NONDIFF, kwargs=_TRAIN),
    _case(broken.MultiLayerNetSwappedGammaBeta, _FULL, _NET, nondiff=_NET_NONDIFF, kwargs=_TRAIN),
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

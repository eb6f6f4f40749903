"""How to build and feed every layer in this package: one ``LayerCase`` per target.

``REFERENCE`` holds the correct layers (each must pass a gradient check), ``BROKEN``
the deliberately wrong twins (each must fail one), ``SHAPE_DEPENDENT`` the twins that
are right for some shapes (their fixed case passes; fuzzing over shapes fails them).
Shapes are small so that a suite can afford to check every case over many seeds;
every random draw comes from the ``np.random.Generator`` passed in (float64 inputs,
one-hot float64 or int64 labels).

Every REFERENCE and SHAPE_DEPENDENT case also has a ``spec`` (see gradverify.specs):
the shapes ``gradverify.fuzz`` draws cases from, fed to ``factory`` (or to the target
itself) as keywords. Factories with int arguments draw their arrays from the global
``np.random``, which ``fuzz`` seeds around every call.

Two things the Generator cannot control: the Dropout cases (and the networks built
with ``use_dropout=True``) draw their masks from the GLOBAL ``np.random`` on every
train-mode forward, so a check must fix that RNG (``np.random.seed``) before every
forward; and train-mode BatchNormalization updates its running statistics on every
forward (they do not change the train-mode output, only a later test-mode one).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from layers_under_test import broken, reference, volume2

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
    # the shapes to fuzz over, as plain data in the gradverify.specs format
    spec: dict[str, object] | None = None
    # builds the target from the spec's init keywords; None: call ``target`` itself
    factory: Callable[..., object] | None = None
    # wrong-function twins: the REFERENCE case whose forward and gradients show the bug
    reference: str = ""


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


def _trained(d_in: int, d_out: int) -> Callable[[type], Builder]:
    """Like ``_weights``, after one training step: a forward and a backward on another batch.

    What a layer looks like in a training loop's second iteration; a layer that keeps
    state across backward calls (accumulates into dW) starts the check with it.
    """

    def build(cls: type) -> Builder:
        def make(rng: np.random.Generator) -> object:
            layer: Any = _weights(d_in, d_out)(cls)(rng)
            out = layer.forward(rng.standard_normal((2, d_in)))
            layer.backward(rng.standard_normal(out.shape))
            return layer

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


def _last_class_labelled(n: int, classes: int) -> InputMaker:
    """Like ``_labelled(n, classes, classes)``, with the first row always of the last class."""

    def make(rng: np.random.Generator) -> dict[str, object]:
        labels = rng.integers(0, classes, size=n, dtype=np.int64)
        labels[0] = classes - 1
        return {"x": rng.standard_normal((n, classes)), "t": np.eye(classes)[labels]}

    return make


def _indices(vocabulary: int, n: int) -> InputMaker:
    """``n`` integer indices below ``vocabulary``; n > vocabulary: some index repeats."""
    return lambda rng: {"idx": rng.integers(0, vocabulary, size=n, dtype=np.int64)}


def _table(vocabulary: int, width: int) -> Callable[[type], Builder]:
    """An Embedding-like layer with a standard normal table W of (vocabulary, width)."""
    return lambda cls: lambda rng: cls(rng.standard_normal((vocabulary, width)))


def _matrix(d_in: int, d_out: int) -> Callable[[type], Builder]:
    """A MatMul-like layer: one standard normal W of (d_in, d_out), no bias."""
    return lambda cls: lambda rng: cls(rng.standard_normal((d_in, d_out)))


def _recurrent(d_in: int, hidden: int, gates: int = 1) -> Callable[[type], Builder]:
    """An RNN-like layer: standard normal Wx (d_in, gates*hidden), Wh (hidden, gates*hidden)
    and b (gates*hidden,); an LSTM's four gates side by side: ``gates=4``."""
    width = gates * hidden
    return lambda cls: (
        lambda rng: cls(
            rng.standard_normal((d_in, width)),
            rng.standard_normal((hidden, width)),
            rng.standard_normal(width),
        )
    )


def _word_ids(vocabulary: int, n: int, steps: int) -> InputMaker:
    """An (n, steps) int64 array of word ids below ``vocabulary``: a TimeEmbedding's xs."""
    return lambda rng: {"xs": rng.integers(0, vocabulary, size=(n, steps), dtype=np.int64)}


def _padded_labels(n: int, steps: int, classes: int) -> InputMaker:
    """Scores xs of (n, steps, classes), standard normal, and int64 labels ts of (n, steps).

    ts is uniform over ``-1`` (the ignored label, padding) and the classes, with the
    first label always -1 and the last one always kept: every draw has both, so a mean
    over the wrong count always shows.
    """

    def make(rng: np.random.Generator) -> dict[str, object]:
        xs = rng.standard_normal((n, steps, classes))
        ts = rng.integers(-1, classes, size=(n, steps), dtype=np.int64)
        ts[0, 0] = -1
        ts[-1, -1] = rng.integers(0, classes)
        return {"xs": xs, "ts": ts}

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
# test-mode BatchNorm reads its running statistics: constants, not weights
_RUNNING = ("running_mean", "running_var")
_NET_NONDIFF = ("x", "t")  # a network's check differentiates its params, not its inputs
_CONV_X = _arrays(x=(2, 2, 5, 5))  # 3x3 filters, stride 1: 3x3 outputs, overlapping windows
_POOL_X = _arrays(x=(2, 2, 4, 4))  # standard normal: ties within a window almost never
_BN_X = _arrays(x=(4, 3))
_BN_4D_X = _arrays(x=(4, 2, 2, 2))  # the book normalizes each of the 8 (c, h, w) positions
_DROPOUT_X = _arrays(x=(4, 5))  # 20 units at ratio 0.5: some dropped, some kept
_IDX = _indices(5, 8)  # 8 indices into 5 rows: at least three repeat
_INDICES = ("idx",)  # integers: never differentiated
# second volume: N = 2 sequences of T = 3 steps (T > 1: what carries state back through
# time shows only then), D = H = 3, a vocabulary of V = 5
_MATMUL_X = _arrays(x=(2, 3))
_RNN_STEP = _arrays(x=(2, 3), h_prev=(2, 3))
_LSTM_STEP = _arrays(x=(2, 3), h_prev=(2, 3), c_prev=(2, 3))
_SEQUENCE = _arrays(xs=(2, 3, 3))  # TimeRNN, TimeLSTM
# the LSTM twins: two steps are enough to carry a state back, and a failing check
# re-estimates every element (D = H = 2: 48 elements, not 102)
_SHORT_SEQUENCE = _arrays(xs=(2, 2, 2))
_TIME_AFFINE_X = _arrays(x=(2, 3, 3))
_WORDS = _word_ids(5, 2, 3)  # 6 ids below 5: at least one repeats
_WORD_IDS = ("xs",)  # integers: never differentiated
_TIME_LABELS = ("ts",)
_TIME_SCORES = _padded_labels(2, 3, 5)


def _saturated(shape: tuple[int, ...]) -> InputMaker:
    """x uniform in [14, 16]: a saturated sigmoid (out within 1e-6 of 1).

    There float32 rounds out to a multiple of 6e-8 below 1, so 1 - out keeps few digits.
    """
    return lambda rng: {"x": rng.uniform(14.0, 16.0, shape)}


_TRAIN: dict[str, object] = {"train_flg": True}  # copied into each case
_TEST: dict[str, object] = {"train_flg": False}
# every option of the book's network: BatchNorm, Dropout (global RNG) and weight decay;
# the networks' loss runs with train_flg=True, as gradient() does (loss defaults to test)
# weight_init_std 0.1 rather than He: the last Affine's scores stay small, so no label's
# probability nears the book's 1e-7 guard in log(y + 1e-7) (see the note above)
_FULL = _extend(use_batchnorm=True, use_dropout=True, weight_decay_lambda=0.1, weight_init_std=0.1)
_PLAIN = _extend(activation="sigmoid", weight_init_std="sigmoid")  # why: see REFERENCE
_DECAY = _extend(activation="sigmoid", weight_init_std="sigmoid", weight_decay_lambda=0.1)


# ---------------------------------------------------------------- shapes to fuzz over
# Specs for gradverify.fuzz (see gradverify.specs). Every dimension stays small (a
# few seconds for 200 examples of a layer); they vary the batch size (1 included,
# except where BatchNorm needs 2), make weights non-square, and pass strides,
# paddings, pool and network sizes as int constructor arguments. Real values lie in
# [-1, 1] and at least 0.01 away from 0, so the book's 1e-7 in log(y + 1e-7) stays far
# below rtol (y[label] >= 0.01 for scores in [-1, 1] over <= 5 classes).


def _onehot(n: str, classes: str) -> dict[str, object]:
    return {"shape": [n, classes], "domain": "onehot", "classes": classes}


_PAIR_SPEC: dict[str, object] = {
    "dims": {"N": [1, 4], "D": [1, 5]},
    "inputs": {"x": ["N", "D"], "y": ["N", "D"]},
}
_X_SPEC: dict[str, object] = {"dims": {"N": [1, 4], "D": [1, 5]}, "inputs": {"x": ["N", "D"]}}
_AFFINE_SPEC: dict[str, object] = {
    "dims": {"N": [1, 4], "D": [1, 5], "M": [1, 5]},
    "init": {"W": ["D", "M"], "b": ["M"]},
    "inputs": {"x": ["N", "D"]},
}
# specs cannot multiply dims: W's first dimension C*H*W comes from the factory
_AFFINE_4D_SPEC: dict[str, object] = {
    "dims": {"N": [1, 3], "C": [1, 3], "H": [1, 3], "W": [1, 3], "M": [1, 4]},
    "init": {"c": "C", "h": "H", "w": "W", "m": "M"},
    "inputs": {"x": ["N", "C", "H", "W"]},
}
_SOFTMAX_SPEC: dict[str, object] = {
    "dims": {"N": [1, 4], "C": [2, 5]},
    "inputs": {"x": ["N", "C"], "t": _onehot("N", "C")},
}
_SOFTMAX_INT_SPEC: dict[str, object] = {
    "dims": {"N": [1, 4], "C": [2, 5]},
    "inputs": {"x": ["N", "C"], "t": {"shape": ["N"], "domain": "labels", "classes": "C"}},
}
_NET_SIZES = {"input_size": "D", "hidden_size": "H", "output_size": "C"}
_TWO_LAYER_SPEC: dict[str, object] = {
    "dims": {"N": [1, 4], "D": [1, 5], "H": [1, 5], "C": [2, 4]},
    "init": _NET_SIZES,
    "inputs": {"x": ["N", "D"], "t": _onehot("N", "C")},
}
# BatchNorm over a batch of one has zero variance (its output is beta whatever x is)
_BN_SPEC: dict[str, object] = {
    "dims": {"N": [2, 4], "D": [1, 4]},
    "init": {"gamma": ["D"], "beta": ["D"]},
    "inputs": {"x": ["N", "D"]},
}
_BN_4D_SPEC: dict[str, object] = {  # gamma, beta of C*H*W entries: from the factory
    "dims": {"N": [2, 3], "C": [1, 2], "H": [1, 3], "W": [1, 3]},
    "init": {"c": "C", "h": "H", "w": "W"},
    "inputs": {"x": ["N", "C", "H", "W"]},
}
_BN_TEST_SPEC: dict[str, object] = {  # running variance in [0.02, 2]
    "dims": {"N": [1, 4], "D": [1, 4]},
    "init": {
        "gamma": ["D"],
        "beta": ["D"],
        "running_mean": ["D"],
        "running_var": {"shape": ["D"], "domain": "positive", "scale": 2.0},
    },
    "inputs": {"x": ["N", "D"]},
}
# conv and pool: every window size at most the image size, so at least one window fits
_CONV_INIT = {"W": ["FN", "C", "FH", "FW"], "b": ["FN"], "stride": "S", "pad": "P"}
_CONV_SPEC: dict[str, object] = {  # filters up to 2x2, strides 1 and 2, 1-2 channels
    "dims": {
        "N": [1, 2],
        "C": [1, 2],
        "H": [2, 4],
        "W": [2, 4],
        "FN": [1, 2],
        "P": [0, 1],
        "FH": [1, 2],
        "FW": [1, 2],
        "S": [1, 2],
    },
    "init": _CONV_INIT,
    "inputs": {"x": ["N", "C", "H", "W"]},
}
_CONV_STRIDE_2_SPEC: dict[str, object] = {  # 3x3 filters; one channel (Convolution: two)
    "dims": {
        "N": [1, 2],
        "C": 1,
        "H": [3, 5],
        "W": [3, 5],
        "FN": [1, 2],
        "P": [0, 1],
        "FH": [2, 3],
        "FW": [2, 3],
        "S": 2,
    },
    "init": _CONV_INIT,
    "inputs": {"x": ["N", "C", "H", "W"]},
}
_EMBEDDING_SPEC: dict[str, object] = {
    "dims": {"V": [1, 5], "D": [1, 4], "N": [1, 6]},
    "init": {"W": ["V", "D"]},
    "inputs": {"idx": {"shape": ["N"], "domain": "labels", "classes": "V"}},
}
_POOL_INIT = {"pool_h": "PH", "pool_w": "PW", "stride": "S"}
_POOL_SPEC: dict[str, object] = {  # strides below, at and above the window size
    "dims": {
        "N": [1, 2],
        "C": [1, 2],
        "H": [2, 4],
        "W": [2, 4],
        "PH": [1, 2],
        "PW": [1, 2],
        "S": [1, 2],
    },
    "init": _POOL_INIT,
    "inputs": {"x": ["N", "C", "H", "W"]},
}
_POOL_OVERLAPPING_SPEC: dict[str, object] = {
    "dims": {
        "N": [1, 2],
        "C": [1, 2],
        "H": [3, 5],
        "W": [3, 5],
        "PH": [2, 3],
        "PW": [2, 3],
        "S": 1,
    },
    "init": _POOL_INIT,
    "inputs": {"x": ["N", "C", "H", "W"]},
}
_EXTEND_DIMS = {"D": [1, 3], "H": [1, 3], "L": [1, 2], "C": [2, 4]}
_EXTEND_INIT = {**_NET_SIZES, "hidden_layers": "L"}
_EXTEND_FULL_SPEC: dict[str, object] = {  # BatchNorm inside: batches of 2 or more
    "dims": {**_EXTEND_DIMS, "N": [2, 3], "C": [2, 3]},
    "init": _EXTEND_INIT,
    "inputs": {"x": ["N", "D"], "t": _onehot("N", "C")},
}
_EXTEND_PLAIN_SPEC: dict[str, object] = {
    "dims": {"N": [1, 4], **_EXTEND_DIMS},
    "init": _EXTEND_INIT,
    "inputs": {"x": ["N", "D"], "t": _onehot("N", "C")},
}
# second volume: sequences of T = 1 to 3 steps
_MATMUL_SPEC: dict[str, object] = {
    "dims": {"N": [1, 4], "D": [1, 5], "H": [1, 5]},
    "init": {"W": ["D", "H"]},
    "inputs": {"x": ["N", "D"]},
}
_RNN_INIT = {"Wx": ["D", "H"], "Wh": ["H", "H"], "b": ["H"]}
_RNN_SPEC: dict[str, object] = {
    "dims": {"N": [1, 3], "D": [1, 3], "H": [1, 3]},
    "init": _RNN_INIT,
    "inputs": {"x": ["N", "D"], "h_prev": ["N", "H"]},
}
_TIME_RNN_SPEC: dict[str, object] = {
    "dims": {"N": [1, 3], "T": [1, 3], "D": [1, 3], "H": [1, 3]},
    "init": _RNN_INIT,
    "inputs": {"xs": ["N", "T", "D"]},
}
_LSTM_SPEC: dict[str, object] = {  # Wx (D, 4H) and the rest: from the factory
    "dims": {"N": [1, 3], "D": [1, 3], "H": [1, 3]},
    "init": {"d": "D", "h": "H"},
    "inputs": {"x": ["N", "D"], "h_prev": ["N", "H"], "c_prev": ["N", "H"]},
}
_TIME_LSTM_SPEC: dict[str, object] = {  # Wx (D, 4H) and the rest: from the factory
    "dims": {"N": [1, 2], "T": [1, 3], "D": [1, 3], "H": [1, 2]},
    "init": {"d": "D", "h": "H"},
    "inputs": {"xs": ["N", "T", "D"]},
}
_TIME_EMBEDDING_SPEC: dict[str, object] = {
    "dims": {"V": [1, 5], "D": [1, 4], "N": [1, 3], "T": [1, 3]},
    "init": {"W": ["V", "D"]},
    "inputs": {"xs": {"shape": ["N", "T"], "domain": "labels", "classes": "V"}},
}
_TIME_AFFINE_SPEC: dict[str, object] = {
    "dims": {"N": [1, 3], "T": [1, 3], "D": [1, 4], "M": [1, 4]},
    "init": {"W": ["D", "M"], "b": ["M"]},
    "inputs": {"x": ["N", "T", "D"]},
}
# labels in [0, V) and the ignored -1 (padding), never all of them -1
_TIME_SOFTMAX_SPEC: dict[str, object] = {
    "dims": {"N": [1, 3], "T": [1, 3], "V": [2, 5]},
    "inputs": {
        "xs": ["N", "T", "V"],
        "ts": {"shape": ["N", "T"], "domain": "labels", "classes": "V", "ignore": -1},
    },
}


def affine_4d(c: int, h: int, w: int, m: int) -> reference.Affine:
    """An Affine for (N, c, h, w) inputs: standard normal W (c*h*w, m) and b (m,) from np.random."""
    return reference.Affine(np.random.standard_normal((c * h * w, m)), np.random.standard_normal(m))


def batch_norm_4d(c: int, h: int, w: int) -> reference.BatchNormalization:
    """A BatchNormalization for (N, c, h, w) inputs: standard normal gamma, beta of c*h*w."""
    size = c * h * w
    return reference.BatchNormalization(
        np.random.standard_normal(size), np.random.standard_normal(size)
    )


def two_layer_net(input_size: int, hidden_size: int, output_size: int) -> reference.TwoLayerNet:
    """A TwoLayerNet, weight_init_std 0.25, weights from np.random (as in ``_sizes``)."""
    return reference.TwoLayerNet(input_size, hidden_size, output_size, 0.25)


def _extend_net(
    input_size: int, hidden_size: int, output_size: int, hidden_layers: int, **options: Any
) -> reference.MultiLayerNetExtend:
    """As ``_extend``, from np.random: ``hidden_layers`` layers of ``hidden_size`` units."""
    net = reference.MultiLayerNetExtend(
        input_size, [hidden_size] * hidden_layers, output_size, **options
    )
    for key, param in net.params.items():
        if not key.startswith("W"):
            param += 0.1 * np.random.standard_normal(param.shape)
    return net


def multi_layer_net_full(
    input_size: int, hidden_size: int, output_size: int, hidden_layers: int
) -> reference.MultiLayerNetExtend:
    """MultiLayerNetExtend with BatchNorm, Dropout and weight decay (as the registry's _FULL)."""
    return _extend_net(
        input_size,
        hidden_size,
        output_size,
        hidden_layers,
        use_batchnorm=True,
        use_dropout=True,
        weight_decay_lambda=0.1,
        weight_init_std=0.1,
    )


def multi_layer_net_plain_sigmoid(
    input_size: int, hidden_size: int, output_size: int, hidden_layers: int
) -> reference.MultiLayerNetExtend:
    """MultiLayerNetExtend with sigmoid and Xavier init only (as the registry's _PLAIN)."""
    return _extend_net(
        input_size,
        hidden_size,
        output_size,
        hidden_layers,
        activation="sigmoid",
        weight_init_std="sigmoid",
    )


def time_lstm(d: int, h: int) -> volume2.TimeLSTM:
    """A TimeLSTM for inputs of d features and h units: standard normal Wx (d, 4h), Wh (h, 4h)
    and b (4h,) from np.random."""
    return volume2.TimeLSTM(*_lstm_weights(d, h))


def lstm(d: int, h: int) -> volume2.LSTM:
    """One LSTM step, weights as `time_lstm`'s."""
    return volume2.LSTM(*_lstm_weights(d, h))


def _lstm_weights(d: int, h: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (
        np.random.standard_normal((d, 4 * h)),
        np.random.standard_normal((h, 4 * h)),
        np.random.standard_normal(4 * h),
    )


def _case(
    target: type,
    build: Callable[[type], Builder],
    make_inputs: InputMaker,
    *,
    name: str = "",
    nondiff: tuple[str, ...] = (),
    kwargs: dict[str, object] | None = None,
    spec: dict[str, object] | None = None,
    factory: Callable[..., object] | None = None,
    reference: str = "",
) -> LayerCase:
    doc = target.__dict__.get("__doc__") or ""
    bug = doc.strip().splitlines()[0] if target.__module__ == broken.__name__ else ""
    name = name or target.__name__
    return LayerCase(
        name,
        target,
        build(target),
        make_inputs,
        nondiff,
        bug,
        dict(kwargs or {}),
        spec,
        factory,
        reference,
    )


def _by_name(*cases: LayerCase) -> dict[str, LayerCase]:
    return {case.name: case for case in cases}


REFERENCE: dict[str, LayerCase] = _by_name(
    _case(reference.MulLayer, _no_args, _MUL, spec=_PAIR_SPEC),
    _case(reference.AddLayer, _no_args, _MUL, spec=_PAIR_SPEC),
    _case(reference.Relu, _no_args, _RELU_X, spec=_X_SPEC),
    _case(reference.LeakyRelu, _no_args, _RELU_X, spec=_X_SPEC),
    _case(reference.Sigmoid, _no_args, _X, spec=_X_SPEC),
    _case(reference.Softmax, _no_args, _X, spec=_X_SPEC),
    _case(reference.Affine, _weights(4, 3), _AFFINE_X, spec=_AFFINE_SPEC),
    _case(
        reference.Affine,
        _weights(12, 3),
        _AFFINE_4D_X,
        name="Affine4D",
        spec=_AFFINE_4D_SPEC,
        factory=affine_4d,
    ),
    _case(reference.SoftmaxWithLoss, _no_args, _SCORES, nondiff=_LABELS, spec=_SOFTMAX_SPEC),
    _case(
        reference.SoftmaxWithLoss,
        _no_args,
        _labelled(3, 4, 4, one_hot=False),
        name="SoftmaxWithLossIntLabels",
        nondiff=_LABELS,
        spec=_SOFTMAX_INT_SPEC,
    ),
    _case(
        reference.TwoLayerNet,
        _sizes(5, 4, 3),
        _NET,
        nondiff=_NET_NONDIFF,
        spec=_TWO_LAYER_SPEC,
        factory=two_layer_net,
    ),
    # ch. 6-7
    _case(reference.Dropout, _no_args, _DROPOUT_X, kwargs=_TRAIN, spec=_X_SPEC),
    _case(reference.InvertedDropout, _no_args, _DROPOUT_X, kwargs=_TRAIN, spec=_X_SPEC),
    _case(
        reference.InvertedDropout,
        _no_args,
        _DROPOUT_X,
        name="InvertedDropoutTestMode",
        kwargs=_TEST,
        spec=_X_SPEC,
    ),
    _case(reference.BatchNormalization, _norm(3), _BN_X, kwargs=_TRAIN, spec=_BN_SPEC),
    _case(
        reference.BatchNormalization,
        _norm(8),
        _BN_4D_X,
        name="BatchNormalization4D",
        kwargs=_TRAIN,
        spec=_BN_4D_SPEC,
        factory=batch_norm_4d,
    ),
    _case(
        reference.BatchNormalization,
        _norm(3, running=True),
        _BN_X,
        name="BatchNormalizationTestMode",
        nondiff=_RUNNING,
        kwargs=_TEST,
        spec=_BN_TEST_SPEC,
    ),
    _case(reference.Convolution, _filters(), _CONV_X, spec=_CONV_SPEC),
    _case(
        reference.Convolution,
        _filters(stride=2),
        _CONV_X,
        name="ConvolutionStride2",
        spec=_CONV_STRIDE_2_SPEC,
    ),
    _case(reference.Pooling, _pool(2), _POOL_X, spec=_POOL_SPEC),
    _case(
        reference.Pooling,
        _pool(1),
        _POOL_X,
        name="PoolingOverlapping",
        spec=_POOL_OVERLAPPING_SPEC,
    ),
    # second volume: params/grads lists, integer indices, a backward that returns None
    _case(reference.Embedding, _table(5, 3), _IDX, nondiff=_INDICES, spec=_EMBEDDING_SPEC),
    _case(
        reference.MultiLayerNetExtend,
        _FULL,
        _NET,
        nondiff=_NET_NONDIFF,
        kwargs=_TRAIN,
        spec=_EXTEND_FULL_SPEC,
        factory=multi_layer_net_full,
    ),
    # no BatchNorm, Dropout or decay. Sigmoid with Xavier init: with ReLU and He init,
    # some seeds give the label a probability below 1e-4 (see the 1e-7 note above)
    _case(
        reference.MultiLayerNetExtend,
        _PLAIN,
        _NET,
        name="MultiLayerNetExtendPlainSigmoid",
        nondiff=_NET_NONDIFF,
        kwargs=_TRAIN,
        spec=_EXTEND_PLAIN_SPEC,
        factory=multi_layer_net_plain_sigmoid,
    ),
    # second volume (layers_under_test.volume2); the one-step LSTM returns (h_next, c_next)
    # and its backward takes (dh_next, dc_next)
    _case(volume2.MatMul, _matrix(3, 3), _MATMUL_X, spec=_MATMUL_SPEC),
    _case(volume2.RNN, _recurrent(3, 3), _RNN_STEP, spec=_RNN_SPEC),
    _case(volume2.LSTM, _recurrent(3, 3, gates=4), _LSTM_STEP, spec=_LSTM_SPEC, factory=lstm),
    _case(volume2.TimeRNN, _recurrent(3, 3), _SEQUENCE, spec=_TIME_RNN_SPEC),
    _case(
        volume2.TimeLSTM,
        _recurrent(3, 3, gates=4),
        _SEQUENCE,
        spec=_TIME_LSTM_SPEC,
        factory=time_lstm,
    ),
    _case(
        volume2.TimeEmbedding,
        _table(5, 3),
        _WORDS,
        nondiff=_WORD_IDS,
        spec=_TIME_EMBEDDING_SPEC,
    ),
    _case(volume2.TimeAffine, _weights(3, 5), _TIME_AFFINE_X, spec=_TIME_AFFINE_SPEC),
    _case(
        volume2.TimeSoftmaxWithLoss,
        _no_args,
        _TIME_SCORES,
        nondiff=_TIME_LABELS,
        spec=_TIME_SOFTMAX_SPEC,
    ),
)

BROKEN: dict[str, LayerCase] = _by_name(
    _case(broken.MulNoSwap, _no_args, _MUL),
    _case(broken.MulSwappedOutputs, _no_args, _MUL),
    _case(broken.AddDropsDout, _no_args, _MUL),
    _case(broken.ReluNoMask, _no_args, _RELU_X),
    _case(broken.ReluMaskInverted, _no_args, _RELU_X),
    _case(broken.ReluForwardInPlace, _no_args, _RELU_X),
    _case(broken.LeakyReluSignFlipped, _no_args, _RELU_X),
    _case(broken.SigmoidMissingOneMinus, _no_args, _X),
    _case(broken.SigmoidSignFlip, _no_args, _X),
    _case(broken.SigmoidUsesInput, _no_args, _X),
    # square x (N == D == 3): the only shapes for which x @ dout runs
    _case(broken.AffineNoTranspose, _weights(3, 4), _arrays(x=(3, 3))),
    # square W (D == M == 4): the only shapes for which dout @ W runs
    _case(broken.AffineDxNoTranspose, _weights(4, 4), _AFFINE_X),
    # square W (D == M == 4): the only shapes for which dout.T @ x fits dW
    _case(broken.AffineDWTransposed, _weights(4, 4), _AFFINE_X),
    # non-square W (4, 3): dW comes back (3, 4), W's shape transposed
    _case(broken.AffineDWTransposed, _weights(4, 3), _AFFINE_X, name="AffineDWTransposedNonSquare"),
    # N == M == 3: db has the right shape and wrong values
    _case(broken.AffineDbWrongAxis, _weights(4, 3), _X),
    _case(broken.AffineDbMean, _weights(4, 3), _AFFINE_X),
    _case(broken.AffineMissingDW, _weights(4, 3), _AFFINE_X),
    _case(broken.AffineForgetsLastFeature, _weights(4, 3), _AFFINE_X),
    # wide enough (dW 6 x 8) that one wrong row is evidence of an off-by-one bound
    _case(
        broken.AffineForgetsLastFeature,
        _weights(6, 8),
        _arrays(x=(5, 6)),
        name="AffineForgetsLastFeatureWide",
    ),
    # a 4-D x: dx comes back (2, 12) instead of (2, 3, 2, 2)
    _case(broken.AffineNoReshapeBack, _weights(12, 3), _AFFINE_4D_X),
    _case(broken.SoftmaxWithLossNoDivN, _no_args, _SCORES, nondiff=_LABELS),
    _case(broken.SoftmaxWithLossSignFlip, _no_args, _SCORES, nondiff=_LABELS),
    _case(broken.SoftmaxWithLossLargeEpsilon, _no_args, _SCORES, nondiff=_LABELS),
    _case(broken.SoftmaxWithLossStaleCache, _no_args, _SCORES, nondiff=_LABELS),
    # one row of the last class at least: the only rows whose dx is wrong
    _case(
        broken.SoftmaxWithLossLastClassUnlabelled,
        _no_args,
        _last_class_labelled(3, 4),
        nondiff=_LABELS,
    ),
    # hidden_size == output_size == 3: b1 and b2 have the same shape, only values differ
    _case(broken.TwoLayerNetSwappedKeys, _sizes(5, 3, 3), _NET, nondiff=_NET_NONDIFF),
    _case(broken.TwoLayerNetCopiedParams, _sizes(5, 4, 3), _NET, nondiff=_NET_NONDIFF),
    _case(broken.TwoLayerNetNoReluBackward, _sizes(5, 4, 3), _NET, nondiff=_NET_NONDIFF),
    # a broken layer inside: the check names it (each layer checked alone, see diagnosis)
    _case(broken.TwoLayerNetReluNoMask, _sizes(5, 4, 3), _NET, nondiff=_NET_NONDIFF),
    _case(broken.TwoLayerNetAffineDbMean, _sizes(5, 4, 3), _NET, nondiff=_NET_NONDIFF),
    _case(broken.TwoLayerNetLossNoDivN, _sizes(5, 4, 3), _NET, nondiff=_NET_NONDIFF),
    # ch. 6-7
    # 3x3 filters with stride 1: every interior pixel is covered by several windows
    _case(broken.ConvolutionCol2imOverwrite, _filters(), _CONV_X),
    _case(broken.ConvolutionDxDropsBorder, _filters(), _CONV_X),
    _case(broken.ConvolutionDWNotTransposed, _filters(), _CONV_X),
    _case(broken.ConvolutionDoutNotTransposed, _filters(), _CONV_X),
    _case(broken.PoolingWholeWindow, _pool(2), _POOL_X),
    _case(broken.PoolingFirstElement, _pool(2), _POOL_X),
    _case(broken.BatchNormNoMeanTerm, _norm(3), _BN_X, kwargs=_TRAIN),
    _case(broken.BatchNormNoVarianceTerm, _norm(3), _BN_X, kwargs=_TRAIN),
    _case(broken.BatchNormDgammaNoXn, _norm(3), _BN_X, kwargs=_TRAIN),
    _case(broken.BatchNormDgammaNotSummed, _norm(3), _BN_X, kwargs=_TRAIN),
    # right in train mode: only a test-mode forward shows it
    _case(
        broken.BatchNormTrainBackwardInTestMode,
        _norm(3, running=True),
        _BN_X,
        nondiff=_RUNNING,
        kwargs=_TEST,
    ),
    _case(broken.EmbeddingLosesRepeats, _table(5, 3), _IDX, nondiff=_INDICES),
    _case(broken.DropoutIgnoresMask, _no_args, _DROPOUT_X, kwargs=_TRAIN),
    _case(broken.DropoutNewMaskInBackward, _no_args, _DROPOUT_X, kwargs=_TRAIN),
    # right for one forward/backward pair: a stale-state check (two forwards) shows it
    _case(broken.KeepsFirstInput, _weights(4, 3), _AFFINE_X),
    # weight decay alone (no BatchNorm, no Dropout): every dW is off by 0.1 * W
    _case(broken.MultiLayerNetNoWeightDecayGrad, _DECAY, _NET, nondiff=_NET_NONDIFF, kwargs=_TRAIN),
    _case(broken.MultiLayerNetSwappedGammaBeta, _FULL, _NET, nondiff=_NET_NONDIFF, kwargs=_TRAIN),
    _case(
        broken.MultiLayerNetBatchNormNoMeanTerm, _FULL, _NET, nondiff=_NET_NONDIFF, kwargs=_TRAIN
    ),
    _case(broken.MultiLayerNetSharedActivation, _PLAIN, _NET, nondiff=_NET_NONDIFF),
    # contracts: each trips the finding its docstring names
    # one training step first: a fresh layer's first backward is right (see the class)
    _case(broken.AffineAccumulatesDW, _trained(4, 3), _AFFINE_X),
    _case(broken.SigmoidPreviousOutput, _no_args, _X),
    _case(broken.SigmoidPythonRandomNoise, _no_args, _X),
    _case(broken.SigmoidTooManyGradients, _no_args, _X),
    # saturated x: where float32 also loses the values (elsewhere only the dtype shows)
    _case(broken.SigmoidFloat32Gradient, _no_args, _saturated((3, 4))),
    _case(broken.ReluSquaredDout, _no_args, _RELU_X),
    # second volume: T = 3 steps; the three that forget dh or dc pass at T == 1
    _case(broken.TimeRNNForgetsDh, _recurrent(3, 3), _SEQUENCE),
    _case(broken.TimeLSTMForgetsDh, _recurrent(2, 2, gates=4), _SHORT_SEQUENCE),
    _case(broken.TimeLSTMForgetsDc, _recurrent(2, 2, gates=4), _SHORT_SEQUENCE),
    _case(broken.TimeLSTMDbWrongGateOrder, _recurrent(2, 2, gates=4), _SHORT_SEQUENCE),
    # every draw has an ignored label (-1): without one, both counts are N * T
    _case(
        broken.TimeSoftmaxWithLossBackwardCountsIgnored,
        _no_args,
        _TIME_SCORES,
        nondiff=_TIME_LABELS,
    ),
)

# Right for the fixed case below (a single check passes them), wrong for other shapes
# that their spec covers: `gradverify.fuzz` finds and shrinks those.
SHAPE_DEPENDENT: dict[str, LayerCase] = _by_name(
    # M == 3 outputs: db keeps its shape (3,); the spec reaches M == 1
    _case(broken.AffineDbSqueeze, _weights(4, 3), _AFFINE_X, spec=_AFFINE_SPEC),
    # N == C == 3: dividing by the classes is dividing by the batch size
    _case(
        broken.SoftmaxWithLossBatchFromClasses,
        _no_args,
        _labelled(3, 3, 3),
        nondiff=_LABELS,
        spec=_SOFTMAX_SPEC,
    ),
)


# Backward right for a wrong forward: a gradient check passes them; held against the
# REFERENCE case named by ``reference`` (on the same inputs and weights), they fail.
WRONG_FUNCTION: dict[str, LayerCase] = _by_name(
    _case(broken.SigmoidWrongSlope, _no_args, _X, reference="Sigmoid"),
    _case(broken.SoftmaxWrongAxis, _no_args, _X, reference="Softmax"),
    _case(
        broken.SoftmaxWithLossSummed,
        _no_args,
        _SCORES,
        nondiff=_LABELS,
        reference="SoftmaxWithLoss",
    ),
    _case(
        broken.DropoutNotInverted,
        _no_args,
        _DROPOUT_X,
        kwargs=_TRAIN,
        reference="InvertedDropout",
    ),
    _case(
        broken.DropoutNotInverted,
        _no_args,
        _DROPOUT_X,
        name="DropoutNotInvertedTestMode",
        kwargs=_TEST,
        reference="InvertedDropoutTestMode",
    ),
    _case(
        broken.DropoutModesSwapped,
        _no_args,
        _DROPOUT_X,
        kwargs=_TRAIN,
        reference="InvertedDropout",
    ),
    # every draw has an ignored label (-1): without one, the two means are the same
    _case(
        broken.TimeSoftmaxWithLossMeanCountsIgnored,
        _no_args,
        _TIME_SCORES,
        nondiff=_TIME_LABELS,
        reference="TimeSoftmaxWithLoss",
    ),
)


#: The textbook's and common names of shipped cases, beyond their own in any case.
ALIASES = {
    "mul": "MulLayer",
    "add": "AddLayer",
    "batchnorm": "BatchNormalization",
    "conv": "Convolution",
    "pool": "Pooling",
    "softmaxcrossentropy": "SoftmaxWithLoss",
}


def case_named(name: str) -> LayerCase | None:
    """The shipped case called `name`: exactly, in any case, or by an alias (``Mul``)."""
    cases = {**REFERENCE, **BROKEN, **SHAPE_DEPENDENT, **WRONG_FUNCTION}
    if name in cases:
        return cases[name]
    by_lower = {key.lower(): case for key, case in cases.items()}
    return by_lower.get(name.lower()) or by_lower.get(ALIASES.get(name.lower(), "").lower())


def find_case(obj: object) -> LayerCase | None:
    """The case whose ``target`` is ``obj`` (by identity), else None.

    A target with several cases (Affine, SoftmaxWithLoss) gets its first one, the
    case named after the class.
    """
    every = (*REFERENCE.values(), *BROKEN.values(), *SHAPE_DEPENDENT.values())
    for case in (*every, *WRONG_FUNCTION.values()):
        if case.target is obj:
            return case
    return None

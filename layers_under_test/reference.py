"""The textbook's layers, exactly as *Deep Learning from Scratch* chs. 5-7 write them.

Ported from oreilly-japan/deep-learning-from-scratch (``common/layers.py``,
``common/functions.py``, ``common/gradient.py``, ``common/util.py``,
``ch05/two_layer_net.py``, ``common/multi_layer_net_extend.py``), quirks
included, with type annotations and docstrings added. Every layer keeps what
``backward`` needs from ``forward`` on ``self``; weights are held by reference,
so perturbing ``layer.W`` in place changes the next ``forward``.

One addition to the book, marked where it is made: ``BatchNormalization``
remembers whether its last forward ran in train or test mode, so that its
backward is also right after a test-mode forward (the book's applies the
train-mode formula to stale caches, or raises).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]
Labels = NDArray[Any]  # one-hot float rows or integer class indices


def softmax(x: Array) -> Array:
    """Softmax over the last axis (1-D: one sample; 2-D: one row per sample), max subtracted."""
    x = x - np.max(x, axis=-1, keepdims=True)  # guards exp against overflow
    return np.exp(x) / np.sum(np.exp(x), axis=-1, keepdims=True)


def cross_entropy_error(y: Array, t: Labels) -> float:
    """Mean over the batch of ``-log(y[label] + 1e-7)``; ``t`` one-hot or integer labels.

    The ``1e-7`` inside the log is the book's guard against ``log(0)``; it makes the
    exact derivative differ from ``y - t`` by a relative ``1e-7 / y[label]``.
    """
    if y.ndim == 1:
        t = t.reshape(1, t.size)
        y = y.reshape(1, y.size)
    if t.size == y.size:  # one-hot labels: turn them into class indices
        t = t.argmax(axis=1)
    batch_size = y.shape[0]
    return -np.sum(np.log(y[np.arange(batch_size), t] + 1e-7)) / batch_size


def numerical_gradient(f: Callable[[Array], float], x: Array) -> Array:
    """Central differences with ``h = 1e-4``, perturbing ``x`` in place element by element.

    ``f`` is called with ``x`` itself (the book's ``lambda W: net.loss(x, t)`` ignores
    its argument and relies on the layers sharing ``x``); each element is restored.
    """
    h = 1e-4
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"], op_flags=["readwrite"])
    while not it.finished:
        idx = it.multi_index
        tmp_val = x[idx]
        x[idx] = float(tmp_val) + h
        fxh1 = f(x)
        x[idx] = tmp_val - h
        fxh2 = f(x)
        grad[idx] = (fxh1 - fxh2) / (2 * h)
        x[idx] = tmp_val
        it.iternext()
    return grad


class MulLayer:
    """``out = x * y``; backward swaps the inputs: ``(dout * y, dout * x)``."""

    def __init__(self) -> None:
        self.x: Any = None
        self.y: Any = None

    def forward(self, x: Any, y: Any) -> Any:
        self.x = x
        self.y = y
        return x * y

    def backward(self, dout: Any) -> tuple[Any, Any]:
        dx = dout * self.y  # swap x and y
        dy = dout * self.x
        return dx, dy


class AddLayer:
    """``out = x + y``; backward passes ``dout`` to both inputs unchanged."""

    def __init__(self) -> None:
        pass

    def forward(self, x: Any, y: Any) -> Any:
        return x + y

    def backward(self, dout: Any) -> tuple[Any, Any]:
        dx = dout * 1
        dy = dout * 1
        return dx, dy


class Relu:
    """``out = max(x, 0)``; backward zeroes ``dout`` where ``x <= 0``.

    Book quirk: ``backward`` writes the zeros into the caller's ``dout`` array in
    place and returns that same array, so ``dout`` is modified by the call.
    """

    def __init__(self) -> None:
        self.mask: NDArray[np.bool_] | None = None

    def forward(self, x: Array) -> Array:
        self.mask = x <= 0
        out = x.copy()
        out[self.mask] = 0
        return out

    def backward(self, dout: Array) -> Array:
        dout[self.mask] = 0  # overwrites the caller's dout (book behaviour)
        dx = dout
        return dx


class LeakyRelu:
    """``out = x`` where ``x > 0``, else ``alpha * x``; backward: ``dout`` times 1 or ``alpha``.

    Not in the book's chapter 5; a common exercise after it (``alpha = 0.1`` here).
    """

    def __init__(self, alpha: float = 0.1) -> None:
        self.alpha = alpha
        self.negative: NDArray[np.bool_] | None = None

    def forward(self, x: Array) -> Array:
        self.negative = x <= 0
        out: Array = np.where(self.negative, self.alpha * x, x)
        return out

    def backward(self, dout: Array) -> Array:
        assert self.negative is not None, "call forward first"
        dx: Array = np.where(self.negative, self.alpha * dout, dout)
        return dx


class Sigmoid:
    """``out = 1 / (1 + exp(-x))``; backward uses the cached output: ``dout * (1 - out) * out``."""

    def __init__(self) -> None:
        self.out: Array | None = None

    def forward(self, x: Array) -> Array:
        out: Array = 1 / (1 + np.exp(-x))
        self.out = out
        return out

    def backward(self, dout: Array) -> Array:
        assert self.out is not None, "call forward first"
        dx: Array = dout * (1.0 - self.out) * self.out
        return dx


class Softmax:
    """``out = softmax(x)`` over the last axis (each row sums to 1).

    ``backward`` uses the cached output: ``out * (dout - sum(dout * out))`` per row.
    """

    def __init__(self) -> None:
        self.out: Array | None = None

    def forward(self, x: Array) -> Array:
        self.out = softmax(x)
        return self.out

    def backward(self, dout: Array) -> Array:
        assert self.out is not None, "call forward first"
        dx: Array = self.out * (dout - np.sum(dout * self.out, axis=-1, keepdims=True))
        return dx


class Affine:
    """``out = x @ W + b``, with ``x`` of any rank >= 2 flattened to ``(N, -1)``.

    ``backward`` sets ``dW = x.T @ dout`` and ``db = dout.sum(axis=0)`` and returns
    ``dx = dout @ W.T`` reshaped back to ``x``'s original shape. ``W`` and ``b`` are
    held by reference (not copied). Book quirk: ``self.x`` is a reshaped *view* of
    the caller's ``x`` when ``x`` is contiguous.
    """

    def __init__(self, W: Array, b: Array) -> None:
        self.W = W
        self.b = b
        self.x: Array | None = None
        self.original_x_shape: tuple[int, ...] | None = None
        self.dW: Array | None = None
        self.db: Array | None = None

    def forward(self, x: Array) -> Array:
        self.original_x_shape = x.shape
        x = x.reshape(x.shape[0], -1)
        self.x = x
        out: Array = np.dot(self.x, self.W) + self.b
        return out

    def backward(self, dout: Array) -> Array:
        assert self.x is not None and self.original_x_shape is not None, "call forward first"
        dx = np.dot(dout, self.W.T)
        self.dW = np.dot(self.x.T, dout)
        self.db = np.sum(dout, axis=0)
        return dx.reshape(*self.original_x_shape)


class SoftmaxWithLoss:
    """Softmax followed by cross-entropy: ``forward(x, t)`` returns the mean loss (a scalar).

    ``t`` is one-hot (same size as ``x``) or integer class labels of shape ``(N,)``.
    Book quirks: ``backward(dout=1)`` IGNORES ``dout`` and returns ``(y - t) / N``,
    which is right only when this loss is the last node (``dout == 1``); and
    ``N = t.shape[0]``, so a single 1-D sample is divided by the number of classes
    instead of 1: use 2-D batches.
    """

    def __init__(self) -> None:
        self.loss: float | None = None
        self.y: Array | None = None
        self.t: Labels | None = None

    def forward(self, x: Array, t: Labels) -> float:
        self.t = t
        self.y = softmax(x)
        self.loss = cross_entropy_error(self.y, self.t)
        return self.loss

    def backward(self, dout: Any = 1) -> Array:
        assert self.y is not None and self.t is not None, "call forward first"
        batch_size = self.t.shape[0]
        if self.t.size == self.y.size:  # one-hot labels
            dx = (self.y - self.t) / batch_size
        else:  # integer labels
            dx = self.y.copy()
            dx[np.arange(batch_size), self.t] -= 1
            dx = dx / batch_size
        return dx


class Embedding:
    """Rows of ``W`` picked by integer indices: ``forward(idx)`` returns ``W[idx]``.

    From the second volume (*Deep Learning from Scratch 2*, ``common/layers.py``): the
    weights in ``params = [W]``, their gradient written in place into ``grads[0]``,
    and ``backward`` returns None (the indices have no gradient). An index that
    occurs several times in a batch receives the sum of its rows of ``dout``, which
    ``np.add.at`` accumulates (``dW[idx] += dout`` would keep only one of them).
    """

    def __init__(self, W: Array) -> None:
        self.params = [W]
        self.grads = [np.zeros_like(W)]
        self.idx: NDArray[np.integer[Any]] | None = None

    def forward(self, idx: NDArray[np.integer[Any]]) -> Array:
        (W,) = self.params
        self.idx = idx
        out: Array = W[idx]
        return out

    def backward(self, dout: Array) -> None:
        (dW,) = self.grads
        dW[...] = 0
        np.add.at(dW, self.idx, dout)  # type: ignore[arg-type]


def _global_randn(shape: tuple[int, int]) -> Array:
    """The book's draw: the global ``np.random.randn`` (used when no Generator is given)."""
    return np.random.randn(*shape)


class TwoLayerNet:
    """Affine -> Relu -> Affine -> SoftmaxWithLoss, with parameters in ``self.params``.

    The layers hold the very arrays of ``self.params`` (not copies), which is what
    lets ``numerical_gradient`` perturb ``params`` in place and see the loss move.
    Weights are drawn from ``rng.standard_normal`` when a ``np.random.Generator`` is
    given, else from the global ``np.random.randn`` as in the book; biases start at 0.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: int,
        weight_init_std: float = 0.01,
        rng: np.random.Generator | None = None,
    ) -> None:
        randn = rng.standard_normal if rng is not None else _global_randn
        self.params: dict[str, Array] = {}
        self.params["W1"] = weight_init_std * randn((input_size, hidden_size))
        self.params["b1"] = np.zeros(hidden_size)
        self.params["W2"] = weight_init_std * randn((hidden_size, output_size))
        self.params["b2"] = np.zeros(output_size)

        self.layers: OrderedDict[str, Any] = OrderedDict()
        self.layers["Affine1"] = Affine(self.params["W1"], self.params["b1"])
        self.layers["Relu1"] = Relu()
        self.layers["Affine2"] = Affine(self.params["W2"], self.params["b2"])
        self.lastLayer = SoftmaxWithLoss()

    def predict(self, x: Array) -> Array:
        """Scores before the softmax."""
        for layer in self.layers.values():
            x = layer.forward(x)
        return x

    def loss(self, x: Array, t: Labels) -> float:
        """Mean cross-entropy loss of the batch."""
        y = self.predict(x)
        return self.lastLayer.forward(y, t)

    def accuracy(self, x: Array, t: Labels) -> float:
        """Fraction of samples whose highest score is the label."""
        y = np.argmax(self.predict(x), axis=1)
        if t.ndim != 1:
            t = np.argmax(t, axis=1)
        return float(np.sum(y == t) / float(x.shape[0]))

    def numerical_gradient(self, x: Array, t: Labels) -> dict[str, Array]:
        """Gradients of the loss by the book's central differences (``h = 1e-4``)."""

        def loss_w(_: Array) -> float:
            return self.loss(x, t)

        keys = ("W1", "b1", "W2", "b2")
        return {key: numerical_gradient(loss_w, self.params[key]) for key in keys}

    def gradient(self, x: Array, t: Labels) -> dict[str, Array]:
        """Gradients of the loss by backprop: forward, then ``backward(1)`` back to front."""
        self.loss(x, t)
        dout = self.lastLayer.backward(1)
        for layer in reversed(list(self.layers.values())):
            dout = layer.backward(dout)
        return {
            "W1": self.layers["Affine1"].dW,
            "b1": self.layers["Affine1"].db,
            "W2": self.layers["Affine2"].dW,
            "b2": self.layers["Affine2"].db,
        }


# ---------------------------------------------------------------- ch. 7: im2col / col2im


def im2col(input_data: Array, filter_h: int, filter_w: int, stride: int = 1, pad: int = 0) -> Array:
    """Unfold every filter window of a ``(N, C, H, W)`` batch into one row of a 2-D array.

    Returns ``col`` of shape ``(N * out_h * out_w, C * filter_h * filter_w)``, with
    ``out_h = (H + 2*pad - filter_h) // stride + 1`` (likewise ``out_w``): one row per
    window, ordered by sample, output row, output column; the columns run over channel,
    filter row, filter column. The input is zero-padded by ``pad`` on all four sides.
    """
    N, C, H, W = input_data.shape
    out_h = (H + 2 * pad - filter_h) // stride + 1
    out_w = (W + 2 * pad - filter_w) // stride + 1

    img = np.pad(input_data, [(0, 0), (0, 0), (pad, pad), (pad, pad)], "constant")
    col = np.zeros((N, C, filter_h, filter_w, out_h, out_w))

    for y in range(filter_h):
        y_max = y + stride * out_h
        for x in range(filter_w):
            x_max = x + stride * out_w
            col[:, :, y, x, :, :] = img[:, :, y:y_max:stride, x:x_max:stride]

    col = col.transpose(0, 4, 5, 1, 2, 3).reshape(N * out_h * out_w, -1)
    return col


def col2im(
    col: Array,
    input_shape: tuple[int, ...],
    filter_h: int,
    filter_w: int,
    stride: int = 1,
    pad: int = 0,
) -> Array:
    """The adjoint of ``im2col``: fold each row of ``col`` back onto its window of the image.

    Overlapping windows (``stride < filter size``) ACCUMULATE (``+=``): a pixel shared by
    k windows receives the sum of its k entries, which is what makes ``col2im`` carry a
    gradient back through ``im2col``. The padding is cut off again; the scratch image is
    ``stride - 1`` larger than the padded input, as in the book.
    """
    N, C, H, W = input_shape
    out_h = (H + 2 * pad - filter_h) // stride + 1
    out_w = (W + 2 * pad - filter_w) // stride + 1
    col = col.reshape(N, out_h, out_w, C, filter_h, filter_w).transpose(0, 3, 4, 5, 1, 2)

    img = np.zeros((N, C, H + 2 * pad + stride - 1, W + 2 * pad + stride - 1))
    for y in range(filter_h):
        y_max = y + stride * out_h
        for x in range(filter_w):
            x_max = x + stride * out_w
            img[:, :, y:y_max:stride, x:x_max:stride] += col[:, :, y, x, :, :]

    return img[:, :, pad : H + pad, pad : W + pad]


# ---------------------------------------------------------------- ch. 6: Dropout, BatchNorm


class Dropout:
    """Train mode: ``out = x * mask`` with a fresh random mask; test mode: ``x * (1 - ratio)``.

    ``mask = np.random.rand(*x.shape) > dropout_ratio`` is drawn from the GLOBAL numpy
    RNG on every train-mode forward, so a gradient check must fix that RNG (e.g.
    ``np.random.seed``) before every forward. ``backward`` returns ``dout * mask``.
    Book quirks: the train-mode output is not rescaled by ``1 / (1 - ratio)``; and
    ``backward`` always uses the mask of the last TRAIN-mode forward, so it is wrong
    after a test-mode forward (and raises if there was none).
    """

    def __init__(self, dropout_ratio: float = 0.5) -> None:
        self.dropout_ratio = dropout_ratio
        self.mask: NDArray[np.bool_] | None = None

    def forward(self, x: Array, train_flg: bool = True) -> Array:
        if train_flg:
            self.mask = np.random.rand(*x.shape) > self.dropout_ratio
            return x * self.mask
        else:
            return x * (1.0 - self.dropout_ratio)

    def backward(self, dout: Array) -> Array:
        assert self.mask is not None, "call forward(x, train_flg=True) first"
        return dout * self.mask


class InvertedDropout:
    """CS231n's dropout: train mode keeps units with a mask scaled by ``1 / (1 - ratio)``.

    So the expected activation is the same in both modes and test mode is the
    identity; the book's `Dropout` scales at test time instead.  The mask is drawn
    as the book draws it (``np.random.rand(*x.shape) > dropout_ratio``, the GLOBAL
    RNG), so both keep the same units from the same random state.  ``backward`` is
    right after a forward in either mode.
    """

    def __init__(self, dropout_ratio: float = 0.5) -> None:
        self.dropout_ratio = dropout_ratio
        self.scale: Array | float | None = None

    def forward(self, x: Array, train_flg: bool = True) -> Array:
        if train_flg:
            kept = np.random.rand(*x.shape) > self.dropout_ratio
            self.scale = kept / (1.0 - self.dropout_ratio)
        else:
            self.scale = 1.0
        return x * self.scale

    def backward(self, dout: Array) -> Array:
        assert self.scale is not None, "call forward first"
        return dout * self.scale


class BatchNormalization:
    """``out = gamma * (x - mean) / sqrt(var + 1e-6) + beta``, feature by feature.

    Train mode (``train_flg=True``) normalizes with the batch's own mean and variance
    and updates ``running_mean``/``running_var`` (``momentum * old + (1 - momentum) *
    batch``; both start at zeros of the first batch's width when not given). Test mode
    normalizes with the running statistics and leaves them alone. The running
    statistics change the test-mode output but never the train-mode one.

    ``backward`` sets ``dgamma``, ``dbeta`` and returns ``dx``; in train mode ``dx``
    includes the terms through the batch variance and the batch mean. Book quirks: the
    epsilon is written ``10e-7`` (i.e. 1e-6); a 4-D ``x`` of shape ``(N, C, H, W)`` is
    reshaped to ``(N, C*H*W)``, so it normalizes every (channel, row, column) position
    separately and ``gamma``/``beta`` need ``C*H*W`` entries (not ``C``). Not in the
    book: the test-mode branch also keeps what backward needs, and backward then
    returns the test-mode gradient ``gamma * dout / sqrt(running_var + 1e-6)``.
    """

    def __init__(
        self,
        gamma: Array,
        beta: Array,
        momentum: float = 0.9,
        running_mean: Array | None = None,
        running_var: Array | None = None,
    ) -> None:
        self.gamma = gamma
        self.beta = beta
        self.momentum = momentum
        self.input_shape: tuple[int, ...] | None = None  # 4-D for a conv layer, 2-D for affine

        # used in test mode
        self.running_mean = running_mean
        self.running_var = running_var

        # intermediate results kept for backward
        self.batch_size: int | None = None
        self.xc: Array | None = None
        self.xn: Array | None = None
        self.std: Array | None = None
        self.train_flg = True  # not in the book: the mode of the last forward
        self.dgamma: Array | None = None
        self.dbeta: Array | None = None

    def forward(self, x: Array, train_flg: bool = True) -> Array:
        self.input_shape = x.shape
        if x.ndim != 2:
            N, _, _, _ = x.shape  # only 2-D or 4-D
            x = x.reshape(N, -1)

        out = self.__forward(x, train_flg)

        return out.reshape(*self.input_shape)

    def __forward(self, x: Array, train_flg: bool) -> Array:
        if self.running_mean is None:
            _, D = x.shape
            self.running_mean = np.zeros(D)
            self.running_var = np.zeros(D)
        assert self.running_var is not None

        if train_flg:
            mu = x.mean(axis=0)
            xc = x - mu
            var = np.mean(xc**2, axis=0)
            std = np.sqrt(var + 10e-7)
            xn = xc / std

            self.batch_size = x.shape[0]
            self.xc = xc
            self.xn = xn
            self.std = std
            self.running_mean = self.momentum * self.running_mean + (1 - self.momentum) * mu
            self.running_var = self.momentum * self.running_var + (1 - self.momentum) * var
        else:
            xc = x - self.running_mean
            xn = xc / (np.sqrt(self.running_var + 10e-7))
            self.xn = xn  # not in the book: what a test-mode backward needs
            self.std = np.sqrt(self.running_var + 10e-7)
        self.train_flg = train_flg  # not in the book

        out: Array = self.gamma * xn + self.beta
        return out

    def backward(self, dout: Array) -> Array:
        if dout.ndim != 2:
            N, _, _, _ = dout.shape
            dout = dout.reshape(N, -1)

        dx = self.__backward(dout)

        assert self.input_shape is not None
        dx = dx.reshape(*self.input_shape)
        return dx

    def __backward(self, dout: Array) -> Array:
        assert self.xn is not None and self.std is not None, "call forward first"
        dbeta = dout.sum(axis=0)
        dgamma = np.sum(self.xn * dout, axis=0)
        dxn = self.gamma * dout
        if not self.train_flg:  # not in the book: test mode normalizes by constants
            self.dgamma = dgamma
            self.dbeta = dbeta
            dx_test: Array = dxn / self.std
            return dx_test
        assert self.xc is not None and self.batch_size is not None
        dxc = dxn / self.std
        dstd = -np.sum((dxn * self.xc) / (self.std * self.std), axis=0)
        dvar = 0.5 * dstd / self.std
        dxc += (2.0 / self.batch_size) * self.xc * dvar
        dmu = np.sum(dxc, axis=0)
        dx: Array = dxc - dmu / self.batch_size

        self.dgamma = dgamma
        self.dbeta = dbeta

        return dx


# ---------------------------------------------------------------- ch. 7: Convolution, Pooling


class Convolution:
    """Convolution (cross-correlation) of a ``(N, C, H, W)`` batch by ``W`` of ``(FN, C, FH, FW)``.

    ``forward`` unfolds the input with ``im2col`` and multiplies by ``W`` flattened to
    ``(C*FH*FW, FN)``, plus ``b`` of shape ``(FN,)``; the output is ``(N, FN, out_h,
    out_w)``. ``backward`` sets ``dW`` (reshaped back to ``W``'s shape) and ``db`` and
    returns ``dx`` folded back with ``col2im``, which accumulates where windows overlap.
    ``W`` and ``b`` are held by reference; ``self.x`` is the caller's array itself.
    """

    def __init__(self, W: Array, b: Array, stride: int = 1, pad: int = 0) -> None:
        self.W = W
        self.b = b
        self.stride = stride
        self.pad = pad

        # intermediate results kept for backward
        self.x: Array | None = None
        self.col: Array | None = None
        self.col_W: Array | None = None

        # gradients of the weights and the bias
        self.dW: Array | None = None
        self.db: Array | None = None

    def forward(self, x: Array) -> Array:
        FN, _, FH, FW = self.W.shape
        N, _, H, W = x.shape
        out_h = 1 + int((H + 2 * self.pad - FH) / self.stride)
        out_w = 1 + int((W + 2 * self.pad - FW) / self.stride)

        col = im2col(x, FH, FW, self.stride, self.pad)
        col_W = self.W.reshape(FN, -1).T

        out: Array = np.dot(col, col_W) + self.b
        out = out.reshape(N, out_h, out_w, -1).transpose(0, 3, 1, 2)

        self.x = x
        self.col = col
        self.col_W = col_W

        return out

    def backward(self, dout: Array) -> Array:
        assert self.x is not None and self.col is not None and self.col_W is not None
        FN, C, FH, FW = self.W.shape
        dout = dout.transpose(0, 2, 3, 1).reshape(-1, FN)

        self.db = np.sum(dout, axis=0)
        self.dW = np.dot(self.col.T, dout)
        self.dW = self.dW.transpose(1, 0).reshape(FN, C, FH, FW)

        dcol = np.dot(dout, self.col_W.T)
        dx = col2im(dcol, self.x.shape, FH, FW, self.stride, self.pad)

        return dx


class Pooling:
    """Max pooling over ``pool_h x pool_w`` windows of each channel of a ``(N, C, H, W)`` batch.

    ``backward`` routes each ``dout`` entry to the argmax of its window (the first
    maximum on a tie) and folds the windows back with ``col2im``, so an element that is
    the maximum of several overlapping windows (``stride < pool size``) receives the
    sum. Book quirks: the default stride is 1 (overlapping 2x2 windows; the book's
    networks pass ``stride=2``); and ``forward`` computes the output size without
    ``pad``, so only ``pad=0`` works.
    """

    def __init__(self, pool_h: int, pool_w: int, stride: int = 1, pad: int = 0) -> None:
        self.pool_h = pool_h
        self.pool_w = pool_w
        self.stride = stride
        self.pad = pad

        self.x: Array | None = None
        self.arg_max: NDArray[np.intp] | None = None

    def forward(self, x: Array) -> Array:
        N, C, H, W = x.shape
        out_h = int(1 + (H - self.pool_h) / self.stride)
        out_w = int(1 + (W - self.pool_w) / self.stride)

        col = im2col(x, self.pool_h, self.pool_w, self.stride, self.pad)
        col = col.reshape(-1, self.pool_h * self.pool_w)

        arg_max = np.argmax(col, axis=1)
        out: Array = np.max(col, axis=1)
        out = out.reshape(N, out_h, out_w, C).transpose(0, 3, 1, 2)

        self.x = x
        self.arg_max = arg_max

        return out

    def backward(self, dout: Array) -> Array:
        assert self.x is not None and self.arg_max is not None, "call forward first"
        dout = dout.transpose(0, 2, 3, 1)

        pool_size = self.pool_h * self.pool_w
        dmax: Array = np.zeros((dout.size, pool_size))
        dmax[np.arange(self.arg_max.size), self.arg_max.flatten()] = dout.flatten()
        dmax = dmax.reshape((*dout.shape, pool_size))

        dcol = dmax.reshape(dmax.shape[0] * dmax.shape[1] * dmax.shape[2], -1)
        dx = col2im(dcol, self.x.shape, self.pool_h, self.pool_w, self.stride, self.pad)

        return dx


# ---------------------------------------------------------------- ch. 6: MultiLayerNetExtend


class MultiLayerNetExtend:
    """A fully connected network with weight decay, Dropout and Batch Normalization.

    Per hidden layer: Affine -> [BatchNorm] -> Relu (or Sigmoid) -> [Dropout]; then a
    last Affine and SoftmaxWithLoss. The layers hold the very arrays of ``self.params``
    (``W1``, ``b1``, ``gamma1``, ``beta1``, ...; gamma starts at 1, beta and the biases
    at 0). ``weight_init_std`` is a number or ``'relu'``/``'he'`` (``sqrt(2 / fan_in)``)
    or ``'sigmoid'``/``'xavier'`` (``sqrt(1 / fan_in)``); weights are drawn from
    ``rng.standard_normal`` when a ``np.random.Generator`` is given, else from the
    global ``np.random.randn`` as in the book.

    ``loss`` adds ``0.5 * weight_decay_lambda * sum(W**2)`` over every weight matrix;
    ``gradient`` adds ``weight_decay_lambda * W`` to each ``dW``. Book quirks:
    ``loss(x, t)`` defaults to TEST mode (``train_flg=False``) while ``gradient`` and
    ``numerical_gradient`` run ``loss(x, t, train_flg=True)``: check ``gradient``
    against the train-mode loss, with the global RNG fixed before every loss when
    ``use_dropout`` (each train-mode Dropout draws a new mask). Train-mode BatchNorm
    updates the running statistics on every loss; they do not affect the train-mode
    loss. The keyword is spelled ``dropout_ration``, as in the book.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size_list: list[int],
        output_size: int,
        activation: str = "relu",
        weight_init_std: str | float = "relu",
        weight_decay_lambda: float = 0,
        use_dropout: bool = False,
        dropout_ration: float = 0.5,
        use_batchnorm: bool = False,
        rng: np.random.Generator | None = None,
    ) -> None:
        self.input_size = input_size
        self.output_size = output_size
        self.hidden_size_list = hidden_size_list
        self.hidden_layer_num = len(hidden_size_list)
        self.use_dropout = use_dropout
        self.weight_decay_lambda = weight_decay_lambda
        self.use_batchnorm = use_batchnorm
        self.params: dict[str, Array] = {}

        # weights
        self.__init_weight(weight_init_std, rng)

        # layers
        activation_layer: dict[str, type[Sigmoid] | type[Relu]] = {
            "sigmoid": Sigmoid,
            "relu": Relu,
        }
        self.layers: OrderedDict[str, Any] = OrderedDict()
        for idx in range(1, self.hidden_layer_num + 1):
            self.layers["Affine" + str(idx)] = Affine(
                self.params["W" + str(idx)], self.params["b" + str(idx)]
            )
            if self.use_batchnorm:
                self.params["gamma" + str(idx)] = np.ones(hidden_size_list[idx - 1])
                self.params["beta" + str(idx)] = np.zeros(hidden_size_list[idx - 1])
                self.layers["BatchNorm" + str(idx)] = BatchNormalization(
                    self.params["gamma" + str(idx)], self.params["beta" + str(idx)]
                )

            self.layers["Activation_function" + str(idx)] = activation_layer[activation]()

            if self.use_dropout:
                self.layers["Dropout" + str(idx)] = Dropout(dropout_ration)

        idx = self.hidden_layer_num + 1
        self.layers["Affine" + str(idx)] = Affine(
            self.params["W" + str(idx)], self.params["b" + str(idx)]
        )

        self.last_layer = SoftmaxWithLoss()

    def __init_weight(self, weight_init_std: str | float, rng: np.random.Generator | None) -> None:
        """``W1``, ``W2``, ... scaled standard normal; ``b1``, ``b2``, ... zeros."""
        randn = rng.standard_normal if rng is not None else _global_randn
        all_size_list = [self.input_size, *self.hidden_size_list, self.output_size]
        for idx in range(1, len(all_size_list)):
            scale = weight_init_std
            if str(weight_init_std).lower() in ("relu", "he"):
                scale = np.sqrt(2.0 / all_size_list[idx - 1])  # He: recommended with ReLU
            elif str(weight_init_std).lower() in ("sigmoid", "xavier"):
                scale = np.sqrt(1.0 / all_size_list[idx - 1])  # Xavier: with sigmoid
            shape = (all_size_list[idx - 1], all_size_list[idx])
            self.params["W" + str(idx)] = float(scale) * randn(shape)
            self.params["b" + str(idx)] = np.zeros(all_size_list[idx])

    def predict(self, x: Array, train_flg: bool = False) -> Array:
        """Scores before the softmax; Dropout and BatchNorm layers get ``train_flg``."""
        for key, layer in self.layers.items():
            if "Dropout" in key or "BatchNorm" in key:
                x = layer.forward(x, train_flg)
            else:
                x = layer.forward(x)

        return x

    def loss(self, x: Array, t: Labels, train_flg: bool = False) -> float:
        """Mean cross-entropy loss of the batch plus ``0.5 * lambda * sum(W**2)`` per weight."""
        y = self.predict(x, train_flg)

        weight_decay = 0.0
        for idx in range(1, self.hidden_layer_num + 2):
            W = self.params["W" + str(idx)]
            weight_decay += 0.5 * self.weight_decay_lambda * np.sum(W**2)

        return self.last_layer.forward(y, t) + weight_decay

    def accuracy(self, X: Array, T: Labels) -> float:
        """Fraction of samples whose highest (test-mode) score is the label."""
        Y = self.predict(X, train_flg=False)
        Y = np.argmax(Y, axis=1)
        if T.ndim != 1:
            T = np.argmax(T, axis=1)

        return float(np.sum(Y == T) / float(X.shape[0]))

    def numerical_gradient(self, X: Array, T: Labels) -> dict[str, Array]:
        """Gradients of the train-mode loss by the book's central differences (``h = 1e-4``)."""

        def loss_W(_: Array) -> float:
            return self.loss(X, T, train_flg=True)

        grads = {}
        for idx in range(1, self.hidden_layer_num + 2):
            grads["W" + str(idx)] = numerical_gradient(loss_W, self.params["W" + str(idx)])
            grads["b" + str(idx)] = numerical_gradient(loss_W, self.params["b" + str(idx)])

            if self.use_batchnorm and idx != self.hidden_layer_num + 1:
                grads["gamma" + str(idx)] = numerical_gradient(
                    loss_W, self.params["gamma" + str(idx)]
                )
                grads["beta" + str(idx)] = numerical_gradient(
                    loss_W, self.params["beta" + str(idx)]
                )

        return grads

    def gradient(self, x: Array, t: Labels) -> dict[str, Array]:
        """Gradients of the train-mode loss by backprop, weight decay included in each ``dW``."""
        # forward
        self.loss(x, t, train_flg=True)

        # backward
        dout: Any = 1
        dout = self.last_layer.backward(dout)

        layers = list(self.layers.values())
        layers.reverse()
        for layer in layers:
            dout = layer.backward(dout)

        # collect
        grads = {}
        for idx in range(1, self.hidden_layer_num + 2):
            grads["W" + str(idx)] = (
                self.layers["Affine" + str(idx)].dW
                + self.weight_decay_lambda * self.params["W" + str(idx)]
            )
            grads["b" + str(idx)] = self.layers["Affine" + str(idx)].db

            if self.use_batchnorm and idx != self.hidden_layer_num + 1:
                grads["gamma" + str(idx)] = self.layers["BatchNorm" + str(idx)].dgamma
                grads["beta" + str(idx)] = self.layers["BatchNorm" + str(idx)].dbeta

        return grads

"""The textbook's layers, exactly as *Deep Learning from Scratch* ch. 5 writes them.

Ported from oreilly-japan/deep-learning-from-scratch (``common/layers.py``,
``common/functions.py``, ``common/gradient.py``, ``ch05/two_layer_net.py``),
quirks included, with type annotations and docstrings added. Every layer keeps
what ``backward`` needs from ``forward`` on ``self``; weights are held by
reference, so perturbing ``layer.W`` in place changes the next ``forward``.
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

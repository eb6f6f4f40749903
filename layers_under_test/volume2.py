"""The second volume's core layers, as *Deep Learning from Scratch 2* writes them.

Ported from oreilly-japan/deep-learning-from-scratch-2 (``common/layers.py``:
``MatMul``; ``common/time_layers.py``: ``RNN``, ``TimeRNN``, ``LSTM``, ``TimeLSTM``,
``TimeEmbedding``, ``TimeAffine``, ``TimeSoftmaxWithLoss``), in the book's style:
weights in a ``params`` list, their gradients written in place into the arrays of a
``grads`` list (``self.grads[0][...] = dW``, so that a model which collected those
arrays once sees every update), what backward needs kept on ``self``, and
``backward(dout)`` returning the input gradients. ``Embedding`` is the one in
``layers_under_test.reference``; ``TimeEmbedding`` builds one per time step on it.

The changes to the book, each marked where it is made:

* Everything is computed in the dtype of the inputs (float64 here), not in the
  book's float32 (``np.empty(..., dtype='f')`` for the outputs, the initial states
  and the input gradients): float32 would round every finite difference of a
  float64 check to 7 digits.
* ``TimeEmbedding`` keeps its table in ``params[0]`` only, without the book's alias
  ``self.W``: a ``W`` with no ``dW`` next to it reads as a weight whose gradient
  backward forgot, to any tool that pairs the two (the gradient is ``grads[0]``).
* ``TimeSoftmaxWithLoss.backward`` works on a copy of the cached softmax; the book's
  writes the gradient into the cache itself (``dx = ys``), so a second backward after
  one forward subtracts the labels again and returns a wrong gradient.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from layers_under_test.reference import Array, Embedding, softmax

Ids = NDArray[np.integer[Any]]  # word ids or labels: never differentiated


def sigmoid(x: Array) -> Array:
    """``1 / (1 + exp(-x))``, as the book's ``common/functions.py`` writes it."""
    out: Array = 1 / (1 + np.exp(-x))
    return out


class MatMul:
    """``out = x @ W``: an Affine without bias, the weight in ``params = [W]``.

    ``backward`` writes ``dW = x.T @ dout`` INTO ``grads[0]`` (``[...] =``): a model
    gathers its layers' ``grads`` arrays once, so rebinding ``grads[0]`` to a new array
    would leave the model's optimizer reading the old one.
    """

    def __init__(self, W: Array) -> None:
        self.params = [W]
        self.grads = [np.zeros_like(W)]
        self.x: Array | None = None

    def forward(self, x: Array) -> Array:
        (W,) = self.params
        out: Array = np.dot(x, W)
        self.x = x
        return out

    def backward(self, dout: Array) -> Array:
        assert self.x is not None, "call forward first"
        (W,) = self.params
        dx: Array = np.dot(dout, W.T)
        dW = np.dot(self.x.T, dout)
        self.grads[0][...] = dW
        return dx


class RNN:
    """One step of a vanilla RNN: ``h_next = tanh(h_prev @ Wh + x @ Wx + b)``.

    ``backward(dh_next)`` returns ``(dx, dh_prev)``: the state's gradient goes back to
    the previous step, which is what ``TimeRNN`` chains. Uses the cached ``h_next``
    for tanh's slope, ``1 - h_next**2``.
    """

    def __init__(self, Wx: Array, Wh: Array, b: Array) -> None:
        self.params = [Wx, Wh, b]
        self.grads = [np.zeros_like(Wx), np.zeros_like(Wh), np.zeros_like(b)]
        self.cache: tuple[Array, Array, Array] | None = None

    def forward(self, x: Array, h_prev: Array) -> Array:
        Wx, Wh, b = self.params
        t = np.dot(h_prev, Wh) + np.dot(x, Wx) + b
        h_next: Array = np.tanh(t)

        self.cache = (x, h_prev, h_next)
        return h_next

    def backward(self, dh_next: Array) -> tuple[Array, Array]:
        assert self.cache is not None, "call forward first"
        Wx, Wh, _ = self.params
        x, h_prev, h_next = self.cache

        dt = dh_next * (1 - h_next**2)
        db = np.sum(dt, axis=0)
        dWh = np.dot(h_prev.T, dt)
        dh_prev: Array = np.dot(dt, Wh.T)
        dWx = np.dot(x.T, dt)
        dx: Array = np.dot(dt, Wx.T)

        self.grads[0][...] = dWx
        self.grads[1][...] = dWh
        self.grads[2][...] = db

        return dx, dh_prev


class TimeRNN:
    """``T`` RNN steps over ``xs`` of shape ``(N, T, D)``, returning every ``h``: ``(N, T, H)``.

    All steps share ``params`` (each step's RNN holds the same arrays), so the weight
    gradients are the sums over the steps. ``backward`` walks the steps backwards and
    adds the gradient that step ``t + 1`` sends back through its ``h_prev`` to
    ``dhs[:, t]``: without it, only a sequence of one step comes out right. The
    gradient sent back past the first step is kept in ``self.dh`` (an encoder hands it
    on). ``stateful=True`` starts each forward from the last one's final ``h`` (until
    ``reset_state``); ``set_state(h)`` sets it; otherwise every forward starts from 0.
    """

    def __init__(self, Wx: Array, Wh: Array, b: Array, stateful: bool = False) -> None:
        self.params = [Wx, Wh, b]
        self.grads = [np.zeros_like(Wx), np.zeros_like(Wh), np.zeros_like(b)]
        self.layers: list[RNN] | None = None

        self.h: Array | None = None
        self.dh: Array | None = None
        self.stateful = stateful

    def forward(self, xs: Array) -> Array:
        Wx, _, _ = self.params
        N, T, _ = xs.shape
        _, H = Wx.shape

        self.layers = []
        hs = np.empty((N, T, H), dtype=xs.dtype)  # the book: dtype='f'

        if not self.stateful or self.h is None:
            self.h = np.zeros((N, H), dtype=xs.dtype)  # the book: dtype='f'

        for t in range(T):
            layer = RNN(*self.params)
            self.h = layer.forward(xs[:, t, :], self.h)
            hs[:, t, :] = self.h
            self.layers.append(layer)

        return hs

    def backward(self, dhs: Array) -> Array:
        assert self.layers is not None, "call forward first"
        Wx, _, _ = self.params
        N, T, _ = dhs.shape
        D, _ = Wx.shape

        dxs = np.empty((N, T, D), dtype=dhs.dtype)  # the book: dtype='f'
        dh: Any = 0
        grads: list[Any] = [0, 0, 0]
        for t in reversed(range(T)):
            layer = self.layers[t]
            dx, dh = layer.backward(dhs[:, t, :] + dh)
            dxs[:, t, :] = dx

            for i, grad in enumerate(layer.grads):
                grads[i] += grad

        for i, grad in enumerate(grads):
            self.grads[i][...] = grad
        self.dh = dh

        return dxs

    def set_state(self, h: Array) -> None:
        self.h = h

    def reset_state(self) -> None:
        self.h = None


class LSTM:
    """One LSTM step, the four gates side by side: ``Wx`` (D, 4H), ``Wh`` (H, 4H), ``b`` (4H,).

    ``A = x @ Wx + h_prev @ Wh + b`` is cut into the gates in the book's order
    ``f, g, i, o`` (forget, candidate, input, output); ``c_next = f * c_prev + g * i``
    and ``h_next = o * tanh(c_next)``. ``forward`` returns ``(h_next, c_next)`` and
    ``backward(dh_next, dc_next)`` returns ``(dx, dh_prev, dc_prev)``; ``dA`` is
    stacked in the same order, ``(df, dg, di, do)``, which is what lines up the
    gradient of each weight column (and of ``b``) with its gate.
    """

    def __init__(self, Wx: Array, Wh: Array, b: Array) -> None:
        self.params = [Wx, Wh, b]
        self.grads = [np.zeros_like(Wx), np.zeros_like(Wh), np.zeros_like(b)]
        self.cache: tuple[Array, ...] | None = None

    def forward(self, x: Array, h_prev: Array, c_prev: Array) -> tuple[Array, Array]:
        Wx, Wh, b = self.params
        _, H = h_prev.shape

        A = np.dot(x, Wx) + np.dot(h_prev, Wh) + b

        f = A[:, :H]
        g = A[:, H : 2 * H]
        i = A[:, 2 * H : 3 * H]
        o = A[:, 3 * H :]

        f = sigmoid(f)
        g = np.tanh(g)
        i = sigmoid(i)
        o = sigmoid(o)

        c_next: Array = f * c_prev + g * i
        h_next: Array = o * np.tanh(c_next)

        self.cache = (x, h_prev, c_prev, i, f, g, o, c_next)
        return h_next, c_next

    def backward(self, dh_next: Array, dc_next: Array | float) -> tuple[Array, Array, Array]:
        assert self.cache is not None, "call forward first"
        Wx, Wh, _ = self.params
        x, h_prev, c_prev, i, f, g, o, c_next = self.cache

        tanh_c_next = np.tanh(c_next)

        ds = dc_next + (dh_next * o) * (1 - tanh_c_next**2)

        dc_prev: Array = ds * f

        di = ds * g
        df = ds * c_prev
        do = dh_next * tanh_c_next
        dg = ds * i

        di *= i * (1 - i)
        df *= f * (1 - f)
        do *= o * (1 - o)
        dg *= 1 - g**2

        dA = np.hstack((df, dg, di, do))

        dWh = np.dot(h_prev.T, dA)
        dWx = np.dot(x.T, dA)
        db = dA.sum(axis=0)

        self.grads[0][...] = dWx
        self.grads[1][...] = dWh
        self.grads[2][...] = db

        dx: Array = np.dot(dA, Wx.T)
        dh_prev: Array = np.dot(dA, Wh.T)

        return dx, dh_prev, dc_prev


class TimeLSTM:
    """``T`` LSTM steps over ``xs`` of shape ``(N, T, D)``, returning every ``h``: ``(N, T, H)``.

    As ``TimeRNN``, with two states: ``backward`` carries both ``dh`` (added to
    ``dhs[:, t]``) and ``dc`` from step ``t + 1`` back to step ``t``; dropping either
    leaves a one-step sequence right and every longer one wrong. ``self.dh`` keeps
    the gradient sent back past the first step; ``stateful``, ``set_state(h, c)`` and
    ``reset_state`` as in ``TimeRNN``.
    """

    def __init__(self, Wx: Array, Wh: Array, b: Array, stateful: bool = False) -> None:
        self.params = [Wx, Wh, b]
        self.grads = [np.zeros_like(Wx), np.zeros_like(Wh), np.zeros_like(b)]
        self.layers: list[LSTM] | None = None

        self.h: Array | None = None
        self.c: Array | None = None
        self.dh: Array | None = None
        self.stateful = stateful

    def forward(self, xs: Array) -> Array:
        _, Wh, _ = self.params
        N, T, _ = xs.shape
        H = Wh.shape[0]

        self.layers = []
        hs = np.empty((N, T, H), dtype=xs.dtype)  # the book: dtype='f'

        if not self.stateful or self.h is None:
            self.h = np.zeros((N, H), dtype=xs.dtype)  # the book: dtype='f'
        if not self.stateful or self.c is None:
            self.c = np.zeros((N, H), dtype=xs.dtype)  # the book: dtype='f'

        for t in range(T):
            layer = LSTM(*self.params)
            self.h, self.c = layer.forward(xs[:, t, :], self.h, self.c)
            hs[:, t, :] = self.h

            self.layers.append(layer)

        return hs

    def backward(self, dhs: Array) -> Array:
        assert self.layers is not None, "call forward first"
        Wx, _, _ = self.params
        N, T, _ = dhs.shape
        D = Wx.shape[0]

        dxs = np.empty((N, T, D), dtype=dhs.dtype)  # the book: dtype='f'
        dh: Any = 0
        dc: Any = 0

        grads: list[Any] = [0, 0, 0]
        for t in reversed(range(T)):
            layer = self.layers[t]
            dx, dh, dc = layer.backward(dhs[:, t, :] + dh, dc)
            dxs[:, t, :] = dx
            for i, grad in enumerate(layer.grads):
                grads[i] += grad

        for i, grad in enumerate(grads):
            self.grads[i][...] = grad
        self.dh = dh
        return dxs

    def set_state(self, h: Array, c: Array | None = None) -> None:
        self.h, self.c = h, c

    def reset_state(self) -> None:
        self.h, self.c = None, None


class TimeEmbedding:
    """Rows of ``W`` for a ``(N, T)`` array of word ids: ``out[n, t] = W[xs[n, t]]``, ``(N, T, D)``.

    One ``Embedding`` per time step, all on the same table; ``backward`` sums their
    ``grads[0]`` over the steps into ``grads[0]`` and returns None (word ids have no
    gradient). An id repeated within a step is accumulated by the Embedding's
    ``np.add.at``; one repeated across steps, by the sum over steps.
    """

    def __init__(self, W: Array) -> None:
        self.params = [W]
        self.grads = [np.zeros_like(W)]
        self.layers: list[Embedding] | None = None
        # the book also keeps self.W = W: left out (see the module docstring)

    def forward(self, xs: Ids) -> Array:
        (W,) = self.params
        N, T = xs.shape
        _, D = W.shape

        out = np.empty((N, T, D), dtype=W.dtype)  # the book: dtype='f'
        self.layers = []

        for t in range(T):
            layer = Embedding(W)
            out[:, t, :] = layer.forward(xs[:, t])
            self.layers.append(layer)

        return out

    def backward(self, dout: Array) -> None:
        assert self.layers is not None, "call forward first"
        _, T, _ = dout.shape

        grad: Any = 0
        for t in range(T):
            layer = self.layers[t]
            layer.backward(dout[:, t, :])
            grad += layer.grads[0]

        self.grads[0][...] = grad
        return None


class TimeAffine:
    """``out = x @ W + b`` at every time step of ``x`` ``(N, T, D)``, as one ``(N*T, D)`` product.

    ``backward`` sums ``dW`` and ``db`` over batch and time alike and returns ``dx``
    reshaped back to ``(N, T, D)``.
    """

    def __init__(self, W: Array, b: Array) -> None:
        self.params = [W, b]
        self.grads = [np.zeros_like(W), np.zeros_like(b)]
        self.x: Array | None = None

    def forward(self, x: Array) -> Array:
        N, T, _ = x.shape
        W, b = self.params

        rx = x.reshape(N * T, -1)
        out: Array = np.dot(rx, W) + b
        self.x = x
        return out.reshape(N, T, -1)

    def backward(self, dout: Array) -> Array:
        assert self.x is not None, "call forward first"
        x = self.x
        N, T, _ = x.shape
        W, _ = self.params

        dout = dout.reshape(N * T, -1)
        rx = x.reshape(N * T, -1)

        db = np.sum(dout, axis=0)
        dW = np.dot(rx.T, dout)
        dx: Array = np.dot(dout, W.T)
        dx = dx.reshape(*x.shape)

        self.grads[0][...] = dW
        self.grads[1][...] = db

        return dx


class TimeSoftmaxWithLoss:
    """Softmax cross-entropy at every step of ``xs`` ``(N, T, V)``, averaged over the KEPT labels.

    ``ts`` holds integer labels ``(N, T)`` (or one-hot ``(N, T, V)``); a label equal to
    ``ignore_label = -1`` (padding) adds nothing to the loss and gets no gradient,
    and the mean is over the labels kept: ``loss = -sum(mask * log y[t]) / mask.sum()``.
    ``backward`` divides by the same ``mask.sum()``; unlike the first volume's
    SoftmaxWithLoss it scales by ``dout``. No ``1e-7`` inside the log here (the book's
    second volume dropped it).
    """

    def __init__(self) -> None:
        self.params: list[Array] = []
        self.grads: list[Array] = []
        self.cache: tuple[Ids, Array, NDArray[np.bool_], tuple[int, int, int]] | None = None
        self.ignore_label = -1

    def forward(self, xs: Array, ts: Ids) -> float:
        N, T, V = xs.shape

        if ts.ndim == 3:  # one-hot labels
            ts = ts.argmax(axis=2)

        mask = ts != self.ignore_label

        # batch and time as one axis
        xs = xs.reshape(N * T, V)
        ts = ts.reshape(N * T)
        mask = mask.reshape(N * T)

        ys = softmax(xs)
        ls = np.log(ys[np.arange(N * T), ts])  # an ignored label reads class -1: masked next
        ls *= mask  # ignored labels add nothing to the loss
        loss = -np.sum(ls)
        loss /= mask.sum()

        self.cache = (ts, ys, mask, (N, T, V))
        return float(loss)

    def backward(self, dout: Any = 1) -> Array:
        assert self.cache is not None, "call forward first"
        ts, ys, mask, (N, T, V) = self.cache

        dx = ys.copy()  # the book: dx = ys, which overwrites the cache (see the module)
        dx[np.arange(N * T), ts] -= 1
        dx *= dout
        dx /= mask.sum()
        dx *= mask[:, np.newaxis]  # ignored labels get no gradient

        dx = dx.reshape((N, T, V))

        return dx

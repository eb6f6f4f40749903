"""Correct layers computed by other formulas than the textbook's: a comparison with the
shipped reference layers must pass them (their differences are rounding, and the book's
deliberate ``log(y + 1e-7)``), or it would fail correct student code."""

from __future__ import annotations

import numpy as np

from layers_under_test.reference import Array


def _log_softmax(x: Array) -> Array:
    top = np.max(x, axis=-1, keepdims=True)
    return x - top - np.log(np.sum(np.exp(x - top), axis=-1, keepdims=True))


class SigmoidViaTanh:
    """The sigmoid as ``(1 + tanh(x / 2)) / 2``; reference: ``Sigmoid``."""

    def forward(self, x: Array) -> Array:
        self.out: Array = 0.5 * (1 + np.tanh(x / 2))
        return self.out

    def backward(self, dout: Array) -> Array:
        dx: Array = dout * self.out * (1 - self.out)
        return dx


class SoftmaxViaLog:
    """The softmax as ``exp(log_softmax(x))``; reference: ``Softmax``."""

    def forward(self, x: Array) -> Array:
        self.out: Array = np.exp(_log_softmax(x))
        return self.out

    def backward(self, dout: Array) -> Array:
        dx: Array = self.out * (dout - np.sum(dout * self.out, axis=-1, keepdims=True))
        return dx


class SoftmaxWithLossLogSumExp:
    """Softmax cross-entropy through log-sum-exp, with no ``1e-7`` inside a log; one-hot
    labels; reference: ``SoftmaxWithLoss``."""

    def forward(self, x: Array, t: Array) -> float:
        log_y = _log_softmax(x)
        self.y, self.t = np.exp(log_y), t
        return float(-np.mean(np.sum(t * log_y, axis=1)))

    def backward(self, dout: float = 1.0) -> Array:
        dx: Array = dout * (self.y - self.t) / len(self.t)
        return dx

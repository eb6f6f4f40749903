"""Layers written the way public from-scratch code writes them, not the textbook's way.

Each is checked with a declaration of its convention (see `gradverify.check`'s
``methods``, ``params``, ``returns``, ``optimizer``, ``flush`` and
``backward_args``) and nothing else; each has a twin with one gradient bug, which
the same declaration must let the check catch.  The styles are those of public
repositories: ``forward_pass``/``backward_pass`` with optimizers updating the
weights inside backward (ML-From-Scratch), ``back_propogate`` with ``dEdW``
(course code), gradients returned as ``(dx, [dW, db])``, numpy-ml's lazily built
``parameters``/``gradients`` dicts with inputs kept until ``flush_gradients()``,
and function pairs whose backward takes forward's inputs again.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class StepOptimizer:
    """Plain gradient descent, as ML-From-Scratch's optimizers: ``update`` returns the new w."""

    def __init__(self, learning_rate: float = 0.01) -> None:
        self.learning_rate = learning_rate

    def update(self, w: np.ndarray, grad_wrt_w: np.ndarray) -> np.ndarray:
        return w - self.learning_rate * grad_wrt_w


class DenseWithOptimizer:
    """ML-From-Scratch's Dense: forward_pass/backward_pass, weights updated in backward."""

    def __init__(self, W: np.ndarray, w0: np.ndarray) -> None:
        self.W, self.w0 = W, w0
        self.W_opt, self.w0_opt = StepOptimizer(), StepOptimizer()
        self.layer_input: np.ndarray | None = None
        self.trainable = True

    def forward_pass(self, X: np.ndarray, training: bool = True) -> np.ndarray:
        self.layer_input = X
        return X.dot(self.W) + self.w0

    def backward_pass(self, accum_grad: np.ndarray) -> np.ndarray:
        W = self.W  # the weights forward used: the update below replaces them
        if self.trainable:
            assert self.layer_input is not None
            grad_w = self.layer_input.T.dot(accum_grad)
            grad_w0 = self._bias_gradient(accum_grad)
            self.W = self.W_opt.update(self.W, grad_w)
            self.w0 = self.w0_opt.update(self.w0, grad_w0)
        return accum_grad.dot(W.T)

    def _bias_gradient(self, accum_grad: np.ndarray) -> np.ndarray:
        return np.sum(accum_grad, axis=0, keepdims=True)


class DenseWithOptimizerMeanBias(DenseWithOptimizer):
    """Dense handing its optimizer the batch mean of accum_grad as w0's gradient, not the sum."""

    def _bias_gradient(self, accum_grad: np.ndarray) -> np.ndarray:
        return np.mean(accum_grad, axis=0, keepdims=True)


class BackPropogateLayer:
    """Course code: forward_pass/back_propogate, gradients stored as dEdW and dEdB."""

    def __init__(self, W: np.ndarray, B: np.ndarray) -> None:
        self.W, self.B = W, B
        self.X: np.ndarray | None = None
        self.dEdW: np.ndarray | None = None
        self.dEdB: np.ndarray | None = None

    def forward_pass(self, X: np.ndarray) -> np.ndarray:
        self.X = X
        return np.dot(X, self.W) + self.B

    def back_propogate(self, dEdY: np.ndarray) -> np.ndarray:
        assert self.X is not None
        self.dEdW = self._weight_gradient(dEdY)
        self.dEdB = np.sum(dEdY, axis=0)
        return np.dot(dEdY, self.W.T)

    def _weight_gradient(self, dEdY: np.ndarray) -> np.ndarray:
        assert self.X is not None
        return np.dot(self.X.T, dEdY)


class BackPropogateLayerAveraged(BackPropogateLayer):
    """back_propogate dividing dEdW by the batch size although forward sums over the batch."""

    def _weight_gradient(self, dEdY: np.ndarray) -> np.ndarray:
        assert self.X is not None
        return np.dot(self.X.T, dEdY) / len(dEdY)


class AffineReturningList:
    """An Affine whose backward returns the input's gradient and a list of the weights'."""

    def __init__(self, W: np.ndarray, b: np.ndarray) -> None:
        self.W, self.b = W, b
        self.x: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.x = x
        return x @ self.W + self.b

    def backward(self, dout: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        assert self.x is not None
        return dout @ self.W.T, [self.x.T @ dout, self._bias_gradient(dout)]

    def _bias_gradient(self, dout: np.ndarray) -> np.ndarray:
        return dout.sum(axis=0)


class AffineReturningListMeanBias(AffineReturningList):
    """AffineReturningList returning the batch mean of dout as db, not the sum."""

    def _bias_gradient(self, dout: np.ndarray) -> np.ndarray:
        return dout.mean(axis=0)


class ReLUActivation:
    """numpy-ml's activation objects: ``fn`` and ``grad``."""

    def fn(self, z: np.ndarray) -> np.ndarray:
        return np.clip(z, 0, np.inf)

    def grad(self, x: np.ndarray) -> np.ndarray:
        return (x > 0).astype(x.dtype)


class FullyConnectedFlushed:
    """numpy-ml's FullyConnected: parameters made on the first forward, every input kept
    in ``self.X`` and gradients summed into ``self.gradients`` until flush_gradients()."""

    def __init__(self, n_out: int, seed: int = 0) -> None:
        self.n_out, self.n_in = n_out, None
        self.act_fn = ReLUActivation()
        self.is_initialized = False
        self.parameters: dict[str, np.ndarray] = {}
        self.gradients: dict[str, np.ndarray] = {}
        self.derived_variables: dict[str, list[np.ndarray]] = {"Z": []}
        self.X: list[np.ndarray] = []
        self._rng = np.random.default_rng(seed)

    def _init_params(self) -> None:
        W = self._rng.standard_normal((self.n_in, self.n_out))
        b = 0.1 * self._rng.standard_normal((1, self.n_out))
        self.parameters = {"W": W, "b": b}
        self.gradients = {"W": np.zeros_like(W), "b": np.zeros_like(b)}
        self.is_initialized = True

    def flush_gradients(self) -> None:
        self.X = []
        for key in self.derived_variables:
            self.derived_variables[key] = []
        for key, value in self.gradients.items():
            self.gradients[key] = np.zeros_like(value)

    def forward(self, X: np.ndarray, retain_derived: bool = True) -> np.ndarray:
        if not self.is_initialized:
            self.n_in = X.shape[1]
            self._init_params()
        Z = X @ self.parameters["W"] + self.parameters["b"]
        if retain_derived:
            self.X.append(X)
            self.derived_variables["Z"].append(Z)
        return self.act_fn.fn(Z)

    def backward(self, dLdy: Any, retain_grads: bool = True) -> Any:
        douts = dLdy if isinstance(dLdy, list) else [dLdy]
        dX = []
        for dy, x, z in zip(douts, self.X, self.derived_variables["Z"]):
            dz = self._pre_activation_gradient(dy, z)
            dX.append(dz @ self.parameters["W"].T)
            if retain_grads:
                self.gradients["W"] += x.T @ dz
                self.gradients["b"] += dz.sum(axis=0, keepdims=True)
        return dX[0] if len(self.X) == 1 else dX

    def _pre_activation_gradient(self, dy: np.ndarray, z: np.ndarray) -> np.ndarray:
        return dy * self.act_fn.grad(z)


class FullyConnectedFlushedNoActivationGrad(FullyConnectedFlushed):
    """FullyConnectedFlushed passing dLdy through the ReLU without its derivative."""

    def _pre_activation_gradient(self, dy: np.ndarray, z: np.ndarray) -> np.ndarray:
        return dy


def fc_forward(x: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A fully connected layer as a function returning its output alone (no cache)."""
    return x @ W + b


def fc_backward(dout: np.ndarray, W: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, ...]:
    """Its backward, given forward's inputs again, returning (dW, db, dx)."""
    return x.T @ dout, dout.sum(axis=0), dout @ W.T


def fc_backward_mean_bias(dout: np.ndarray, W: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, ...]:
    """fc_backward returning the batch mean of dout as db, not the sum."""
    return x.T @ dout, dout.mean(axis=0), dout @ W.T

"""Deliberately broken twins of the reference layers: one real student bug each.

Each class subclasses its reference layer and overrides only the broken method.
The first line of each docstring names the bug; the rest says when it shows.
gradverify must catch every one of them (``layers_under_test.registry.BROKEN``
says how to build and feed each so that it can).
"""

from __future__ import annotations

import numpy as np

from layers_under_test.reference import (
    AddLayer,
    Affine,
    Array,
    Labels,
    MulLayer,
    Relu,
    Sigmoid,
    SoftmaxWithLoss,
    TwoLayerNet,
    cross_entropy_error,
    softmax,
)

# ---------------------------------------------------------------- Mul / Add


class MulNoSwap(MulLayer):
    """Mul without the swap: dx = dout * x and dy = dout * y instead of dout * y and dout * x.

    Wrong wherever x != y.
    """

    def backward(self, dout: Array) -> tuple[Array, Array]:
        return dout * self.x, dout * self.y


class MulSwappedOutputs(MulLayer):
    """Mul returning its gradients in the wrong order: (dy, dx) instead of (dx, dy).

    For a two-input product this yields exactly what MulNoSwap yields (dout * x for
    x, dout * y for y): the two bugs differ in the code, not in the numbers.
    """

    def backward(self, dout: Array) -> tuple[Array, Array]:
        dx = dout * self.y
        dy = dout * self.x
        return dy, dx


class AddDropsDout(AddLayer):
    """Add that ignores dout: returns ones for both inputs instead of dout.

    Right only when dout is all ones, so a check that seeds backward with 1 misses it;
    a random dout exposes it.
    """

    def backward(self, dout: Array) -> tuple[Array, Array]:
        return np.ones_like(dout), np.ones_like(dout)


# ---------------------------------------------------------------- Relu


class ReluNoMask(Relu):
    """Relu without the mask in backward: dx = dout everywhere, also where x <= 0.

    Wrong wherever x <= 0.
    """

    def backward(self, dout: Array) -> Array:
        return dout


class ReluMaskInverted(Relu):
    """Relu with the mask inverted: zeroes dout where x > 0 and passes it where x <= 0."""

    def backward(self, dout: Array) -> Array:
        dout[~self.mask] = 0  # type: ignore[operator]
        return dout


class ReluForwardInPlace(Relu):
    """Relu forward without the copy: zeroes the caller's x in place (out = x, not x.copy()).

    The gradient formula is right; the bug is that forward mutates its input. A check
    that feeds a fresh copy to every forward sees correct values; it shows as the
    input changing across forward (and then as wrong numbers if the checker perturbs
    that same, now clipped, array).
    """

    def forward(self, x: Array) -> Array:
        self.mask = x <= 0
        out = x
        out[self.mask] = 0
        return out


# ---------------------------------------------------------------- Sigmoid


class SigmoidMissingOneMinus(Sigmoid):
    """Sigmoid without the (1 - out) factor: dx = dout * out."""

    def backward(self, dout: Array) -> Array:
        return dout * self.out  # type: ignore[operator]


class SigmoidSignFlip(Sigmoid):
    """Sigmoid with the sign flipped: dx = -dout * (1 - out) * out."""

    def backward(self, dout: Array) -> Array:
        return -dout * (1.0 - self.out) * self.out  # type: ignore[operator]


class SigmoidUsesInput(Sigmoid):
    """Sigmoid derivative taken at the input, not the output: dx = dout * (1 - x) * x."""

    def forward(self, x: Array) -> Array:
        self.x = x
        return super().forward(x)

    def backward(self, dout: Array) -> Array:
        return dout * (1.0 - self.x) * self.x


# ---------------------------------------------------------------- Affine


class AffineNoTranspose(Affine):
    """Affine without transposing x in dW: dW = x @ dout instead of x.T @ dout.

    np.dot raises unless x is square (N == D), so the registry feeds a square x; then
    dW has the right shape (D, M) and wrong values (unless x is symmetric).
    """

    def backward(self, dout: Array) -> Array:
        dx = np.dot(dout, self.W.T)
        self.dW = np.dot(self.x, dout)  # type: ignore[arg-type]
        self.db = np.sum(dout, axis=0)
        return dx.reshape(*self.original_x_shape)  # type: ignore[misc]


class AffineDxNoTranspose(Affine):
    """Affine without transposing W in dx: dx = dout @ W instead of dout @ W.T.

    np.dot raises unless W is square (D == M), so the registry uses a square W; then
    dx has the right shape and wrong values (unless W is symmetric).
    """

    def backward(self, dout: Array) -> Array:
        dx = np.dot(dout, self.W)
        self.dW = np.dot(self.x.T, dout)  # type: ignore[union-attr]
        self.db = np.sum(dout, axis=0)
        return dx.reshape(*self.original_x_shape)  # type: ignore[misc]


class AffineDWTransposed(Affine):
    """Affine with dW transposed: dW = dout.T @ x instead of x.T @ dout.

    Runs only when W is square (D == M); the registry uses a square W.
    """

    def backward(self, dout: Array) -> Array:
        dx = super().backward(dout)
        assert self.x is not None
        self.dW = np.dot(dout.T, self.x)
        return dx


class AffineDbWrongAxis(Affine):
    """Affine summing db over the wrong axis: db = dout.sum(axis=1), one value per sample.

    db has shape (N,) instead of (M,): a shape error when N != M. The registry uses
    N == M, where the shape is right and only the values are wrong.
    """

    def backward(self, dout: Array) -> Array:
        dx = super().backward(dout)
        self.db = np.sum(dout, axis=1)
        return dx


class AffineDbMean(Affine):
    """Affine averaging db instead of summing it: db = dout.mean(axis=0), off by a factor 1/N.

    Right only for a batch of one (N == 1).
    """

    def backward(self, dout: Array) -> Array:
        dx = super().backward(dout)
        self.db = np.mean(dout, axis=0)
        return dx


class AffineMissingDW(Affine):
    """Affine that never writes dW: backward sets db and returns dx, dW stays None."""

    def backward(self, dout: Array) -> Array:
        dx = np.dot(dout, self.W.T)
        self.db = np.sum(dout, axis=0)
        return dx.reshape(*self.original_x_shape)  # type: ignore[misc]


class AffineNoReshapeBack(Affine):
    """Affine without the reshape back: dx keeps the flattened shape (N, C*H*W) for a 4-D x.

    Invisible for a 2-D x; the registry feeds a (2, 3, 2, 2) x.
    """

    def backward(self, dout: Array) -> Array:
        dx = np.dot(dout, self.W.T)
        self.dW = np.dot(self.x.T, dout)  # type: ignore[union-attr]
        self.db = np.sum(dout, axis=0)
        return dx


# ---------------------------------------------------------------- SoftmaxWithLoss


class SoftmaxWithLossNoDivN(SoftmaxWithLoss):
    """SoftmaxWithLoss without the batch mean in backward: dx = y - t, N times too large.

    Written for one-hot labels, as students write it; right only for N == 1.
    """

    def backward(self, dout: object = 1) -> Array:
        return self.y - self.t  # type: ignore[operator]


class SoftmaxWithLossSignFlip(SoftmaxWithLoss):
    """SoftmaxWithLoss with the sign flipped: dx = (t - y) / N.

    Written for one-hot labels, as students write it.
    """

    def backward(self, dout: object = 1) -> Array:
        batch_size = self.t.shape[0]  # type: ignore[union-attr]
        return (self.t - self.y) / batch_size  # type: ignore[operator]


class SoftmaxWithLossStaleCache(SoftmaxWithLoss):
    """SoftmaxWithLoss that keeps the labels of its first forward and backpropagates those forever.

    The loss uses the labels it is given; backward uses the cached first ones. A single
    forward/backward pair, or any check whose forwards all use the same labels, sees
    correct gradients; it shows only after a forward with *different* labels, i.e. to
    a stale-state check (forward twice, then backward).
    """

    def forward(self, x: Array, t: Labels) -> float:
        if self.t is None:  # the bug: labels stored once, never refreshed
            self.t = t
        self.y = softmax(x)
        self.loss = cross_entropy_error(self.y, t)
        return self.loss


# ---------------------------------------------------------------- TwoLayerNet


class TwoLayerNetSwappedKeys(TwoLayerNet):
    """TwoLayerNet.gradient returning b1's gradient under 'b2' and b2's under 'b1'.

    With hidden_size != output_size a shape check already catches it; the registry
    uses hidden_size == output_size so that the shapes match and only values differ.
    """

    def gradient(self, x: Array, t: Labels) -> dict[str, Array]:
        grads = super().gradient(x, t)
        grads["b1"], grads["b2"] = grads["b2"], grads["b1"]
        return grads


class TwoLayerNetCopiedParams(TwoLayerNet):
    """TwoLayerNet whose layers hold copies of the params arrays instead of the arrays themselves.

    backward is a correct gradient of the layers' own weights, but changing
    params['W1'] (an optimizer step, a finite-difference probe) does not change the
    loss: the numeric gradient with respect to params is zero.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: int,
        weight_init_std: float = 0.01,
        rng: np.random.Generator | None = None,
    ) -> None:
        super().__init__(input_size, hidden_size, output_size, weight_init_std, rng)
        p = self.params
        self.layers["Affine1"] = Affine(p["W1"].copy(), p["b1"].copy())
        self.layers["Affine2"] = Affine(p["W2"].copy(), p["b2"].copy())


class TwoLayerNetNoReluBackward(TwoLayerNet):
    """TwoLayerNet.gradient skipping Relu1 in backward: dout flows through as if Relu were identity.

    Wrong for W1 and b1 wherever a hidden unit is inactive (pre-activation <= 0);
    invisible when every unit is active for every sample (registry: 1 seed in ~300).
    """

    def gradient(self, x: Array, t: Labels) -> dict[str, Array]:
        self.loss(x, t)
        dout = self.lastLayer.backward(1)
        for name, layer in reversed(self.layers.items()):
            if name == "Relu1":  # the bug
                continue
            dout = layer.backward(dout)
        return {
            "W1": self.layers["Affine1"].dW,
            "b1": self.layers["Affine1"].db,
            "W2": self.layers["Affine2"].dW,
            "b2": self.layers["Affine2"].db,
        }

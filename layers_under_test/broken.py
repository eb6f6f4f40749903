"""Deliberately broken twins of the reference layers: one real student bug each.

Each class subclasses its reference layer and overrides only the broken method.
The first line of each docstring names the bug; the rest says when it shows.
gradverify must catch every one of them (``layers_under_test.registry.BROKEN``
says how to build and feed each so that it can), except two kinds: the
shape-dependent twins, which are right for some shapes: a fixed-shape check passes
them and only fuzzing over shapes finds them (``registry.SHAPE_DEPENDENT``), and
the wrong-function twins, whose backward is right for their wrong forward: a
gradient check passes them and only a trusted reference shows the bug
(``registry.WRONG_FUNCTION``).
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np

from layers_under_test.reference import (
    AddLayer,
    Affine,
    Array,
    BatchNormalization,
    Convolution,
    Dropout,
    Embedding,
    InvertedDropout,
    Labels,
    LeakyRelu,
    MulLayer,
    MultiLayerNetExtend,
    Pooling,
    Relu,
    Sigmoid,
    Softmax,
    SoftmaxWithLoss,
    TwoLayerNet,
    col2im,
    cross_entropy_error,
    softmax,
)
from layers_under_test.volume2 import TimeLSTM, TimeRNN, TimeSoftmaxWithLoss

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


class LeakyReluSignFlipped(LeakyRelu):
    """LeakyRelu with the negative branch's slope negated: -alpha * dout where x <= 0."""

    def backward(self, dout: Array) -> Array:
        assert self.negative is not None, "call forward first"
        dx: Array = np.where(self.negative, -self.alpha * dout, dout)
        return dx


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


class AffineForgetsLastFeature(Affine):
    """Affine whose dW drops the last input feature: dW[:-1] = x[:, :-1].T @ dout, last row 0.

    An error confined to one row of dW (an off-by-one slice); on a large W it hides in
    any projection over the whole tensor.
    """

    def backward(self, dout: Array) -> Array:
        dx = super().backward(dout)
        assert self.x is not None and self.dW is not None
        self.dW[:-1] = np.dot(self.x[:, :-1].T, dout)
        self.dW[-1] = 0
        return dx


# ---------------------------------------------------------------- SoftmaxWithLoss


class SoftmaxWithLossNoDivN(SoftmaxWithLoss):
    """SoftmaxWithLoss without the batch mean in backward: dx = y - t, N times too large.

    Written for one-hot labels, as students write it; right only for N == 1.
    """

    def backward(self, dout: object = 1) -> Array:
        return self.y - self.t  # type: ignore[operator]


class SoftmaxWithLossLargeEpsilon(SoftmaxWithLoss):
    """SoftmaxWithLoss whose forward guards the log with 1e-3, not 1e-7: log(y + 1e-3).

    backward stays (y - t) / N, the gradient of log(y): the two part wherever a
    labelled probability is not far above 1e-3 (a relative 1e-3 / y), nearly everywhere.
    """

    def forward(self, x: Array, t: Labels) -> float:
        self.t = t
        self.y = softmax(x)
        labels = t.argmax(axis=1) if t.size == self.y.size else t
        picked = self.y[np.arange(self.y.shape[0]), labels]
        self.loss = float(-np.sum(np.log(picked + 1e-3)) / self.y.shape[0])
        return self.loss


class SoftmaxWithLossSignFlip(SoftmaxWithLoss):
    """SoftmaxWithLoss with the sign flipped: dx = (t - y) / N.

    Written for one-hot labels, as students write it.
    """

    def backward(self, dout: object = 1) -> Array:
        batch_size = self.t.shape[0]  # type: ignore[union-attr]
        return (self.t - self.y) / batch_size  # type: ignore[operator]


class SoftmaxWithLossLastClassUnlabelled(SoftmaxWithLoss):
    """SoftmaxWithLoss subtracting the labels of every class but the last: dx[:, -1] = y / N.

    An error confined to one column of dx (a slice ``[:, :-1]`` where ``[:, :]`` was
    meant); it shows only in rows whose label is the last class.
    """

    def backward(self, dout: object = 1) -> Array:
        assert self.y is not None and self.t is not None
        batch_size = self.t.shape[0]
        dx = self.y.copy()
        dx[:, :-1] -= self.t[:, :-1]
        return dx / batch_size


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


class TwoLayerNetReluNoMask(TwoLayerNet):
    """TwoLayerNet whose Relu1 passes dout everywhere (ReluNoMask): an activation's bug.

    Relu1 holds no weight, so the bug shows only in W1 and b1, upstream of it;
    invisible when every hidden unit is active for every sample.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.layers["Relu1"] = ReluNoMask()


class TwoLayerNetAffineDbMean(TwoLayerNet):
    """TwoLayerNet whose Affine1 averages db over the batch (AffineDbMean): only b1 is wrong."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.layers["Affine1"] = AffineDbMean(self.params["W1"], self.params["b1"])


class TwoLayerNetLossNoDivN(TwoLayerNet):
    """TwoLayerNet whose lastLayer forgets the batch mean (SoftmaxWithLossNoDivN): every
    gradient N times too large."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.lastLayer = SoftmaxWithLossNoDivN()


# ---------------------------------------------------------------- Convolution


def _col2im_overwrite(
    col: Array,
    input_shape: tuple[int, ...],
    filter_h: int,
    filter_w: int,
    stride: int = 1,
    pad: int = 0,
) -> Array:
    """The book's col2im with ``=`` for ``+=``: where windows overlap, the last one wins."""
    N, C, H, W = input_shape
    out_h = (H + 2 * pad - filter_h) // stride + 1
    out_w = (W + 2 * pad - filter_w) // stride + 1
    col = col.reshape(N, out_h, out_w, C, filter_h, filter_w).transpose(0, 3, 4, 5, 1, 2)

    img = np.zeros((N, C, H + 2 * pad + stride - 1, W + 2 * pad + stride - 1))
    for y in range(filter_h):
        y_max = y + stride * out_h
        for x in range(filter_w):
            x_max = x + stride * out_w
            img[:, :, y:y_max:stride, x:x_max:stride] = col[:, :, y, x, :, :]  # the bug
    return img[:, :, pad : H + pad, pad : W + pad]


class ConvolutionCol2imOverwrite(Convolution):
    """Convolution whose col2im assigns (=) instead of accumulating (+=) over overlapping windows.

    dW and db are right; dx keeps only the last window's share at every pixel that
    several windows cover. Right only when windows do not overlap (stride >= filter
    size); the registry uses a 3x3 filter with stride 1.
    """

    def backward(self, dout: Array) -> Array:
        FN, _, FH, FW = self.W.shape
        super().backward(dout)  # dW and db
        assert self.x is not None and self.col_W is not None
        dcol = np.dot(dout.transpose(0, 2, 3, 1).reshape(-1, FN), self.col_W.T)
        return _col2im_overwrite(dcol, self.x.shape, FH, FW, self.stride, self.pad)


class ConvolutionDxDropsBorder(Convolution):
    """Convolution whose dx loses its border: col2im cropped one pixel too far on each side.

    An error confined to the border of every image (the padding arithmetic of col2im
    gone wrong); the interior of dx is right.
    """

    def backward(self, dout: Array) -> Array:
        dx = super().backward(dout)
        dx[:, :, [0, -1], :] = 0
        dx[:, :, :, [0, -1]] = 0
        return dx


class ConvolutionDWNotTransposed(Convolution):
    """Convolution reshaping dW without the transpose: (col.T @ dout).reshape(FN, C, FH, FW).

    col.T @ dout is (C*FH*FW, FN): reshaping it straight to W's shape runs and scrambles
    the values (right only for a single filter, FN == 1). dx and db are right.
    """

    def backward(self, dout: Array) -> Array:
        FN, C, FH, FW = self.W.shape
        dx = super().backward(dout)
        assert self.col is not None
        flat = dout.transpose(0, 2, 3, 1).reshape(-1, FN)
        self.dW = np.dot(self.col.T, flat).reshape(FN, C, FH, FW)  # the bug: no .T first
        return dx


class ConvolutionDoutNotTransposed(Convolution):
    """Convolution flattening dout without moving channels last: dout.reshape(-1, FN).

    forward laid its output out as (N, out_h, out_w, FN) before transposing, so the
    rows of the flattened dout no longer match the rows of col: dx, dW and db all mix
    filters and positions (right only for FN == 1 or a 1x1 output).
    """

    def backward(self, dout: Array) -> Array:
        FN, C, FH, FW = self.W.shape
        assert self.x is not None and self.col is not None and self.col_W is not None
        flat = dout.reshape(-1, FN)  # the bug: no transpose(0, 2, 3, 1) first

        self.db = np.sum(flat, axis=0)
        self.dW = np.dot(self.col.T, flat).transpose(1, 0).reshape(FN, C, FH, FW)
        dcol = np.dot(flat, self.col_W.T)
        return col2im(dcol, self.x.shape, FH, FW, self.stride, self.pad)


# ---------------------------------------------------------------- Pooling


class PoolingWholeWindow(Pooling):
    """Max pooling routing dout to every element of its window instead of only the argmax.

    The gradient of a window's mean times its size, not of its max: wrong for every
    window larger than 1x1.
    """

    def backward(self, dout: Array) -> Array:
        pool_size = self.pool_h * self.pool_w
        flat = dout.transpose(0, 2, 3, 1).flatten()
        dcol = np.repeat(flat[:, None], pool_size, axis=1)  # the bug: no argmax
        dcol = dcol.reshape(flat.size // dout.shape[1], -1)
        assert self.x is not None
        return col2im(dcol, self.x.shape, self.pool_h, self.pool_w, self.stride, self.pad)


class PoolingFirstElement(Pooling):
    """Max pooling routing dout to the first element of each window instead of its argmax.

    Right only for windows whose maximum happens to sit in their top-left corner.
    """

    def backward(self, dout: Array) -> Array:
        pool_size = self.pool_h * self.pool_w
        flat = dout.transpose(0, 2, 3, 1).flatten()
        dmax = np.zeros((flat.size, pool_size))
        dmax[:, 0] = flat  # the bug: column 0, not self.arg_max
        dcol = dmax.reshape(flat.size // dout.shape[1], -1)
        assert self.x is not None
        return col2im(dcol, self.x.shape, self.pool_h, self.pool_w, self.stride, self.pad)


# ---------------------------------------------------------------- Embedding


class EmbeddingLosesRepeats(Embedding):
    """Embedding writing dW[idx] = dout: an index seen twice in the batch keeps one row of dout.

    ``dW[idx] += dout`` has the same bug (fancy indexing does not accumulate); right
    only while every index in the batch is different.
    """

    def backward(self, dout: Array) -> None:
        (dW,) = self.grads
        dW[...] = 0
        dW[self.idx] = dout


# ---------------------------------------------------------------- BatchNormalization


def _flat(dout: Array) -> Array:
    """dout as (N, D), as BatchNormalization.backward reshapes it."""
    return dout if dout.ndim == 2 else dout.reshape(dout.shape[0], -1)


class BatchNormNoMeanTerm(BatchNormalization):
    """BatchNorm backward without the mean term: dx = dxc, missing - sum(dxc) / N.

    Forgets that the batch mean depends on every x: the returned dx does not sum to
    zero over the batch as it must in train mode. dgamma and dbeta are right.
    """

    def backward(self, dout: Array) -> Array:
        dx = super().backward(dout)  # dgamma and dbeta
        assert self.xc is not None and self.std is not None and self.batch_size is not None
        dxn = self.gamma * _flat(dout)
        dxc = dxn / self.std
        dstd = -np.sum((dxn * self.xc) / (self.std * self.std), axis=0)
        dvar = 0.5 * dstd / self.std
        dxc += (2.0 / self.batch_size) * self.xc * dvar
        return dxc.reshape(dx.shape)  # the bug: no "- np.sum(dxc, axis=0) / N"


class BatchNormNoVarianceTerm(BatchNormalization):
    """BatchNorm backward without the variance term: treats std as a constant, dx = dxc - mean(dxc).

    Forgets that the batch variance depends on every x. dgamma and dbeta are right.
    """

    def backward(self, dout: Array) -> Array:
        dx = super().backward(dout)  # dgamma and dbeta
        assert self.std is not None and self.batch_size is not None
        dxc = self.gamma * _flat(dout) / self.std  # the bug: no dstd/dvar term
        return (dxc - np.sum(dxc, axis=0) / self.batch_size).reshape(dx.shape)


class BatchNormDgammaNoXn(BatchNormalization):
    """BatchNorm with dgamma = dout.sum(axis=0), missing the factor xn (a copy of dbeta).

    dx and dbeta are right; dgamma is wrong unless xn is all ones.
    """

    def backward(self, dout: Array) -> Array:
        dx = super().backward(dout)
        self.dgamma = np.sum(_flat(dout), axis=0)
        return dx


class BatchNormDgammaNotSummed(BatchNormalization):
    """BatchNorm with dgamma = dout * xn, not summed over the batch: shape (N, D), not (D,)."""

    def backward(self, dout: Array) -> Array:
        dx = super().backward(dout)
        assert self.xn is not None
        self.dgamma = _flat(dout) * self.xn
        return dx


class BatchNormTrainBackwardInTestMode(BatchNormalization):
    """BatchNorm applying the train-mode backward after a test-mode forward (the book's own code).

    In test mode the mean and variance are the running statistics, constants, so dx =
    gamma * dout / std; the train formula subtracts mean and variance terms as if they
    depended on the batch. The book's backward does this with the caches of the last
    train-mode forward (or raises without one); this twin uses the current batch's.
    Right in train mode; the registry checks it with train_flg=False.
    """

    def forward(self, x: Array, train_flg: bool = True) -> Array:
        out = super().forward(x, train_flg)
        if not train_flg:  # keep what the train formula reads, from this batch
            assert self.running_mean is not None
            self.xc = _flat(x) - self.running_mean
            self.batch_size = x.shape[0]
        return out

    def backward(self, dout: Array) -> Array:
        self.train_flg = True  # the bug: whatever the mode of the forward
        return super().backward(dout)


# ---------------------------------------------------------------- Dropout


class DropoutIgnoresMask(Dropout):
    """Dropout backward returning dout without the mask: dropped units get a gradient.

    Wrong wherever the mask dropped a unit, i.e. for any input with a dropped unit.
    """

    def backward(self, dout: Array) -> Array:
        return dout


class DropoutNewMaskInBackward(Dropout):
    """Dropout drawing a new mask in backward instead of reusing the forward's.

    Backward multiplies by a second, independent draw from the global RNG: wrong
    wherever the two masks differ (about half the units). Invisible to a checker that
    reseeds the global RNG with the same seed before backward as before forward.
    """

    def backward(self, dout: Array) -> Array:
        mask = np.random.rand(*dout.shape) > self.dropout_ratio  # the bug
        return dout * mask


# ---------------------------------------------------------------- stale state


class KeepsFirstInput(Affine):
    """Affine that caches its FIRST input forever and computes dW from it after every forward.

    forward uses the x it is given; backward's dW = x_first.T @ dout. Right for a single
    forward/backward pair, or when every forward sees the same x; it shows only after
    a forward with a different x, i.e. to a stale-state check. dx and db are right.
    """

    def forward(self, x: Array) -> Array:
        self.original_x_shape = x.shape
        x = x.reshape(x.shape[0], -1)
        if self.x is None:  # the bug: stored once, never refreshed
            self.x = x
        out: Array = np.dot(x, self.W) + self.b
        return out


# ---------------------------------------------------------------- contracts

# What a gradient's values alone may not show: each twin below trips one of the
# contract findings of gradverify.contracts (named in its docstring).


class AffineAccumulatesDW(Affine):
    """Affine adding into dW on every backward (dW += x.T @ dout) instead of overwriting it.

    Finding "backward not repeatable". The first backward of a fresh layer is right;
    every later one returns the sum over all backward calls so far, as in a training
    loop that never resets the gradient. The registry builds it after one training
    step (a forward and backward on another batch), so the values are wrong too.
    """

    def backward(self, dout: Array) -> Array:
        assert self.x is not None and self.original_x_shape is not None, "call forward first"
        dx = np.dot(dout, self.W.T)
        if self.dW is None:
            self.dW = np.zeros_like(self.W)
        self.dW += np.dot(self.x.T, dout)  # the bug: += instead of =
        self.db = np.sum(dout, axis=0)
        return dx.reshape(*self.original_x_shape)


class SigmoidPreviousOutput(Sigmoid):
    """Sigmoid whose backward uses the output of the forward BEFORE the last one.

    Finding "stale state". Right when the last two forwards saw the same x (a checker
    that always forwards the same inputs); wrong after a forward on other inputs.
    """

    def __init__(self) -> None:
        super().__init__()
        self.previous: Array | None = None

    def forward(self, x: Array) -> Array:
        self.previous = self.out  # the bug: backward reads this, not self.out
        return super().forward(x)

    def backward(self, dout: Array) -> Array:
        out = self.previous if self.previous is not None else self.out
        assert out is not None, "call forward first"
        dx: Array = dout * (1.0 - out) * out
        return dx


class SigmoidPythonRandomNoise(Sigmoid):
    """Sigmoid multiplying its output by (1 + 1e-3 * random.random()), from Python's random module.

    Finding "nondeterministic forward": a checker can reset numpy's generators before
    every call, not Python's, so finite differences see a different function each time.
    backward is the exact gradient of the last forward (noise factor included).
    """

    def forward(self, x: Array) -> Array:
        self.noise = 1.0 + 1e-3 * random.random()  # the bug: a draw nobody can hold fixed
        return super().forward(x) * self.noise

    def backward(self, dout: Array) -> Array:
        return super().backward(dout) * self.noise


class SigmoidTooManyGradients(Sigmoid):
    """Sigmoid backward returning two gradients, [dx, dout], for its single input.

    Finding "too many gradients" (a two-input layer's `return dx, dy` copied into a
    one-input layer). dx itself is right.
    """

    def backward(self, dout: Array) -> list[Array]:  # type: ignore[override]
        return [super().backward(dout), dout]  # the bug: one gradient per input


class SigmoidFloat32Gradient(Sigmoid):
    """Sigmoid computing its gradient in float32: dx comes back float32 for float64 inputs.

    Finding "gradient dtype" (an error: digits are lost). Rounding out to float32 keeps
    about 7 of its digits, so 1 - out keeps few of them where the sigmoid saturates
    (out near 1): the registry feeds x near 15, where dx is off by up to tens of
    percent. For moderate x, dx is right to float32 precision and only its dtype shows.
    """

    def backward(self, dout: Array) -> Array:
        assert self.out is not None, "call forward first"
        out = self.out.astype(np.float32)  # the bug: float32 for float64 inputs
        dx: Array = dout.astype(np.float32) * (1.0 - out) * out
        return dx


class ReluSquaredDout(Relu):
    """Relu backward not linear in dout: dx = dout * |dout| where x > 0, instead of dout.

    Finding "not linear in dout". Right wherever |dout| == 1, so a check that seeds
    backward with ones misses it; a random dout (or doubling it) shows it.
    """

    def backward(self, dout: Array) -> Array:
        assert self.mask is not None, "call forward first"
        dx = dout * np.abs(dout)  # the bug
        dx[self.mask] = 0
        return dx


# ---------------------------------------------------------------- shape-dependent

# Right for some shapes and wrong for others: a single fixed-shape check can pass
# them; fuzzing over shapes finds the failing ones (layers_under_test.registry.
# SHAPE_DEPENDENT, not BROKEN, holds them).


class AffineDbSqueeze(Affine):
    """Affine squeezing db: db = np.squeeze(dout.sum(axis=0, keepdims=True)).

    Right for M > 1; for a single output (M == 1) db is a 0-d array instead of
    shape (1,).
    """

    def backward(self, dout: Array) -> Array:
        dx = super().backward(dout)
        self.db = np.squeeze(dout.sum(axis=0, keepdims=True))  # the bug
        return dx


class SoftmaxWithLossBatchFromClasses(SoftmaxWithLoss):
    """SoftmaxWithLoss dividing by t.shape[1] (the number of classes) instead of the batch size.

    Written for one-hot labels. Right only when the batch size equals the number of
    classes (N == C).
    """

    def backward(self, dout: object = 1) -> Array:
        assert self.y is not None and self.t is not None, "call forward first"
        dx: Array = (self.y - self.t) / self.t.shape[1]  # the bug: shape[0] is N
        return dx


# ---------------------------------------------------------------- MultiLayerNetExtend


class MultiLayerNetNoWeightDecayGrad(MultiLayerNetExtend):
    """MultiLayerNetExtend.gradient without the weight decay: dW misses + lambda * W.

    The loss includes 0.5 * lambda * sum(W**2); the gradient does not. Right only for
    weight_decay_lambda == 0; the registry uses 0.1.
    """

    def gradient(self, x: Array, t: Labels) -> dict[str, Array]:
        grads = super().gradient(x, t)
        for idx in range(1, self.hidden_layer_num + 2):
            grads["W" + str(idx)] = self.layers["Affine" + str(idx)].dW  # the bug
        return grads


class MultiLayerNetSwappedGammaBeta(MultiLayerNetExtend):
    """MultiLayerNetExtend.gradient returning each BatchNorm's dbeta as gamma's, dgamma as beta's.

    gamma and beta have the same shape, so only the values show it (BatchNorm nets;
    invisible only if every unit after every BatchNorm is off or dropped).
    """

    def gradient(self, x: Array, t: Labels) -> dict[str, Array]:
        grads = super().gradient(x, t)
        for idx in range(1, self.hidden_layer_num + 1):
            layer = self.layers["BatchNorm" + str(idx)]
            grads["gamma" + str(idx)] = layer.dbeta  # the bug: the keys swapped
            grads["beta" + str(idx)] = layer.dgamma
        return grads


class MultiLayerNetBatchNormNoMeanTerm(MultiLayerNetExtend):
    """MultiLayerNetExtend whose BatchNorm1 drops the mean's term of dx (BatchNormNoMeanTerm).

    BatchNorm1 holds gamma1 and beta1, which come out right: its bug shows in the
    weights upstream of it (W1, b1).
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        layer = self.layers["BatchNorm1"]
        broken = BatchNormNoMeanTerm(layer.gamma, layer.beta)
        broken.running_mean, broken.running_var = layer.running_mean, layer.running_var
        self.layers["BatchNorm1"] = broken


class MultiLayerNetSharedActivation(MultiLayerNetExtend):
    """MultiLayerNetExtend whose two activations are one Sigmoid object: its second forward
    overwrites the output the first one's backward needs.

    Each layer is right alone; only the network's wiring is wrong (W1 and b1 show it).
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.layers["Activation_function2"] = self.layers["Activation_function1"]


# ---------------------------------------------------------------- wrong functions


class SigmoidWrongSlope(Sigmoid):
    """Computes ``1 / (1 + exp(-2x))``, with the matching backward ``2 * dout * out * (1 - out)``.

    A gradient check passes it: backward is right for the function forward computes.
    """

    def forward(self, x: Array) -> Array:
        self.out = 1 / (1 + np.exp(-2 * x))
        return self.out

    def backward(self, dout: Array) -> Array:
        assert self.out is not None, "call forward first"
        dx: Array = 2 * dout * (1.0 - self.out) * self.out
        return dx


class SoftmaxWrongAxis(Softmax):
    """Normalizes over axis 0 (the batch), with the matching backward over axis 0."""

    def forward(self, x: Array) -> Array:
        exp = np.exp(x - np.max(x, axis=0, keepdims=True))
        self.out = exp / np.sum(exp, axis=0, keepdims=True)
        return self.out

    def backward(self, dout: Array) -> Array:
        assert self.out is not None, "call forward first"
        dx: Array = self.out * (dout - np.sum(dout * self.out, axis=0, keepdims=True))
        return dx


class SoftmaxWithLossSummed(SoftmaxWithLoss):
    """Sums the loss over the batch instead of averaging it, with backward ``y - t`` to match."""

    def forward(self, x: Array, t: Labels) -> float:
        return super().forward(x, t) * t.shape[0]

    def backward(self, dout: object = 1) -> Array:
        assert self.t is not None
        return super().backward(dout) * self.t.shape[0]


class DropoutNotInverted(InvertedDropout):
    """Scales at test time (``x * (1 - ratio)``) instead of train time, backward to match.

    The book's convention, wrong where inverted dropout is asked for (CS231n): both
    modes differ from the reference by the factor ``1 - ratio``.
    """

    def forward(self, x: Array, train_flg: bool = True) -> Array:
        inverted = super().forward(x, train_flg)
        self.scale = (1.0 - self.dropout_ratio) * (self.scale if train_flg else 1.0)  # type: ignore[operator]
        return inverted * (1.0 - self.dropout_ratio)


class DropoutModesSwapped(InvertedDropout):
    """Drops units when ``train_flg`` is False and passes x through when it is True."""

    def forward(self, x: Array, train_flg: bool = True) -> Array:
        return super().forward(x, not train_flg)


# ---------------------------------------------------------------- second volume: RNN, LSTM

# Twins of layers_under_test.volume2. A bug in what backward carries from step t + 1
# back to step t leaves a one-step sequence right: the registry feeds T = 3.


def _backward_through_time(time_layer: Any, dhs: Array, step: Any) -> Array:
    """The book's backward of TimeRNN and TimeLSTM, walking the steps from the last one;
    ``step(layer, dh_t, dh, dc) -> (dx, dh, dc)`` is the line a through-time twin gets
    wrong (the book's: ``layer.backward(dh_t + dh, dc)``; an RNN step has no dc)."""
    assert time_layer.layers is not None, "call forward first"
    N, T, _ = dhs.shape
    dxs = np.empty((N, T, time_layer.params[0].shape[0]), dtype=dhs.dtype)
    dh: Any = 0
    dc: Any = 0
    grads: list[Any] = [0, 0, 0]
    for t in reversed(range(T)):
        layer = time_layer.layers[t]
        dxs[:, t, :], dh, dc = step(layer, dhs[:, t, :], dh, dc)
        for i, grad in enumerate(layer.grads):
            grads[i] += grad
    for i, grad in enumerate(grads):
        time_layer.grads[i][...] = grad
    time_layer.dh = dh
    return dxs


class TimeRNNForgetsDh(TimeRNN):
    """TimeRNN whose backward does not carry dh back through time: backward(dhs[:, t]), no + dh.

    Each step sees only the gradient of its own output, not what the later steps send
    back through its h: right only for a sequence of one step (T == 1), where there is
    nothing to carry.
    """

    def backward(self, dhs: Array) -> Array:
        # the bug: dh_t alone, not dh_t + dh
        return _backward_through_time(self, dhs, lambda layer, d, dh, dc: (*layer.backward(d), 0))


class TimeLSTMForgetsDh(TimeLSTM):
    """TimeLSTM whose backward does not carry dh back through time: backward(dhs[:, t], dc).

    The cell state's gradient still flows back; what the later steps send back through
    h (their gates read it) is lost. Right only for a sequence of one step (T == 1).
    """

    def backward(self, dhs: Array) -> Array:
        # the bug: dh_t alone, not dh_t + dh
        return _backward_through_time(self, dhs, lambda layer, d, dh, dc: layer.backward(d, dc))


class TimeLSTMForgetsDc(TimeLSTM):
    """TimeLSTM whose backward does not carry dc back through time: every step gets dc_next = 0.

    The hidden state's gradient flows back, the cell state's (the LSTM's long path) does
    not. Right only for a sequence of one step (T == 1).
    """

    def backward(self, dhs: Array) -> Array:
        # the bug: dc_next = 0 at every step, not the later step's dc_prev
        return _backward_through_time(self, dhs, lambda layer, d, dh, dc: layer.backward(d + dh, 0))


class TimeLSTMDbWrongGateOrder(TimeLSTM):
    """TimeLSTM whose LSTM steps stack db in another gate order: (di, df, do, dg), not dA's.

    CS231n's gate order (i, f, o, g) for the bias, the book's (f, g, i, o) for A and
    the weights: each gate's bias receives another gate's gradient, a bug of the LSTM
    step, not of time (a sequence of one step shows it too). dWx, dWh and dxs are right.
    Stacking each step's db so is the book's db, summed over the steps, with its four
    blocks reordered: written so.
    """

    def backward(self, dhs: Array) -> Array:
        dxs = super().backward(dhs)
        df, dg, di, do = np.split(self.grads[2], 4)
        self.grads[2][...] = np.hstack((di, df, do, dg))  # the bug: not dA's order
        return dxs


# ---------------------------------------------------------------- second volume: time softmax


class TimeSoftmaxWithLossBackwardCountsIgnored(TimeSoftmaxWithLoss):
    """TimeSoftmaxWithLoss whose backward divides by N * T, ignored labels too; forward by the kept.

    forward divides by the kept labels (mask.sum()), backward by every position: as
    soon as one label is -1, all of dx is kept / (N * T) times the right gradient.
    Right only when no label is ignored.
    """

    def backward(self, dout: Any = 1) -> Array:
        assert self.cache is not None, "call forward first"
        ts, ys, mask, (N, T, V) = self.cache
        dx = ys.copy()
        dx[np.arange(N * T), ts] -= 1
        dx *= dout
        dx /= N * T  # the bug: forward divides by mask.sum()
        dx *= mask[:, np.newaxis]
        return dx.reshape((N, T, V))


# The wrong-function twin (registry.WRONG_FUNCTION): forward and backward agree.


class TimeSoftmaxWithLossMeanCountsIgnored(TimeSoftmaxWithLoss):
    """Averages the loss over all N * T positions, ignored ones included, with backward to match.

    The ignored labels still add nothing to the sum, but count in the mean: loss and
    gradient are kept / (N * T) times the reference's wherever some label is -1.
    """

    def forward(self, xs: Array, ts: Any) -> float:
        loss = super().forward(xs, ts)
        assert self.cache is not None
        _, _, mask, (N, T, _) = self.cache
        return loss * mask.sum() / (N * T)  # the bug: the mean over every position

    def backward(self, dout: Any = 1) -> Array:
        assert self.cache is not None, "call forward first"
        _, _, mask, (N, T, _) = self.cache
        return super().backward(dout) * mask.sum() / (N * T)

"""The chapter 6-7 layers without gradverify: references match finite differences, twins do not.

Dropout (and a network with Dropout) draws its mask from the global numpy RNG, so
every forward and every loss here runs right after ``np.random.seed(seed)``.
Train-mode BatchNormalization updates its running statistics on every forward; they
do not change the train-mode output (tested below), so they may drift freely.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from layers_under_test import broken, reference
from layers_under_test.registry import BROKEN, REFERENCE, LayerCase

from .test_layers_under_test import numeric_gradient

SEEDS = range(5)
RTOL = 1e-4  # relative to the largest entry of the gradient
ATOL = 1e-8  # rounding noise (~1e-10) where the gradient is exactly 0: b before BN
NEW_REFERENCE = [
    *("Dropout", "BatchNormalization", "BatchNormalization4D", "BatchNormalizationTestMode"),
    *("Convolution", "ConvolutionStride2", "Pooling", "PoolingOverlapping"),
    *("MultiLayerNetExtend", "MultiLayerNetExtendPlainSigmoid"),
]
NEW_BROKEN = [
    *("ConvolutionCol2imOverwrite", "ConvolutionDWNotTransposed", "ConvolutionDoutNotTransposed"),
    *("PoolingWholeWindow", "PoolingFirstElement", "BatchNormNoMeanTerm"),
    *("BatchNormNoVarianceTerm", "BatchNormDgammaNoXn", "BatchNormTrainBackwardInTestMode"),
    *("DropoutIgnoresMask", "DropoutNewMaskInBackward", "KeepsFirstInput"),
    *("MultiLayerNetNoWeightDecayGrad", "MultiLayerNetSwappedGammaBeta"),
]


def _close(analytic: Any, numeric: np.ndarray) -> bool:
    if analytic is None or np.shape(analytic) != numeric.shape:
        return False
    scale = max(np.max(np.abs(analytic)), np.max(np.abs(numeric)))
    return bool(np.max(np.abs(analytic - numeric)) <= RTOL * scale + ATOL)


def _layer_agrees(case: LayerCase, seed: int) -> bool:
    """backward vs central differences of sum(dout * forward), after a warm-up forward."""
    rng = np.random.default_rng(seed)
    layer: Any = case.build(rng)
    inputs = case.make_inputs(rng)

    def forward(args: Any) -> Any:
        np.random.seed(seed)  # the same Dropout mask in every forward
        return layer.forward(*(np.copy(a) for a in args), **case.kwargs)

    forward(case.make_inputs(rng).values())  # other inputs first: exposes stale caches
    out = forward(inputs.values())
    dout = rng.standard_normal(out.shape)
    analytic = {"x": layer.backward(dout.copy())}
    params = {n: getattr(layer, n) for n in ("W", "b", "gamma", "beta") if hasattr(layer, n)}
    analytic |= {n: getattr(layer, "d" + n) for n in params}

    def loss() -> float:
        return float(np.sum(dout * forward(inputs.values())))

    arrays = {"x": inputs["x"], **params}
    return all(_close(analytic[n], numeric_gradient(loss, arr)) for n, arr in arrays.items())


def _net_agrees(case: LayerCase, seed: int) -> bool:
    """gradient() vs central differences of loss(x, t, **kwargs), the same masks in both."""
    rng = np.random.default_rng(seed)
    net: Any = case.build(rng)
    x, t = case.make_inputs(rng).values()

    def loss() -> float:
        np.random.seed(seed)
        return float(net.loss(x, t, **case.kwargs))

    np.random.seed(seed)
    analytic = net.gradient(x, t)
    numeric = {key: numeric_gradient(loss, param) for key, param in net.params.items()}
    return analytic.keys() == numeric.keys() and all(
        _close(analytic[key], numeric[key]) for key in numeric
    )


def _agrees(case: LayerCase, seed: int) -> bool:
    return (
        _net_agrees(case, seed) if hasattr(case.target, "gradient") else _layer_agrees(case, seed)
    )


@pytest.mark.parametrize("name", NEW_REFERENCE)
def test_reference_backward_matches_central_differences(name: str) -> None:
    assert all(_agrees(REFERENCE[name], seed) for seed in SEEDS)


@pytest.mark.parametrize("name", NEW_BROKEN)
def test_broken_twin_is_wrong_for_some_seed(name: str) -> None:
    assert not all(_agrees(BROKEN[name], seed) for seed in SEEDS), BROKEN[name].bug


def test_col2im_accumulates_over_overlapping_windows() -> None:
    col = np.ones((4, 4))  # a 3x3 image, 2x2 windows, stride 1: 4 windows of 4 pixels
    covered = reference.col2im(col, (1, 1, 3, 3), 2, 2, stride=1)
    assert np.array_equal(covered[0, 0], [[1, 2, 1], [2, 4, 2], [1, 2, 1]])
    assert broken._col2im_overwrite(col, (1, 1, 3, 3), 2, 2, stride=1).max() == 1
    # col2im is the adjoint of im2col: <im2col(x), c> == <x, col2im(c)>, padding included
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 5, 4))
    for stride, pad in [(1, 0), (1, 1), (2, 1), (3, 0)]:
        cols = reference.im2col(x, 3, 2, stride, pad)
        c = rng.standard_normal(cols.shape)
        folded = reference.col2im(c, x.shape, 3, 2, stride, pad)
        assert np.isclose(np.sum(cols * c), np.sum(x * folded))


def test_convolution_and_pooling_forward_match_direct_loops() -> None:
    rng = np.random.default_rng(1)
    x, W, b = rng.standard_normal((2, 2, 5, 5)), rng.standard_normal((3, 2, 3, 3)), np.ones(3)
    out = reference.Convolution(W, b, stride=2, pad=1).forward(x)
    padded = np.pad(x, [(0, 0), (0, 0), (1, 1), (1, 1)])
    assert out.shape == (2, 3, 3, 3)
    for n, f, i, j in np.ndindex(out.shape):
        window = padded[n, :, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3]
        assert np.isclose(out[n, f, i, j], np.sum(window * W[f]) + b[f])
    pooled = reference.Pooling(2, 2, stride=2).forward(x[:, :, :4, :4])
    assert np.array_equal(pooled, x[:, :, :4, :4].reshape(2, 2, 2, 2, 2, 2).max(axis=(3, 5)))
    assert reference.Pooling(2, 2).stride == 1  # the book's default: overlapping windows


def test_dropout_draws_from_the_global_rng() -> None:
    x = np.arange(1.0, 13.0).reshape(3, 4)
    layer = reference.Dropout(0.3)
    np.random.seed(7)
    out = layer.forward(x)
    np.random.seed(7)
    assert np.array_equal(out, x * (np.random.rand(3, 4) > 0.3))
    assert np.array_equal(layer.backward(np.ones_like(x)), (out != 0).astype(float))
    assert np.allclose(layer.forward(x, train_flg=False), 0.7 * x)


def test_batchnorm_train_mode_updates_running_stats_but_not_output() -> None:
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 3))
    layer: Any = reference.BatchNormalization(np.ones(3), np.zeros(3))
    first = layer.forward(x)
    assert np.allclose(first.mean(axis=0), 0) and np.allclose(first.var(axis=0), 1, atol=1e-4)
    assert np.allclose(layer.running_mean, 0.1 * x.mean(axis=0))  # from zeros, momentum 0.9
    stats = layer.running_mean.copy()
    assert np.array_equal(layer.forward(x), first)  # the same train output ...
    assert not np.array_equal(layer.running_mean, stats)  # ... while the running mean moved
    stats = layer.running_mean.copy()
    assert not np.allclose(layer.forward(x, train_flg=False), first)  # running statistics
    assert np.array_equal(layer.running_mean, stats)  # test mode leaves them alone


def test_multi_layer_net_extend_shares_params_and_adds_weight_decay() -> None:
    net: Any = REFERENCE["MultiLayerNetExtend"].build(np.random.default_rng(3))
    x, t = REFERENCE["MultiLayerNetExtend"].make_inputs(np.random.default_rng(4)).values()
    assert net.layers["Affine2"].W is net.params["W2"]
    assert net.layers["BatchNorm1"].gamma is net.params["gamma1"]
    assert list(net.layers)[:4] == ["Affine1", "BatchNorm1", "Activation_function1", "Dropout1"]
    decay = 0.5 * 0.1 * sum(np.sum(net.params[f"W{i}"] ** 2) for i in (1, 2, 3))
    with_decay = net.loss(x, t)  # test mode (the default): deterministic
    net.weight_decay_lambda = 0
    assert np.isclose(with_decay - net.loss(x, t), decay)
    assert net.gradient(x, t).keys() == net.params.keys()


def test_every_new_case_is_registered() -> None:
    assert set(NEW_REFERENCE) <= set(REFERENCE) and set(NEW_BROKEN) <= set(BROKEN)
    assert REFERENCE["Dropout"].kwargs == {"train_flg": True}
    assert REFERENCE["BatchNormalizationTestMode"].kwargs == {"train_flg": False}
    assert REFERENCE["Affine"].kwargs == {}

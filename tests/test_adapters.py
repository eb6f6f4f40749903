"""Every target style is recognised, its weights found, and a wrong target told how to fix it."""

from __future__ import annotations

from importlib import metadata

import numpy as np
import pytest

import gradverify
from gradverify import Status
from gradverify.adapters import Adapter, resolve_adapter
from gradverify.adapters.functions import GradientPairAdapter
from gradverify.errors import AdapterNotFound, InvalidArgument

RNG = np.random.default_rng(0)


def affine_forward(x, w, b):
    return x @ w + b, (x, w)


def affine_backward(dout, cache):
    x, w = cache
    return dout @ w.T, x.T @ dout, dout.sum(axis=0)


def softmax_loss(x, y):
    shifted = x - x.max(axis=1, keepdims=True)
    probs = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    n = x.shape[0]
    loss = -np.log(probs[np.arange(n), y]).sum() / n
    dx = probs.copy()
    dx[np.arange(n), y] -= 1
    return loss, dx / n


class Scale:
    """A layer whose weight gradient lives in a differently named attribute."""

    def __init__(self):
        self.gain = np.array([2.0, -1.0])
        self.grad_of_gain = None

    def forward(self, x):
        self.x = x
        return x * self.gain

    def backward(self, dout):
        self.grad_of_gain = (dout * self.x).sum(axis=0)
        return dout * self.gain


class SecondVolumeAffine:
    """The textbook's second volume: params and grads lists, gradients written in place."""

    def __init__(self, W, b):
        self.params = [W, b]
        self.grads = [np.zeros_like(W), np.zeros_like(b)]

    def forward(self, x):
        self.x = x
        W, b = self.params
        return x @ W + b

    def backward(self, dout):
        W, _ = self.params
        self.grads[0][...] = self.x.T @ dout
        self.grads[1][...] = dout.sum(axis=0)
        return dout @ W.T


class DictNetwork:
    def __init__(self, copy_params=False):
        self.params = {"W": RNG.standard_normal((3, 2))}
        self.W_used = self.params["W"].copy() if copy_params else self.params["W"]

    def loss(self, x, t):
        return float(np.sum((x @ self.W_used - t) ** 2))

    def gradient(self, x, t):
        return {"W": x.T @ (2 * (x @ self.W_used - t))}


def test_cs231n_function_pair():
    x, w, b = RNG.standard_normal((2, 3)), RNG.standard_normal((3, 4)), RNG.standard_normal(4)
    result = gradverify.check((affine_forward, affine_backward), {"x": x, "w": w, "b": b})
    assert result.adapter == "function_pair" and result.status is Status.PASS
    assert [t.grad_name for t in result.tensors] == ["dx", "dw", "db"]


def test_loss_function_with_integer_labels():
    result = gradverify.check(
        softmax_loss, {"x": RNG.standard_normal((3, 4)), "y": np.array([0, 3, 1])}
    )
    assert result.adapter == "loss_function" and result.status is Status.PASS
    assert [t.name for t in result.tensors] == ["x"]


def test_gradient_pair_and_positional_names():
    result = gradverify.check((lambda v: float(np.sum(v**3)), lambda v: 3 * v**2), [np.ones(3)])
    assert result.adapter == "gradient_pair" and result.status is Status.PASS
    assert result.tensors[0].name == "v"


def test_declared_parameter_with_its_gradient_attribute():
    result = gradverify.check(
        Scale(), {"x": RNG.standard_normal((3, 2))}, params={"gain": "grad_of_gain"}
    )
    assert [t.name for t in result.tensors] == ["x", "gain"]
    assert result.status is Status.PASS


def test_second_volume_params_and_grads_lists():
    layer = SecondVolumeAffine(RNG.standard_normal((3, 2)), RNG.standard_normal(2))
    result = gradverify.check(layer, {"x": RNG.standard_normal((4, 3))})
    assert [t.name for t in result.tensors] == ["x", "params[0]", "params[1]"]
    assert result.status is Status.PASS


def test_network_with_params_dict():
    result = gradverify.check(
        DictNetwork(), {"x": RNG.standard_normal((4, 3)), "t": RNG.standard_normal((4, 2))}
    )
    assert result.adapter == "network" and result.status is Status.PASS


def test_network_whose_layers_copy_params_is_told_so():
    data = {"x": RNG.standard_normal((4, 3)), "t": RNG.standard_normal((4, 2))}
    result = gradverify.check(DictNetwork(copy_params=True), data)
    assert result.status is Status.FAIL
    assert "copy" in result.tensors[0].hint


def test_class_instead_of_instance():
    with pytest.raises(InvalidArgument, match=r"pass an instance, e.g. Scale\(\.\.\.\)"):
        gradverify.check(Scale, {"x": np.ones((1, 2))})


def test_forward_without_backward():
    class OnlyForward:
        def forward(self, x):
            return x

    with pytest.raises(AdapterNotFound, match="has forward\\(\\) but no backward\\(\\)"):
        gradverify.check(OnlyForward(), {"x": np.ones(2)})


def test_nothing_fits_lists_what_each_adapter_looks_for():
    with pytest.raises(AdapterNotFound, match="forward\\(\\*inputs\\) and backward\\(dout\\)"):
        gradverify.check(42, {"x": np.ones(2)})


def test_explicit_adapter_by_name_and_unknown_name():
    pair = (lambda v: float(np.sum(v**2)), lambda v: 2 * v)
    assert isinstance(
        resolve_adapter(pair, [np.ones(2)], {}, adapter="gradient_pair"), GradientPairAdapter
    )
    with pytest.raises(InvalidArgument, match="`adapter` must be one of"):
        gradverify.check(pair, [np.ones(2)], adapter="nope")


class Doubler(Adapter):
    """A third-party adapter: targets are plain dicts {'f': ..., 'df': ...}."""

    kind = "dict_target"
    looks_for = "a dict with 'f' and 'df'"

    @classmethod
    def accepts(cls, target, args):
        return isinstance(target, dict) and {"f", "df"} <= set(target)

    name = "dict_target"
    label = "dict_target.df"

    def forward(self, args):
        self.forward_calls += 1
        return self.target["f"](*args)

    def backward(self, args, cotangent):
        from gradverify.adapters import Gradients

        self.backward_calls += 1
        return Gradients((cotangent * self.target["df"](*args),), {})


@pytest.fixture
def fresh_plugin_scan():
    """Entry points are scanned once per process; these tests patch the scan."""
    from gradverify.adapters import _plugin_adapters

    _plugin_adapters.cache_clear()
    yield
    _plugin_adapters.cache_clear()


@pytest.mark.usefixtures("fresh_plugin_scan")
def test_entry_point_adapter_is_tried_first(monkeypatch):
    entry = metadata.EntryPoint("dict_target", f"{__name__}:Doubler", "gradverify.adapters")
    monkeypatch.setattr(
        "gradverify.adapters.entry_points", lambda group: [entry] if group == entry.group else []
    )
    target = {"f": np.sin, "df": np.cos}
    result = gradverify.check(target, {"x": RNG.standard_normal(5)})
    assert result.adapter == "dict_target" and result.status is Status.PASS


@pytest.mark.usefixtures("fresh_plugin_scan")
def test_entry_point_that_is_not_an_adapter(monkeypatch):
    entry = metadata.EntryPoint("bad", "numpy:sin", "gradverify.adapters")
    monkeypatch.setattr("gradverify.adapters.entry_points", lambda group: [entry])
    with pytest.raises(InvalidArgument, match=r"not a gradverify\.adapters\.Adapter subclass"):
        gradverify.check(Scale(), {"x": np.ones((1, 2))})

"""Each contract finding fires on the bug it names and stays silent on the reference layers."""

from __future__ import annotations

import random

import numpy as np
import pytest

import gradverify
from gradverify import Status
from layers_under_test import reference
from layers_under_test.registry import REFERENCE

RNG = np.random.default_rng(0)


def _findings(result):
    return {f.name: f.severity for f in result.findings}


@pytest.mark.parametrize("name", list(REFERENCE))
def test_reference_layers_raise_no_error_finding(name):
    case = REFERENCE[name]
    rng = np.random.default_rng(0)
    result = gradverify.check(
        case.build(rng),
        case.make_inputs(rng),
        nondiff=case.nondiff,
        kwargs=case.kwargs,
    )
    assert "error" not in _findings(result).values(), result.findings


def test_textbook_quirks_are_warnings():
    relu = gradverify.check(reference.Relu(), {"x": RNG.standard_normal((2, 3))})
    assert _findings(relu) == {"dout modified": "warning"} and relu.status is Status.PASS
    assert "fans out" in relu.findings[0].message


class AccumulatingAffine(reference.Affine):
    """Adds into dW on every backward instead of overwriting it."""

    def backward(self, dout):
        previous = self.dW
        dx = super().backward(dout)
        if previous is not None:
            self.dW = self.dW + previous
        return dx


def test_accumulating_backward_is_an_error_unless_declared():
    layer = AccumulatingAffine(RNG.standard_normal((4, 3)), RNG.standard_normal(3))
    x = {"x": RNG.standard_normal((2, 4))}
    result = gradverify.check(layer, x)
    assert _findings(result)["backward not repeatable"] == "error"
    message = next(f.message for f in result.findings if f.name == "backward not repeatable")
    assert "accumulates (each call" in message and "accumulates=True" in message
    declared = gradverify.check(layer, x, accumulates=True)
    assert "backward not repeatable" not in _findings(declared)


class PreviousInputSigmoid(reference.Sigmoid):
    """Backward uses the output of the forward before the last one."""

    def forward(self, x):
        self.previous = getattr(self, "out", None)
        out = super().forward(x)
        return out

    def backward(self, dout):
        out = self.previous if self.previous is not None else self.out
        return dout * (1 - out) * out


def test_stale_state_is_an_error():
    result = gradverify.check(PreviousInputSigmoid(), {"x": RNG.standard_normal((3, 4))})
    assert _findings(result).get("stale state") == "error"
    assert result.status is Status.FAIL


class PythonRandomNoise:
    """Adds noise from Python's random module, which the check cannot hold fixed."""

    def forward(self, x):
        self.x = x
        return x * (1 + 1e-3 * random.random())

    def backward(self, dout):
        return dout


def test_nondeterministic_forward_is_an_error():
    result = gradverify.check(PythonRandomNoise(), {"x": RNG.standard_normal(4)})
    assert _findings(result)["nondeterministic forward"] == "error"


class Dropout:
    """The textbook's Dropout: a new mask from np.random on every training forward."""

    def __init__(self, ratio=0.5, rng=None):
        self.ratio, self.rng = ratio, rng

    def forward(self, x, train_flg=True):
        draw = self.rng.random if self.rng is not None else np.random.rand
        self.mask = (draw(*x.shape) if self.rng is None else draw(x.shape)) > self.ratio
        return x * self.mask

    def backward(self, dout):
        return dout * self.mask


@pytest.mark.parametrize("rng", [None, np.random.default_rng(5)], ids=["global", "generator"])
def test_stochastic_layer_is_checked_with_its_draws_held_fixed(rng):
    layer = Dropout(rng=rng)
    state = np.random.get_state()[1].copy()
    before = rng.bit_generator.state if rng is not None else None
    result = gradverify.check(layer, {"x": RNG.standard_normal((4, 5))}, kwargs={"train_flg": True})
    assert result.status is Status.PASS, str(result)
    assert "reset before every call" in result.notes[0]
    assert np.array_equal(np.random.get_state()[1], state)  # the global RNG is left as it was
    if rng is not None:
        assert rng.bit_generator.state == before


class TooManyGradients(reference.Sigmoid):
    def backward(self, dout):
        return super().backward(dout), dout


class Float32Gradient(reference.Sigmoid):
    def backward(self, dout):
        return super().backward(dout).astype(np.float32)


@pytest.mark.parametrize(
    ("layer", "finding", "severity"),
    [
        (TooManyGradients(), "too many gradients", "error"),
        (Float32Gradient(), "gradient dtype", "error"),
    ],
)
def test_malformed_gradients(layer, finding, severity):
    result = gradverify.check(layer, {"x": RNG.standard_normal((2, 3))})
    assert _findings(result)[finding] == severity


class Float32Throughout:
    """Computes in float32 whatever it is given: float32 output, float32 gradients."""

    def __init__(self, W):
        self.W = W.astype(np.float32)

    def forward(self, x):
        self.x = x.astype(np.float32)
        return self.x @ self.W

    def backward(self, dout):
        dout = dout.astype(np.float32)
        self.dW = self.x.T @ dout
        return dout @ self.W.T


def test_a_gradient_as_precise_as_the_computation_is_fine_whatever_the_input_dtype():
    layer = Float32Throughout(RNG.standard_normal((4, 3)))
    result = gradverify.check(layer, {"x": RNG.standard_normal((2, 4))})
    assert result.status is Status.PASS and not result.findings, str(result)


def test_upcast_gradient_of_a_float32_layer_is_only_a_warning():
    class Upcasting(reference.Sigmoid):
        def backward(self, dout):
            return super().backward(dout).astype(np.float64)

    result = gradverify.check(Upcasting(), {"x": RNG.standard_normal((2, 3)).astype(np.float32)})
    assert _findings(result) == {"gradient dtype": "warning"} and result.status is Status.PASS


class RunningMean:
    """BatchNorm-like running statistics that change on every training forward."""

    def __init__(self):
        self.running_mean = np.zeros(3)
        self.calls = 0

    def forward(self, x, train_flg=True):
        if train_flg:
            self.running_mean = 0.9 * self.running_mean + 0.1 * x.mean(axis=0)
            self.calls += 1
        self.x = x
        return 2 * x

    def backward(self, dout):
        return 2 * dout


def test_running_statistics_and_counters_are_left_bit_for_bit():
    layer = RunningMean()
    mean = layer.running_mean
    result = gradverify.check(layer, {"x": RNG.standard_normal((4, 3))}, kwargs={"train_flg": True})
    assert result.status is Status.PASS
    assert layer.running_mean is mean and not np.any(mean) and layer.calls == 0


def test_batchnorm_in_training_mode_leaves_running_statistics_bit_for_bit():
    case = REFERENCE["BatchNormalization"]
    rng = np.random.default_rng(3)
    layer, inputs = case.build(rng), case.make_inputs(rng)
    layer.forward(inputs["x"], train_flg=True)  # running statistics no longer at their start
    mean, var = layer.running_mean, layer.running_var
    saved = mean.tobytes(), var.tobytes()
    result = gradverify.check(layer, inputs, kwargs=case.kwargs)
    assert result.status is Status.PASS
    assert layer.running_mean is mean and layer.running_var is var
    assert (mean.tobytes(), var.tobytes()) == saved


def test_random_state_attribute_and_a_numpy_module_attribute():
    class LegacyDropout:
        def __init__(self):
            self.rng, self.xp = np.random.RandomState(0), np  # xp: a module, never walked into

        def forward(self, x):
            self.mask = self.rng.rand(*x.shape) > 0.5
            return x * self.mask

        def backward(self, dout):
            return dout * self.mask

    layer = LegacyDropout()
    before = layer.rng.get_state()[1].copy()
    result = gradverify.check(layer, {"x": RNG.standard_normal((3, 4))})
    assert result.status is Status.PASS and "its RandomState" in result.notes[0]
    assert np.array_equal(layer.rng.get_state()[1], before)


def test_forgotten_return_fails_with_a_hint():
    class NoReturn(reference.Sigmoid):
        def backward(self, dout):
            super().backward(dout)

    result = gradverify.check(NoReturn(), {"x": RNG.standard_normal((2, 3))})
    assert result.status is Status.FAIL
    assert "forget to return it (return dx)" in result.tensors[0].hint


def test_backward_that_consumes_its_cache_is_not_repeatable():
    class ConsumesCache(reference.Sigmoid):
        def backward(self, dout):
            dx = super().backward(dout)
            self.out = np.zeros_like(self.out)  # a second backward sees nothing
            return dx

    result = gradverify.check(ConsumesCache(), {"x": RNG.standard_normal((2, 3))})
    assert _findings(result).get("backward not repeatable") == "error"
    message = next(f.message for f in result.findings if f.name == "backward not repeatable")
    assert "does it change the cache" in message  # not accumulation: no accumulates=True
    assert "accumulates=True" not in message


def test_repeated_backward_names_accumulation_only_when_it_is_one():
    class SgdInBackward(reference.Affine):  # a step on W inside backward: dx moves each call
        def backward(self, dout):
            dx = super().backward(dout)
            self.W -= 0.1 * self.dW
            return dx

    class NanBackward(reference.Sigmoid):  # deterministic, but NaN is never equal to NaN
        def backward(self, dout):
            dx = super().backward(dout)
            dx[0, 0] = np.nan
            return dx

    layer = SgdInBackward(RNG.standard_normal((4, 3)), RNG.standard_normal(3))
    result = gradverify.check(layer, {"x": RNG.standard_normal((2, 4))})
    message = next(f.message for f in result.findings if f.name == "backward not repeatable")
    assert "accumulates" not in message and "the weights" in message
    nan = gradverify.check(NanBackward(), {"x": RNG.standard_normal((2, 3))})
    assert "backward not repeatable" not in _findings(nan)
    assert "not linear in dout" not in _findings(nan)

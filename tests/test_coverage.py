"""Nothing unchecked, unsaid: weights are found wherever a layer holds them, and an array
forward reads without a gradient the check can find makes it INCONCLUSIVE, never PASS."""

from __future__ import annotations

from collections import OrderedDict, namedtuple

import numpy as np
import pytest

import gradverify
from gradverify import Status

RNG = np.random.default_rng(0)


def _weights():
    return RNG.standard_normal((4, 3)), RNG.standard_normal(3)


def _x():
    return {"x": RNG.standard_normal((2, 4))}


class SlotsAffine:
    """An Affine whose attributes live in __slots__ (no __dict__), with a wrong dW and db."""

    __slots__ = ("W", "b", "dW", "db", "x")

    def __init__(self, W, b):
        self.W, self.b = W, b

    def forward(self, x):
        self.x = x
        return x @ self.W + self.b

    def backward(self, dout):
        self.dW = 123 * (self.x.T @ dout)
        self.db = -dout.sum(axis=0)
        return dout @ self.W.T


def test_weights_behind_slots_are_found_and_their_bugs_fail():
    result = gradverify.check(SlotsAffine(*_weights()), _x())
    statuses = {t.name: t.status for t in result.tensors}
    assert statuses == {"x": Status.PASS, "W": Status.FAIL, "b": Status.FAIL}


class PropertyWeight:
    """The weight is read through a property; its gradient is the usual dW."""

    def __init__(self, W):
        self._W = W

    @property
    def W(self):
        return self._W

    def forward(self, x):
        self.x = x
        return x @ self.W

    def backward(self, dout):
        self.dW = 2 * (self.x.T @ dout)  # the bug: a stray factor of 2
        return dout @ self.W.T


def test_weight_behind_a_property_is_found():
    result = gradverify.check(PropertyWeight(_weights()[0]), _x())
    assert [(t.name, t.status) for t in result.tensors] == [
        ("x", Status.PASS),
        ("W", Status.FAIL),
    ]


class Nested:
    """A layer built from another: the weights live one object down, in self.fc."""

    def __init__(self, W, b):
        from layers_under_test.reference import Affine

        self.fc = Affine(W, b)

    def forward(self, x):
        return np.tanh(self.fc.forward(x))

    def backward(self, dout):
        self.out = None
        return self.fc.backward(dout)  # the bug: the tanh derivative is forgotten


def test_weights_of_a_nested_layer_are_found_by_path():
    result = gradverify.check(Nested(*_weights()), _x())
    assert [t.name for t in result.tensors] == ["x", "fc.W", "fc.b"]
    assert [t.grad_name for t in result.tensors][1:] == ["fc.dW", "fc.db"]
    assert result.status is Status.FAIL


class HeldInContainer:
    """The weights one object down inside a dict subclass or a namedtuple, with a wrong db."""

    def __init__(self, W, b, container):
        from layers_under_test.broken import AffineDbMean

        layer = AffineDbMean(W, b)
        self.layers = OrderedDict(fc=layer) if container == "OrderedDict" else Pair(layer, None)

    def forward(self, x):
        return self.layers[0 if isinstance(self.layers, tuple) else "fc"].forward(x)

    def backward(self, dout):
        return self.layers[0 if isinstance(self.layers, tuple) else "fc"].backward(dout)


Pair = namedtuple("Pair", "first second")


@pytest.mark.parametrize("container", ["OrderedDict", "namedtuple"])
def test_weights_inside_dict_and_tuple_subclasses_are_found(container):
    result = gradverify.check(HeldInContainer(*_weights(), container), _x())
    assert result.status is Status.FAIL, str(result)
    where = "layers['fc']" if container == "OrderedDict" else "layers[0]"
    assert [t.name for t in result.tensors] == ["x", f"{where}.W", f"{where}.b"]


class UnknownGradientName:
    def __init__(self, W, draws=False, writes_input=False):
        self.W = W
        self.draws, self.writes_input = draws, writes_input

    def forward(self, x):
        if self.draws:
            np.random.rand()  # a draw whose value is unused (a dropout with p = 0)
        if self.writes_input:
            x += 0.0  # a write that changes nothing, but writes into the caller's array
        self.x = x
        return x @ self.W

    def backward(self, dout):
        self.grad_of_weights = 2 * (self.x.T @ dout)  # wrong, and under a name nobody knows
        return dout @ self.W.T


def test_a_weight_whose_gradient_is_not_found_is_inconclusive_with_the_fix():
    result = gradverify.check(UnknownGradientName(_weights()[0]), _x())
    assert result.status is Status.INCONCLUSIVE and not result
    w = result.tensors[-1]
    assert w.name == "W" and w.status is Status.INCONCLUSIVE
    assert "W changes the output, but no gradient for it was found" in w.problem
    assert "params={'W': 'grad_of_weights'}" in w.hint
    assert "not differentiated: W" in str(result)


@pytest.mark.parametrize("quirk", ["draws", "writes_input"])
def test_a_guarded_target_is_still_inconclusive_on_a_weight_without_gradient(quirk):
    # drawing random numbers or writing into inputs makes the check protect each call;
    # the protection must not hide the target's weights from the coverage check
    layer = UnknownGradientName(_weights()[0], **{quirk: True})
    result = gradverify.check(layer, _x())
    assert result.status is not Status.PASS
    assert result.tensors[-1].name == "W" and result.tensors[-1].status is Status.INCONCLUSIVE


def test_the_suggested_declaration_checks_it():
    layer = UnknownGradientName(_weights()[0])
    result = gradverify.check(layer, _x(), params={"W": "grad_of_weights"})
    assert result.status is Status.FAIL and result.tensors[-1].grad_name == "grad_of_weights"


class EmptyParamsLists:
    """The second volume's lists, left empty; the weight lives in an attribute."""

    def __init__(self, W):
        self.W, self.params, self.grads = W, [], []

    def forward(self, x):
        self.x = x
        return x @ self.W

    def backward(self, dout):
        self.dW_by_hand = 2 * (self.x.T @ dout)
        return dout @ self.W.T


def test_empty_params_lists_do_not_hide_the_attribute_weight():
    result = gradverify.check(EmptyParamsLists(_weights()[0]), _x())
    assert result.status is Status.INCONCLUSIVE
    assert "params={'W': 'dW_by_hand'}" in result.tensors[-1].hint


class IntegerWeights:
    def __init__(self):
        self.W = np.arange(12).reshape(4, 3)

    def forward(self, x):
        self.x = x
        return x @ self.W

    def backward(self, dout):
        self.dW = 7 * (self.x.T @ dout)
        return dout @ self.W.T


def test_integer_weights_with_a_gradient_are_named_not_skipped():
    result = gradverify.check(IntegerWeights(), _x())
    assert result.status is Status.INCONCLUSIVE
    assert "W is int64: integers cannot move by small steps" in result.tensors[-1].problem


class ForeignArray:
    """Stands for a torch tensor: an array object numpy can read but not perturb in place."""

    def __init__(self, values):
        self._values = values
        self.shape, self.dtype = values.shape, "torch.float32"

    def __array__(self, dtype=None, copy=None):
        return self._values if dtype is None else self._values.astype(dtype)


class ForeignWeights:
    def __init__(self, W):
        self.W = ForeignArray(W)

    def forward(self, x):
        self.x = x
        return x @ np.asarray(self.W)

    def backward(self, dout):
        self.dW = 5 * (self.x.T @ dout)
        return dout @ np.asarray(self.W).T


def test_weights_of_another_array_library_are_named_not_skipped():
    result = gradverify.check(ForeignWeights(_weights()[0]), _x())
    assert result.status is Status.INCONCLUSIVE
    assert "cannot check it" in result.tensors[-1].problem
    assert "ForeignArray" in result.tensors[-1].problem


class RebindsGrads:
    """Correct, but backward rebinds its grads list instead of writing into it."""

    def __init__(self, W, b):
        self.params = [W, b]
        self.grads = [np.zeros_like(W), np.zeros_like(b)]

    def forward(self, x):
        self.x = x
        return x @ self.params[0] + self.params[1]

    def backward(self, dout):
        self.grads = [self.x.T @ dout, dout.sum(axis=0)]
        return dout @ self.params[0].T


def test_a_gradient_container_rebound_by_backward_is_read_afresh():
    result = gradverify.check(RebindsGrads(*_weights()), _x())
    assert result.status is Status.PASS, str(result)
    assert not result.findings


@pytest.mark.parametrize(
    "make_readonly",
    [
        lambda w: np.broadcast_to(w[0], w.shape),
        lambda w: _frozen(w),
    ],
    ids=["broadcast_to", "setflags"],
)
def test_read_only_weights_are_checked_on_a_copy_and_left_as_they_were(make_readonly):
    from layers_under_test.reference import Affine

    W, b = _weights()
    frozen = make_readonly(W)
    layer = Affine(frozen, b)
    result = gradverify.check(layer, _x())
    assert result.status is Status.PASS, str(result)
    assert any("read-only" in note for note in result.notes)
    assert layer.W is frozen and not layer.W.flags.writeable


def _frozen(array):
    array = array.copy()
    array.setflags(write=False)
    return array


class TupleHeldReadOnly:
    def __init__(self, W):
        W = W.copy()
        W.setflags(write=False)
        self.params = (W,)
        self.W = W

    def forward(self, x):
        self.x = x
        return x @ self.params[0]

    def backward(self, dout):
        self.dW = self.x.T @ dout
        return dout @ self.W.T


def test_a_read_only_weight_held_in_a_tuple_is_an_error_saying_why():
    result = gradverify.check(TupleHeldReadOnly(_weights()[0]), _x())
    assert result.status is Status.ERROR
    assert "read-only and held in a tuple" in result.error


def test_constants_declared_nondiff_are_left_alone():
    from layers_under_test.reference import BatchNormalization

    gamma, beta = RNG.standard_normal(3), RNG.standard_normal(3)
    layer = BatchNormalization(gamma, beta, running_mean=np.zeros(3), running_var=np.ones(3))
    inputs, test_mode = {"x": RNG.standard_normal((4, 3))}, {"train_flg": False}
    undeclared = gradverify.check(layer, inputs, kwargs=test_mode)
    assert undeclared.status is Status.INCONCLUSIVE
    assert {t.name for t in undeclared.tensors if t.status is Status.INCONCLUSIVE} == {
        "running_mean",
        "running_var",
    }
    declared = gradverify.check(
        layer, inputs, kwargs=test_mode, nondiff=["running_mean", "running_var"]
    )
    assert declared.status is Status.PASS


class PropertyThatRaises:
    """Correct, with a `params` property that raises when read."""

    def __init__(self, W):
        self.W = W

    @property
    def params(self):
        raise RuntimeError("not ready")

    def forward(self, x):
        self.x = x
        return x @ self.W

    def backward(self, dout):
        self.dW = self.x.T @ dout
        return dout @ self.W.T


def test_a_property_that_raises_is_skipped_not_fatal():
    result = gradverify.check(PropertyThatRaises(_weights()[0]), _x())
    assert result.status is Status.PASS and [t.name for t in result.tensors] == ["x", "W"]


def test_every_check_lists_what_it_differentiated_and_what_not():
    from layers_under_test.reference import SoftmaxWithLoss

    x, t = RNG.standard_normal((3, 4)), np.array([0, 2, 1])
    result = gradverify.check(SoftmaxWithLoss(), {"x": x, "t": t})
    assert result.undifferentiated == ("t (int64)",)
    assert "  checked: x | not differentiated: t (int64)" in str(result).splitlines()


def test_a_read_only_network_parameter_is_checked_through_every_place_holding_it():
    from layers_under_test.reference import TwoLayerNet

    net = TwoLayerNet(4, 5, 3, weight_init_std=1.0, rng=np.random.default_rng(0))
    net.params["W1"].setflags(write=False)
    inputs = {"x": RNG.standard_normal((2, 4)), "t": np.eye(3)[[0, 2]]}
    result = gradverify.check(net, inputs, nondiff=["t"])
    assert result.status is Status.PASS, str(result)
    assert net.layers["Affine1"].W is net.params["W1"] and not net.params["W1"].flags.writeable


def test_a_network_is_told_to_put_an_unchecked_array_into_params():
    from layers_under_test.broken import TwoLayerNetCopiedParams

    net = TwoLayerNetCopiedParams(4, 5, 3, rng=np.random.default_rng(0))
    inputs = {"x": RNG.standard_normal((2, 4)), "t": np.eye(3)[[0, 2]]}
    result = gradverify.check(net, inputs, nondiff=["t"])
    unchecked = [t for t in result.tensors if t.status is Status.INCONCLUSIVE]
    assert unchecked and result.status is not Status.PASS
    assert "an entry of TwoLayerNetCopiedParams.params" in unchecked[0].hint

"""The faulty layer of a failing network: each layer checked alone on the inputs it saw."""

from __future__ import annotations

import json

import numpy as np
import pytest

import gradverify
from gradverify import GradientMismatch, Status
from gradverify.diagnosis import diagnose, held_layers, record
from layers_under_test import broken, reference
from layers_under_test.registry import BROKEN, REFERENCE


def _run(case, seed=0):
    rng = np.random.default_rng(seed)
    target, inputs = case.build(rng), case.make_inputs(rng)
    return gradverify.check(target, inputs, nondiff=case.nondiff, kwargs=case.kwargs, seed=seed)


def _labels(rng, n=4, classes=3):
    return np.eye(classes)[rng.integers(0, classes, n)]


@pytest.mark.parametrize(
    ("name", "faulty", "kind"),
    [
        ("TwoLayerNetReluNoMask", "Relu1", "ReluNoMask"),  # an activation: no weight of its own
        ("TwoLayerNetAffineDbMean", "Affine1", "AffineDbMean"),  # an affine's bias
        ("TwoLayerNetLossNoDivN", "lastLayer", "SoftmaxWithLossNoDivN"),  # the loss
        ("MultiLayerNetBatchNormNoMeanTerm", "BatchNorm1", "BatchNormNoMeanTerm"),
    ],
)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_broken_layer_is_named_and_no_other(name, faulty, kind, seed):
    result = _run(BROKEN[name], seed)
    assert result.status is Status.FAIL
    assert [(v.name, v.class_name) for v in result.faulty_layers] == [(faulty, kind)]
    assert all(v.status is Status.PASS for v in _layers(result) if v.name != faulty)
    assert f"faulty layer: {faulty} ({kind})" in str(result)


def test_the_faulty_layers_own_report_follows_with_its_hint():
    text = str(_run(BROKEN["TwoLayerNetReluNoMask"]))
    block = text[text.index("Relu1 (ReluNoMask.backward) — dx disagrees") :]
    assert "hint: analytic is non-zero only where numeric is 0: a missing mask" in block
    assert "<the same TwoLayerNetReluNoMask>.layers['Relu1']" in block


def test_the_assertion_message_names_the_faulty_layer():
    case = BROKEN["TwoLayerNetLossNoDivN"]
    rng = np.random.default_rng(0)
    with pytest.raises(GradientMismatch) as raised:
        gradverify.assert_gradients(case.build(rng), case.make_inputs(rng), nondiff=case.nondiff)
    message = str(raised.value)
    assert "faulty layer: lastLayer (SoftmaxWithLossNoDivN)" in message
    assert "lastLayer (SoftmaxWithLossNoDivN.backward) — dx disagrees" in message


@pytest.mark.parametrize(
    "name",
    ["TwoLayerNetSwappedKeys", "TwoLayerNetNoReluBackward", "MultiLayerNetNoWeightDecayGrad"],
)
def test_when_every_layer_passes_alone_the_networks_own_code_is_blamed(name):
    result = _run(BROKEN[name])
    assert result.status is Status.FAIL
    assert _layers(result) and all(v.status is Status.PASS for v in _layers(result))
    assert not result.faulty_layers
    assert f"no layer fails alone: the fault is in {result.label}'s own code" in str(result)


@pytest.mark.parametrize("name", ["TwoLayerNet", "MultiLayerNetExtend"])
def test_a_correct_network_names_no_layer(name):
    result = _run(REFERENCE[name])
    assert result.status is Status.PASS
    assert result.diagnosis is None and "each layer alone" not in str(result)


def test_a_network_without_a_layers_container_keeps_the_per_tensor_report():
    class FunctionalNet:
        """A network computing from its params directly, with the bug of ReluNoMask."""

        def __init__(self, rng):
            self.params = {"W": rng.standard_normal((5, 3))}

        def loss(self, x, t):
            return float(np.sum(np.maximum(x @ self.params["W"], 0) * t))

        def gradient(self, x, t):
            return {"W": x.T @ t}  # the mask of the maximum forgotten

    rng = np.random.default_rng(0)
    result = gradverify.check(
        FunctionalNet(rng), [rng.standard_normal((4, 5)), _labels(rng)], nondiff=["t"]
    )
    assert result.status is Status.FAIL
    assert result.diagnosis is None and "each layer alone" not in str(result)


class ListNet:
    """Another teaching style: layers in a list, the loss layer in ``last_layer``; only the
    first ``used`` layers take part in the loss (the rest are kept for something else)."""

    def __init__(self, relu, rng, spare=()):
        self.params = {"W1": rng.standard_normal((5, 4)), "b1": rng.standard_normal(4)}
        self.params |= {"W2": rng.standard_normal((4, 3)), "b2": rng.standard_normal(3)}
        p = self.params
        self.layers = [reference.Affine(p["W1"], p["b1"]), relu, reference.Affine(p["W2"], p["b2"])]
        self.used = len(self.layers)
        self.layers += list(spare)
        self.last_layer = reference.SoftmaxWithLoss()

    def loss(self, x, t):
        for layer in self.layers[: self.used]:
            x = layer.forward(x)
        return self.last_layer.forward(x, t)

    def gradient(self, x, t):
        self.loss(x, t)
        dout = self.last_layer.backward(1)
        for layer in reversed(self.layers[: self.used]):
            dout = layer.backward(dout)
        first, second = self.layers[0], self.layers[2]
        return {"W1": first.dW, "b1": first.db, "W2": second.dW, "b2": second.db}


def _check_list_net(net, rng):
    return gradverify.check(net, [rng.standard_normal((4, 5)), _labels(rng)], nondiff=["t"])


def test_layers_in_a_list_are_named_by_position():
    rng = np.random.default_rng(0)
    result = _check_list_net(ListNet(broken.ReluNoMask(), rng), rng)
    assert [v.name for v in _layers(result)] == [
        "layers[0]",
        "layers[1]",
        "layers[2]",
        "last_layer",
    ]
    assert [v.name for v in result.faulty_layers] == ["layers[1]"]


def test_a_layer_the_forward_pass_never_calls_is_undecided_not_faulty():
    rng = np.random.default_rng(0)
    result = _check_list_net(ListNet(broken.ReluNoMask(), rng, spare=[reference.Sigmoid()]), rng)
    spare = _layers(result)[4]
    assert spare.status is Status.INCONCLUSIVE and spare.result is None
    assert "its forward was not seen in ListNet's pass: not called" in spare.problem
    assert [v.name for v in result.faulty_layers] == ["layers[1]"]


def test_a_layer_that_cannot_be_recorded_says_so():
    class SlottedRelu:
        __slots__ = ("mask",)

        def forward(self, x):
            self.mask = x <= 0
            return np.where(self.mask, 0.0, x)

        def backward(self, dout):
            return dout  # the bug: the mask forgotten

    rng = np.random.default_rng(0)
    result = _check_list_net(ListNet(SlottedRelu(), rng), rng)
    assert result.status is Status.FAIL
    (relu,) = [v for v in _layers(result) if v.class_name == "SlottedRelu"]
    assert relu.status is Status.INCONCLUSIVE and "cannot be recorded" in relu.problem
    assert not result.faulty_layers
    assert "could not be decided alone, so the fault is there or in" in str(result)


def test_the_network_and_its_layers_are_left_as_they_were():
    rng = np.random.default_rng(0)
    net = ListNet(broken.ReluNoMask(), rng)
    x, t = rng.standard_normal((4, 5)), _labels(rng)
    net.loss(x + 1, t)  # caches from an earlier pass, which the check must leave
    before = {k: v.copy() for k, v in net.params.items()}
    cached = net.layers[0].x.copy()
    result = gradverify.check(net, [x, t], nondiff=["t"])
    assert result.faulty_layers
    assert all(np.array_equal(before[k], net.params[k]) for k in before)
    assert np.array_equal(cached, net.layers[0].x)
    for layer in [*net.layers, net.last_layer]:
        assert "forward" not in vars(layer) and "backward" not in vars(layer)


def test_recording_gives_every_layer_its_forward_back_when_the_pass_raises():
    layers = held_layers(ListNet(reference.Relu(), np.random.default_rng(0)))

    def failing_pass():
        layers[0].layer.forward(np.ones((2, 5)))
        raise RuntimeError("the pass broke")

    with pytest.raises(RuntimeError):
        record(layers, failing_pass, [])
    assert all("forward" not in vars(h.layer) and "backward" not in vars(h.layer) for h in layers)


def test_recorded_inputs_are_copies_taken_at_the_call():
    layers = held_layers(ListNet(reference.Relu(), np.random.default_rng(0)))
    x = np.ones((2, 5))

    def one_pass():
        layers[0].layer.forward(x)
        x[:] = 7.0  # written after the call: the record keeps what the layer saw

    seen = record(layers, one_pass, [])
    assert np.array_equal(seen.calls[id(layers[0].layer)].args[0], np.ones((2, 5)))


def test_labels_the_network_passes_through_stay_nondiff_in_the_loss_layer():
    result = _run(BROKEN["TwoLayerNetLossNoDivN"])
    (loss,) = result.faulty_layers
    assert loss.result is not None and "t (nondiff)" in loss.result.undifferentiated


def test_json_holds_each_layers_verdict_and_report():
    data = json.loads(json.dumps(_run(BROKEN["TwoLayerNetAffineDbMean"]).to_dict()))
    by_name = {layer["name"]: layer for layer in data["diagnosis"]["layers"]}
    assert (
        by_name["Affine1"]["status"] == "fail"
        and by_name["Affine1"]["class_name"] == "AffineDbMean"
    )
    assert by_name["Affine1"]["path"] == "layers['Affine1']"
    assert by_name["Affine1"]["result"]["tensors"][-1]["grad_name"] == "db"
    assert by_name["Relu1"]["status"] == "pass"


def test_the_summary_row_names_the_faulty_layer():
    from gradverify.report import worst_of

    assert worst_of(_run(BROKEN["TwoLayerNetReluNoMask"])).reason == "faulty layer Relu1"


def test_the_layers_share_one_time_budget():
    net = ListNet(reference.Relu(), np.random.default_rng(0))
    x, t = np.random.default_rng(1).standard_normal((4, 5)), _labels(np.random.default_rng(2))
    shares = []

    def check_layer(layer, args, kwargs, nondiff, budget):
        shares.append(budget)
        return gradverify.check(layer, args, kwargs=kwargs, nondiff=nondiff, budget=budget)

    diagnose(
        "ListNet",
        held_layers(net),
        {"loss()": lambda work: net.loss(*work)},
        [x, t],
        [True, False],
        check_layer,
        lambda _, a: ["x", "t"][: len(a)],
        2.0,
    )
    # each gets at most what is left divided by the layers still to check: never more
    # than the budget in all, and what one leaves unused goes to the layers after it
    assert len(shares) == 4
    assert all(0 < share <= 2.0 / (4 - i) for i, share in enumerate(shares))


# ---------------------------------------------------------------- other ways to hold layers


def _layers(result):
    return () if result.diagnosis is None else result.diagnosis.layers


class OutputLayerNet(ListNet):
    """The loss layer under vol. 2's name, the output layer in an attribute of its own."""

    def __init__(self, rng, loss_layer):
        super().__init__(reference.Relu(), rng)
        self.fc_out = self.layers.pop()
        self.used = 2
        del self.last_layer
        self.loss_layer = loss_layer

    def loss(self, x, t):
        for layer in self.layers:
            x = layer.forward(x)
        return self.loss_layer.forward(self.fc_out.forward(x), t)

    def gradient(self, x, t):
        self.loss(x, t)
        dout = self.fc_out.backward(self.loss_layer.backward(1))
        for layer in reversed(self.layers):
            dout = layer.backward(dout)
        first, second = self.layers[0], self.fc_out
        return {"W1": first.dW, "b1": first.db, "W2": second.dW, "b2": second.db}


def test_layers_held_in_attributes_of_their_own_are_checked_in_call_order():
    rng = np.random.default_rng(0)
    result = _check_list_net(OutputLayerNet(rng, broken.SoftmaxWithLossNoDivN()), rng)
    names = [v.name for v in _layers(result)]
    assert names == ["layers[0]", "layers[1]", "fc_out", "loss_layer"]
    assert [v.name for v in result.faulty_layers] == ["loss_layer"]


def test_one_object_held_twice_is_one_layer_and_its_second_forward_is_noted():
    rng = np.random.default_rng(0)
    relu = reference.Relu()
    shared = ListNet(relu, rng)
    hidden = reference.Affine(rng.standard_normal((4, 4)), rng.standard_normal(4))
    shared.params |= {"W3": hidden.W, "b3": hidden.b}
    shared.layers = [shared.layers[0], relu, hidden, relu, shared.layers[2]]  # relu used twice
    shared.used = 5

    def gradient(x, t):
        shared.loss(x, t)
        dout = shared.last_layer.backward(1)
        for layer in reversed(shared.layers):
            dout = layer.backward(dout)
        first, middle, last = shared.layers[0], shared.layers[2], shared.layers[4]
        return {
            "W1": first.dW,
            "b1": first.db,
            "W3": middle.dW,
            "b3": middle.db,
            "W2": last.dW,
            "b2": last.db,
        }

    shared.gradient = gradient
    result = _check_list_net(shared, rng)
    assert result.status is Status.FAIL and not result.faulty_layers
    assert [v.name for v in _layers(result)].count("layers[1] = layers[3]") == 1
    assert "layers[1] = layers[3]'s forward runs again on other inputs in one pass" in str(result)


def test_a_layer_skipped_in_backward_is_noted():
    result = _run(BROKEN["TwoLayerNetNoReluBackward"])
    assert "note: gradient() calls Relu1's forward but never its backward" in str(result)


def test_loss_and_gradient_running_different_passes_are_noted_not_blamed_on_a_layer():
    case = REFERENCE["MultiLayerNetExtend"]
    rng = np.random.default_rng(0)
    result = gradverify.check(case.build(rng), case.make_inputs(rng), nondiff=case.nondiff)
    assert result.status is Status.FAIL  # loss() in test mode, gradient() in train mode
    assert not result.faulty_layers
    text = str(result)
    note = "loss() and gradient() run different forward passes: BatchNorm1 (train_flg=False / "
    assert note in text and "e.g. kwargs={'train_flg': True}" in text
    assert text.count("run different forward passes") == 1  # one note naming every layer
    assert "the numbers differentiate another forward pass than backward does" in text


def test_a_class_or_other_values_in_the_layers_mapping_are_not_layers():
    net = ListNet(reference.Relu(), np.random.default_rng(0))
    net.layers = [*net.layers, reference.Relu, "relu", None, np.maximum]
    assert [h.name for h in held_layers(net)] == [
        "layers[0]",
        "layers[1]",
        "layers[2]",
        "last_layer",
    ]


class TupleBackwardAffine(reference.Affine):
    """A correct Affine whose backward returns (dx, dW, db), as some courses write it."""

    def backward(self, dout):
        dx = super().backward(dout)
        return dx, self.dW, self.db


def test_a_layer_whose_convention_cannot_be_read_is_undecided_not_faulty():
    rng = np.random.default_rng(0)
    net = ListNet(broken.ReluNoMask(), rng)
    p = net.params
    net.layers = [TupleBackwardAffine(p["W1"], p["b1"]), net.layers[1], net.layers[2]]

    def gradient(x, t):
        net.loss(x, t)
        dout = net.layers[1].backward(net.layers[2].backward(net.last_layer.backward(1)))
        _, dW1, db1 = net.layers[0].backward(dout)
        return {"W1": dW1, "b1": db1, "W2": net.layers[2].dW, "b2": net.layers[2].db}

    net.gradient = gradient
    result = _check_list_net(net, rng)
    first = _layers(result)[0]
    assert first.status is Status.INCONCLUSIVE and "more gradients than" in first.problem
    assert [v.name for v in result.faulty_layers] == ["layers[1]"]


def test_a_layer_handed_its_own_cache_is_undecided():
    class CachedRelu:
        def forward(self, x):
            return np.maximum(x, 0), x > 0

        def backward(self, dout, cache):
            return dout  # the mask forgotten: but the check cannot feed it a cache

    rng = np.random.default_rng(0)
    net = ListNet(reference.Relu(), rng)
    relu = CachedRelu()
    net.layers[1] = relu

    def loss(x, t):
        h, net.cache = relu.forward(net.layers[0].forward(x))
        return net.last_layer.forward(net.layers[2].forward(h), t)

    def gradient(x, t):
        loss(x, t)
        dout = relu.backward(net.layers[2].backward(net.last_layer.backward(1)), net.cache)
        net.layers[0].backward(dout)
        first, second = net.layers[0], net.layers[2]
        return {"W1": first.dW, "b1": first.db, "W2": second.dW, "b2": second.db}

    net.loss, net.gradient = loss, gradient
    result = _check_list_net(net, rng)
    (cached,) = [v for v in _layers(result) if v.class_name == "CachedRelu"]
    assert cached.status is Status.INCONCLUSIVE and "a cache" in cached.problem
    assert not result.faulty_layers


def test_labels_built_inside_the_network_are_not_differentiated_in_its_loss_layer():
    class LabelsFirstLoss(reference.SoftmaxWithLoss):
        """forward(t, y): labels first, as some libraries order them."""

        def forward(self, t, x):
            return super().forward(x, t)

    rng = np.random.default_rng(0)
    net = ListNet(broken.ReluNoMask(), rng)
    net.last_layer = LabelsFirstLoss()

    def loss(x, t):
        for layer in net.layers:
            x = layer.forward(x)
        return net.last_layer.forward(np.eye(3)[t], x)  # one-hot labels built here

    net.loss = loss
    result = gradverify.check(net, [rng.standard_normal((4, 5)), rng.integers(0, 3, 4)])
    assert [v.name for v in result.faulty_layers] == ["layers[1]"]  # never the loss layer


# ---------------------------------------------------------------- after review


class MulDyWrong(reference.MulLayer):
    def backward(self, dout):
        return dout * self.y, dout * self.y  # dy should be dout * x


class GatedNet:
    """h = Affine(x) * sigmoid(x @ Wg): the gate is computed in the network's own code."""

    def __init__(self, rng, mul):
        self.params = {"W": rng.standard_normal((5, 3)), "b": rng.standard_normal(3)}
        self.params["Wg"] = rng.standard_normal((5, 3))
        self.affine = reference.Affine(self.params["W"], self.params["b"])
        self.mul, self.last = mul, reference.SoftmaxWithLoss()

    def loss(self, x, t):
        self.gate = 1 / (1 + np.exp(-(x @ self.params["Wg"])))
        return self.last.forward(self.mul.forward(self.affine.forward(x), self.gate), t)

    def gradient(self, x, t):
        self.loss(x, t)
        da, dg = self.mul.backward(self.last.backward(1))
        self.affine.backward(da)
        dWg = x.T @ (dg * self.gate * (1 - self.gate))
        return {"W": self.affine.dW, "b": self.affine.db, "Wg": dWg}


def test_an_input_the_network_computed_itself_is_differentiated_in_the_layer():
    rng = np.random.default_rng(0)
    result = _check_list_net(GatedNet(rng, MulDyWrong()), rng)
    assert [v.name for v in result.faulty_layers] == ["mul"]


def test_a_layer_holding_itself_or_an_object_whose_getattr_raises_does_not_break_the_check():
    class Config:
        def __getattr__(self, name):
            raise KeyError(name)

    class SelfHolding(broken.ReluNoMask):
        pass

    rng = np.random.default_rng(0)
    relu = SelfHolding()
    relu.me = relu  # a layer holding itself: its own check must not diagnose it again
    net = ListNet(relu, rng)
    net.config = Config()
    x, t = rng.standard_normal((4, 5)), _labels(rng)
    net.loss(x + 1, t)
    mask = relu.mask.copy()
    result = gradverify.check(net, [x, t], nondiff=["t"])
    assert [v.name for v in result.faulty_layers] == ["layers[1]"]
    assert np.array_equal(relu.mask, mask) and relu.me is relu


class ResettingNet(ListNet):
    """Its affine layers add into dW and db; gradient() resets them first, as frameworks do."""

    def __init__(self, relu, rng):
        super().__init__(relu, rng)
        p = self.params
        self.layers = [AccumulatingAffine(p["W1"], p["b1"]), relu]
        self.layers.append(AccumulatingAffine(p["W2"], p["b2"]))

    def gradient(self, x, t):
        for layer in (self.layers[0], self.layers[2]):
            layer.dW, layer.db = np.zeros_like(layer.W), np.zeros_like(layer.b)
        return super().gradient(x, t)


class AccumulatingAffine(reference.Affine):
    """Adds into dW and db, which the network resets before each backward."""

    def backward(self, dout):
        if getattr(self, "dW", None) is None:
            self.dW, self.db = np.zeros_like(self.W), np.zeros_like(self.b)
        self.dW += self.x.T @ dout
        self.db += dout.sum(axis=0)
        return dout @ self.W.T


def test_a_layer_that_adds_into_its_gradients_is_undecided_not_faulty():
    rng = np.random.default_rng(0)
    result = _check_list_net(ResettingNet(broken.ReluNoMask(), rng), rng)
    assert [v.name for v in result.faulty_layers] == ["layers[1]"]
    affine = _layers(result)[0]
    assert affine.status is Status.INCONCLUSIVE and "adds into its stored" in affine.problem


def test_a_network_that_runs_its_forward_twice_on_the_same_inputs_gets_no_note():
    rng = np.random.default_rng(0)
    net = ListNet(broken.ReluNoMask(), rng)
    once = net.loss

    def twice(x, t):
        once(x, t)
        return once(x, t)

    net.loss = twice
    text = str(_check_list_net(net, rng))
    assert "faulty layer: layers[1] (ReluNoMask)" in text and "runs again" not in text


class FlattenFirstNet(ListNet):
    """A weightless first layer whose backward gradient() skips: nothing needs dx there."""

    def __init__(self, relu, rng):
        super().__init__(relu, rng)
        self.flatten = Flatten()

    def loss(self, x, t):  # ListNet.gradient runs this, then every backward but flatten's
        return super().loss(self.flatten.forward(x), t)


class Flatten:
    def forward(self, x):
        return x.reshape(len(x), -1)

    def backward(self, dout):
        return dout


def test_a_leading_layer_without_weights_skipped_in_backward_gets_no_note():
    rng = np.random.default_rng(0)
    result = _check_list_net(FlattenFirstNet(broken.ReluNoMask(), rng), rng)
    assert [v.name for v in result.faulty_layers] == ["layers[1]"]
    assert _layers(result)[0].name == "flatten"  # called first
    assert "never its backward" not in str(result)


def test_the_layers_reproduce_line_carries_what_its_check_used():
    result = _run(BROKEN["TwoLayerNetLossNoDivN"])
    (loss,) = result.faulty_layers
    reproduce = loss.result.reproduce
    assert reproduce.startswith(
        "gradverify.check(<the same TwoLayerNetLossNoDivN>.lastLayer, <the inputs it saw in the "
        "forward pass>, seed=0, nondiff=['t'], budget="
    )


def test_verdict_only_skips_the_diagnosis_and_fuzzing_diagnoses_only_the_shrunk_case():
    from gradverify.checks import verdict_only

    case = BROKEN["TwoLayerNetReluNoMask"]
    with verdict_only():
        quiet = _run(case)
    assert quiet.status is Status.FAIL and quiet.diagnosis is None
    spec = REFERENCE["TwoLayerNet"].spec
    fuzzed = gradverify.fuzz(broken.TwoLayerNetReluNoMask, spec, examples=20, seed=0)
    assert fuzzed.status is Status.FAIL and fuzzed.result is not None
    assert [v.name for v in fuzzed.result.faulty_layers] == ["Relu1"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_one_activation_object_used_twice_is_named_as_the_networks_fault(seed):
    result = _run(BROKEN["MultiLayerNetSharedActivation"], seed)
    assert result.status is Status.FAIL and not result.faulty_layers
    text = str(result)
    shared = "Activation_function1 = Activation_function2's forward runs again on other inputs"
    assert shared in text and "no layer fails alone: the fault is in" in text

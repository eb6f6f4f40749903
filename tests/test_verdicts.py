"""Each status arises from the situation it names; each hint from the bug it names."""

from __future__ import annotations

import numpy as np
import pytest

import gradverify
from gradverify import Status
from gradverify.mutation import scaled_adapter
from gradverify.results import ElementOutcome
from layers_under_test import reference
from layers_under_test.registry import BROKEN, REFERENCE


def _run(case, seed=0, **options):
    rng = np.random.default_rng(seed)
    target, inputs = case.build(rng), case.make_inputs(rng)
    return gradverify.check(
        target, inputs, nondiff=case.nondiff, kwargs=case.kwargs, seed=seed, **options
    )


# ---------------------------------------------------------------- statuses


def test_relu_at_its_kink_passes_with_a_note():
    x = np.array([[-2.0, -1.0, 0.0, 1.0, 2.0, 0.0]])  # integer-valued: two elements at the kink
    result = gradverify.check(reference.Relu(), {"x": x})
    assert result.status is Status.PASS
    (dx,) = result.tensors
    assert "2 element(s) at a kink" in dx.notes[0]
    assert {row.index for row in dx.rows if row.outcome is ElementOutcome.KINK} == {(0, 2), (0, 5)}
    assert "kink" in str(result)


class AbsWithBadSubgradient:
    """|x| whose backward returns 3 at x == 0: outside both one-sided slopes (-1, 1)."""

    def forward(self, x):
        self.x = x
        return np.abs(x)

    def backward(self, dout):
        return dout * np.where(self.x == 0, 3.0, np.sign(self.x))


def test_kink_with_an_analytic_value_outside_the_slopes_is_inconclusive():
    result = gradverify.check(AbsWithBadSubgradient(), {"x": np.array([0.0, 1.5, -0.5])})
    assert result.status is Status.INCONCLUSIVE
    (row, *_) = result.tensors[0].rows
    assert row.outcome is ElementOutcome.KINK_OUTSIDE and "analytic is neither" in row.note


class NoisyForward:
    """A forward with noise of relative size 1e-7 (a float32-ish computation hidden in float64)."""

    def __init__(self):
        self.rng = np.random.default_rng(123)

    def forward(self, x):
        self.x = x
        return np.sin(x) * (1 + 1e-7 * self.rng.standard_normal(x.shape))

    def backward(self, dout):
        return dout * np.cos(self.x)


class _ScaledRelu:
    """ReLU whose backward is 1.5x on positive inputs and 100 at its kinks."""

    def forward(self, x):
        self.x = x
        return np.maximum(x, 0)

    def backward(self, dout):
        return dout * np.where(self.x > 0, 1.5, np.where(self.x == 0, 100.0, 0.0))


def _not_reestimated(result):
    return [n for t in result.tensors for n in t.notes if "not re-estimated" in n]


def test_only_elements_never_re_estimated_are_called_so():
    rng = np.random.default_rng(0)
    below = gradverify.check(_ScaledRelu(), {"x": np.abs(rng.standard_normal((3, 4))) + 0.1})
    (dx,) = below.tensors
    assert (dx.status, dx.mismatched, dx.reestimated) == (Status.FAIL, 12, 12)
    assert _not_reestimated(below) == []  # all 12 were: none is left unjudged
    above = gradverify.check(
        _ScaledRelu(), {"x": np.abs(rng.standard_normal((6, 10))) + 0.1}, max_reestimate=20
    )
    (dx,) = above.tensors
    assert (dx.status, dx.mismatched, dx.reestimated) == (Status.FAIL, 60, 20)
    assert _not_reestimated(above) == []  # 20 confirmed: the budget was spent, not skipped
    x = np.concatenate([np.zeros(8), np.linspace(0.5, 1.5, 10), -np.linspace(0.5, 1, 6)])
    kinks = gradverify.check(_ScaledRelu(), {"x": x.reshape(4, 6)}, max_reestimate=1)
    # the 5 worst are kinks (they do not count against the budget of 1): 3 more kinks and
    # the 10 positive elements were never re-estimated
    assert _not_reestimated(kinks) == [
        "13 element(s) outside tolerance were not re-estimated (kinks first)"
    ]


def test_a_loss_ignoring_dout_is_not_blamed_for_a_failure_it_cannot_cause():
    class OneElementOff(reference.SoftmaxWithLoss):  # ignores dout, like the book's
        def backward(self, dout=1):
            dx = super().backward(dout)
            dx[1, 2] += 0.3  # a bug no pattern names
            return dx

    rng = np.random.default_rng(0)
    inputs = {"x": rng.standard_normal((3, 4)), "t": np.eye(4)[[0, 2, 1]]}
    result = gradverify.check(OneElementOff(), inputs, nondiff=["t"])
    (dx,) = result.tensors
    assert [f.severity for f in result.findings if f.name == "dout ignored"] == ["warning"]
    assert dx.status is Status.FAIL and dx.hint == ""  # not "multiply by dout": dout is 1


def test_noisy_forward_is_inconclusive_not_failed():
    result = gradverify.check(NoisyForward(), {"x": np.linspace(-1, 1, 6)})
    assert result.status in (Status.PASS, Status.INCONCLUSIVE)
    assert result.status is not Status.FAIL


@pytest.mark.parametrize("name", ["AffineMissingDW", "AffineNoReshapeBack"])
def test_unusable_gradients_fail_with_the_problem_named(name):
    result = _run(BROKEN[name])
    assert result.status is Status.FAIL
    assert any(t.problem for t in result.tensors)


# ---------------------------------------------------------------- hints from bugs


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("MulNoSwap", "swapped"),
        ("MulSwappedOutputs", "swapped"),
        ("AddDropsDout", "ignores dout"),
        ("ReluNoMask", "missing mask"),
        ("ReluMaskInverted", "inverted mask"),
        ("SigmoidSignFlip", "sign error"),
        ("AffineDWTransposed", "transpose"),
        ("DropoutNewMaskInBackward", "a mask other than forward's (drawn again"),
        ("ConvolutionDxDropsBorder", "every wrong element is on the border"),
        ("AffineForgetsLastFeature", "analytic is zero where numeric is not"),  # 3 of 12
        ("AffineForgetsLastFeatureWide", "every wrong element is in row 5 (the last)"),
        ("AffineDWTransposedNonSquare", "shape transposed ((3, 4) for (4, 3))"),
        ("BatchNormDgammaNotSummed", "not summed over the batch (axis 0)"),
        ("AffineDbWrongAxis", "summed over axis 1"),
        ("AffineDbMean", "x numeric on every element"),
        ("AffineMissingDW", ""),
        ("AffineNoReshapeBack", "reshape dx back"),
        ("SoftmaxWithLossNoDivN", "missing 1/N (N = 3"),
        ("SoftmaxWithLossSignFlip", "sign error"),
        ("SoftmaxWithLossLargeEpsilon", "log(y + eps), eps ~ 1.0e-03"),
        ("LeakyReluSignFlipped", "sign flipped on that branch"),
        ("EmbeddingLosesRepeats", "np.add.at(dW, idx, dout)"),
        ("TwoLayerNetSwappedKeys", "swapped"),
        ("TwoLayerNetCopiedParams", "copy"),
    ],
)
def test_each_bug_gets_its_hint(name, hint):
    result = _run(BROKEN[name], seed=1)
    texts = [t.hint or t.problem for t in result.tensors if t.status is not Status.PASS]
    assert any(hint in text for text in texts), texts


# ---------------------------------------------------------------- loss layers and dout


def test_loss_layer_ignoring_dout_is_a_warning_not_a_failure():
    result = _run(REFERENCE["SoftmaxWithLoss"])
    assert result.status is Status.PASS
    (finding,) = result.findings
    assert finding.severity == "warning" and "last layer" in finding.message


def test_layer_ignoring_dout_is_an_error():
    result = _run(BROKEN["AddDropsDout"])
    assert result.status is Status.FAIL
    assert [f.severity for f in result.findings] == ["error"]


# ---------------------------------------------------------------- precision and scale


class Float32Inside:
    """Computes tanh in float32 and returns float64: the precision is float32's."""

    def forward(self, x):
        self.out = np.tanh(x.astype(np.float32)).astype(np.float64)
        return self.out

    def backward(self, dout):
        return dout * (1 - self.out**2)


def test_float32_computed_behind_float64_outputs_is_detected():
    x = np.random.default_rng(0).standard_normal((4, 5))
    result = gradverify.check(Float32Inside(), {"x": x})
    assert result.status is Status.PASS
    assert "forward computes in float32" in result.notes[0]
    assert result.tensors[0].rtol == 1e-3 and result.tensors[0].step > 1e-3


def test_float64_weights_holding_float32_values_are_a_float64_computation():
    # an embedding gathers rows of W: with W cast up from a float32 checkpoint its outputs
    # are exact float32 values, yet it computes in float64, so full tolerances apply
    rng = np.random.default_rng(0)
    weights = rng.standard_normal((10, 4)).astype(np.float32).astype(np.float64)
    layer = reference.Embedding(weights)
    before = weights.copy()
    result = gradverify.check(layer, {"idx": np.array([1, 3, 3])}, nondiff=["idx"])
    assert result.status is Status.PASS, str(result)
    assert not any("computes in float32" in note for note in result.notes)
    assert result.tensors[0].step < 1e-4  # float64's step, not float32's (~5e-3)
    assert np.array_equal(layer.params[0], before) and layer.params[0] is weights


@pytest.mark.parametrize("name", ["Affine", "Relu", "Sigmoid", "MulLayer"])
def test_float32_reference_layers_pass(name):
    case = REFERENCE[name]
    rng = np.random.default_rng(0)
    target = case.build(rng)
    for attribute, value in list(vars(target).items()):
        if isinstance(value, np.ndarray):
            setattr(target, attribute, value.astype(np.float32))
    inputs = {k: v.astype(np.float32) for k, v in case.make_inputs(rng).items()}
    assert gradverify.check(target, inputs).status is Status.PASS


def test_large_inputs_and_weights_pass():
    rng = np.random.default_rng(0)
    layer = reference.Affine(1e3 * rng.standard_normal((4, 3)), 1e3 * rng.standard_normal(3))
    assert gradverify.check(layer, {"x": 1e3 * rng.standard_normal((2, 4))}).status is Status.PASS


def test_saturated_sigmoid_and_all_zero_gradients_pass():
    x = np.array([[30.0, -30.0, 40.0], [-35.0, 25.0, 33.0]])
    assert gradverify.check(reference.Sigmoid(), {"x": x}).status is Status.PASS
    assert gradverify.check(reference.Relu(), {"x": -np.ones((2, 3))}).status is Status.PASS


@pytest.mark.parametrize("name", list(REFERENCE))
def test_one_percent_error_fails_on_every_reference_layer(name):
    case = REFERENCE[name]
    for seed in range(5):
        rng = np.random.default_rng(seed)
        target, inputs = case.build(rng), case.make_inputs(rng)
        adapter = scaled_adapter(target, list(inputs.values()), {}, 1.01)
        result = gradverify.check(target, inputs, nondiff=case.nondiff, adapter=adapter)
        assert result.status is Status.FAIL


# ---------------------------------------------------------------- fast mode


class OneWrongWeight(reference.Affine):
    """Affine whose dW is off in one element."""

    def backward(self, dout):
        dx = super().backward(dout)
        self.dW = self.dW.copy()
        self.dW[17, 5] += 2.0
        return dx


def test_fast_mode_names_the_single_wrong_element():
    rng = np.random.default_rng(0)
    layer = OneWrongWeight(rng.standard_normal((40, 30)), rng.standard_normal(30))
    result = gradverify.check(layer, {"x": rng.standard_normal((3, 40))}, mode="fast")
    dW = next(t for t in result.tensors if t.grad_name == "dW")
    assert dW.status is Status.FAIL and dW.mismatched == 1
    assert dW.rows[0].index == (17, 5) and dW.rows[0].abs_err == pytest.approx(2.0, rel=1e-4)
    assert result.forward_calls < 2 * 1200 // 4  # far fewer than a full check's 2 per element


def test_fast_mode_passes_correct_layers():
    rng = np.random.default_rng(0)
    layer = reference.Affine(rng.standard_normal((40, 30)), rng.standard_normal(30))
    fast = gradverify.check(layer, {"x": rng.standard_normal((3, 40))}, mode="fast")
    assert fast.status is Status.PASS
    assert all(t.projected for t in fast.tensors)


@pytest.mark.parametrize("name", ["TwoLayerNet", "Affine4D", "SoftmaxWithLoss", "Sigmoid"])
def test_fast_mode_never_fails_reference_layers(name):
    for seed in range(20):
        assert _run(REFERENCE[name], seed, mode="fast").status is Status.PASS


@pytest.mark.parametrize(
    "name", ["AffineDbMean", "SigmoidMissingOneMinus", "TwoLayerNetSwappedKeys"]
)
def test_fast_mode_catches_broken_twins(name):
    for seed in range(10):
        assert _run(BROKEN[name], seed, mode="fast").status is Status.FAIL

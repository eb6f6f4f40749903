"""`check` end to end on small hand-made targets: verdicts, errors, and state left untouched."""

from __future__ import annotations

import numpy as np
import pytest

import gradverify
from gradverify import GradientMismatch, InvalidArgument, Status
from gradverify.state import snapshot

RNG = np.random.default_rng(0)


class Affine:
    def __init__(self, W, b, dw_scale=1.0):
        self.W, self.b = W, b
        self.x = self.dW = self.db = None
        self.dw_scale = dw_scale

    def forward(self, x):
        self.x = x
        return x @ self.W + self.b

    def backward(self, dout):
        self.dW = self.dw_scale * self.x.T @ dout
        self.db = dout.sum(axis=0)
        return dout @ self.W.T


class RaisesOnCall(Affine):
    """Raises on the n-th forward call; calls 19-42 of a (2, 4) input perturb W in place."""

    def __init__(self, W, b, fail_at, exception=ValueError):
        super().__init__(W, b)
        self.calls, self.fail_at, self.exception = 0, fail_at, exception

    def forward(self, x):
        self.calls += 1
        if self.calls == self.fail_at:
            raise self.exception(f"boom at call {self.calls}")
        return super().forward(x)


def _affine(cls=Affine, **kwargs):
    return cls(RNG.standard_normal((4, 3)), RNG.standard_normal(3), **kwargs)


def _state_bytes(layer):
    return {k: (v.tobytes() if isinstance(v, np.ndarray) else v) for k, v in vars(layer).items()}


@pytest.mark.parametrize(
    "layer",
    [_affine(), _affine(dw_scale=0.5), _affine(RaisesOnCall, fail_at=23)],
    ids=["passing", "failing", "raising-midway"],
)
def test_target_state_is_bit_for_bit_unchanged(layer):
    before, W = _state_bytes(layer), layer.W
    gradverify.check(layer, {"x": RNG.standard_normal((2, 4))})
    assert _state_bytes(layer) == before and layer.W is W


def test_state_restored_on_keyboard_interrupt():
    layer = _affine(RaisesOnCall, fail_at=25, exception=KeyboardInterrupt)
    before = _state_bytes(layer)
    with pytest.raises(KeyboardInterrupt):
        gradverify.check(layer, {"x": RNG.standard_normal((2, 4))})
    assert _state_bytes(layer) == before


def test_callers_inputs_are_never_modified():
    x = RNG.standard_normal((2, 4))
    before = x.copy()
    gradverify.check(_affine(), {"x": x})
    assert np.array_equal(x, before)


def test_pass_and_fail_verdicts_with_hint():
    x = RNG.standard_normal((2, 4))
    assert gradverify.check(_affine(), {"x": x}).status is Status.PASS
    failed = gradverify.check(_affine(dw_scale=0.5), {"x": x})
    assert failed.status is Status.FAIL
    dW = next(t for t in failed.tensors if t.grad_name == "dW")
    assert dW.mismatched == 12 and "missing factor of 2" in dW.hint


def test_target_that_raises_is_an_error_quoting_its_own_line():
    result = gradverify.check(_affine(RaisesOnCall, fail_at=3), {"x": RNG.standard_normal((2, 4))})
    assert result.status is Status.ERROR
    assert "RaisesOnCall.forward raised ValueError: boom at call 3" in result.error
    assert 'File "test_checks.py"' in result.error and "raise self.exception" in result.error


class MutatesInput(Affine):
    def forward(self, x):
        x *= 1.0000001
        return super().forward(x)


def test_forward_that_modifies_its_input_fails_with_a_finding_and_true_numerics():
    result = gradverify.check(_affine(MutatesInput), {"x": RNG.standard_normal((2, 4))})
    assert result.status is Status.FAIL
    assert [f.name for f in result.findings] == ["input modified"]
    # Every call got fresh copies, so the gradients themselves were judged on stable inputs.
    assert all(t.status is Status.PASS for t in result.tensors)


class LogLayer:
    def forward(self, x):
        return np.log(x)

    def backward(self, dout):
        return dout / self._x if hasattr(self, "_x") else dout


def test_non_finite_forward_is_an_error():
    with np.errstate(invalid="ignore", divide="ignore"):
        result = gradverify.check(LogLayer(), {"x": np.array([1.0, -1.0])})
    assert result.status is Status.ERROR and "not finite at index (1,)" in result.error


def test_assert_gradients_raises_an_assertion_error_with_the_report():
    with pytest.raises(AssertionError) as raised:
        gradverify.assert_gradients(_affine(dw_scale=2.0), {"x": RNG.standard_normal((2, 4))})
    assert isinstance(raised.value, GradientMismatch)
    assert "Affine.backward — dW disagrees with finite differences" in str(raised.value)
    assert raised.value.result.status is Status.FAIL


def test_assert_gradients_returns_the_passing_result():
    assert gradverify.assert_gradients(_affine(), {"x": RNG.standard_normal((2, 4))}).passed


class Loss:
    """A loss layer: returns only dx for (x, t), so t is not differentiated."""

    def forward(self, x, t):
        self.x, self.t = x, t
        return float(np.sum((x - t) ** 2)) / len(x)

    def backward(self, dout=1):
        return 2 * (self.x - self.t) / len(self.x)


def test_trailing_inputs_without_gradient_are_noted():
    x, t = RNG.standard_normal((3, 2)), RNG.standard_normal((3, 2))
    result = gradverify.check(Loss(), {"x": x, "t": t})
    assert result.status is Status.PASS and [t.name for t in result.tensors] == ["x"]
    assert "t is not differentiated" in result.notes[0]
    assert "note: backward returned 1 gradient(s) for 2 inputs" in str(result)


def test_integer_inputs_are_never_differentiated():
    result = gradverify.check(Loss(), {"x": RNG.standard_normal((3, 2)), "t": np.ones((3, 2), int)})
    assert [t.name for t in result.tensors] == ["x"] and not result.notes


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"nondiff": ["y"]}, "`nondiff` names \\['y'\\], which are neither inputs nor arrays"),
        ({"nondiff": "x"}, "pass nondiff=\\['x'\\]"),
        ({"seed": -1}, "`seed` must be a non-negative integer, got seed=-1"),
        ({"rtol": "1e-5"}, "`rtol` must be a non-negative float, got rtol='1e-5'"),
        ({"atol": float("nan")}, "`atol` must be a non-negative finite float"),
        ({"max_reestimate": 0}, "`max_reestimate` must be an integer >= 1"),
        ({"kwargs": [1]}, "`kwargs` must be a mapping"),
        ({"params": ["gain"]}, "`params` names 'gain'"),
    ],
)
def test_bad_arguments_name_the_argument_and_the_fix(options, message):
    with pytest.raises(InvalidArgument, match=message):
        gradverify.check(_affine(), {"x": RNG.standard_normal((2, 4))}, **options)


def test_inputs_of_the_wrong_type():
    with pytest.raises(InvalidArgument, match="`inputs` must be a mapping"):
        gradverify.check(_affine(), RNG.standard_normal((2, 4)))


def test_nothing_to_check_is_an_error_saying_what_was_seen():
    result = gradverify.check(Loss(), {"x": np.ones((3, 2), int), "t": np.ones((3, 2), int)})
    assert result.status is Status.ERROR and not result
    assert "nothing to check" in result.error and "x (int64), t (int64)" in result.error


def test_an_empty_batch_is_an_error_not_a_vacuous_pass():
    result = gradverify.check(_affine(), {"x": np.zeros((0, 4))})
    assert result.status is Status.ERROR
    assert "input x has no elements (shape (0, 4))" in result.error


def test_same_seed_same_result_different_seed_different_cotangent():
    layer, x = _affine(dw_scale=0.9), RNG.standard_normal((2, 4))
    first, again = (gradverify.check(layer, {"x": x}, seed=3) for _ in range(2))
    other = gradverify.check(layer, {"x": x}, seed=4)
    assert first.to_dict() | {"seconds": 0} == again.to_dict() | {"seconds": 0}
    assert first.tensors[1].max_abs_err != other.tensors[1].max_abs_err


def test_float32_layer_passes_at_float32_precision():
    W = RNG.standard_normal((4, 3)).astype(np.float32)
    layer = Affine(W, RNG.standard_normal(3).astype(np.float32))
    result = gradverify.check(layer, {"x": RNG.standard_normal((5, 4)).astype(np.float32)})
    assert result.status is Status.PASS
    assert result.tensors[0].rtol == 1e-3


def test_snapshot_sees_no_change_after_a_check():
    layer = _affine()
    saved = snapshot(layer)
    gradverify.check(layer, {"x": RNG.standard_normal((2, 4))})
    assert saved.changed_arrays() == []


class TwoOutputs:
    """Returns its outputs as a list, and takes plain lists as inputs."""

    def forward(self, x):
        self.x = np.asarray(x)
        return [2 * self.x, self.x**2]

    def backward(self, dout_double, dout_square):
        return 2 * dout_double + 2 * self.x * dout_square


def test_list_outputs_are_several_outputs_and_list_inputs_are_arrays():
    result = gradverify.check(TwoOutputs(), {"x": [[0.5, -1.0], [2.0, 3.0]]})
    assert result.status is Status.PASS and result.tensors[0].shape == (2, 2)


def test_a_missing_input_is_explained():
    result = gradverify.check(_affine(), {})
    assert result.status is Status.ERROR and "goes in inputs={name: value" in result.error


def test_the_python_reproduce_line_carries_the_options_given():
    from layers_under_test.reference import SoftmaxWithLoss

    rng = np.random.default_rng(0)
    inputs = {"x": rng.standard_normal((3, 4)), "t": np.eye(4)[[0, 1, 3]]}
    plain = gradverify.check(SoftmaxWithLoss(), inputs, nondiff=["t"])
    assert plain.reproduce.endswith("<same inputs>, seed=0, nondiff=['t'])")
    given = gradverify.check(
        SoftmaxWithLoss(), inputs, nondiff=["t"], mode="full", rtol=1e-4, kwargs={}, seed=3
    )
    assert given.reproduce.endswith("seed=3, nondiff=['t'], rtol=0.0001, mode='full')")
    arrays = gradverify.check(_affine(), {"x": rng.standard_normal((2, 4))}, kwargs={})
    assert "kwargs" not in arrays.reproduce

"""Every malformed target gets a verdict with the reason, never a traceback from gradverify.

Each row is a small target of its own, shaped like an unfinished assignment or a
common slip; none of them may reach the caller as anything but a `CheckResult`
(or, for the caller's own bad input, an `InvalidArgument`).
"""

from __future__ import annotations

import numpy as np
import pytest

import gradverify
from gradverify import InvalidArgument, Status

RNG = np.random.default_rng(0)


class Returns:
    """forward returns `out(x)`; backward returns `grad(dout, x)`."""

    def __init__(self, out, grad=lambda dout, x: dout):
        self.out, self.grad = out, grad

    def forward(self, x):
        self.x = x
        return self.out(x)

    def backward(self, dout):
        return self.grad(dout, self.x)


def _generator(x):
    yield x


FORWARD_RETURNS = {
    "None (an unfinished template)": (lambda x: None, "returned None: did it forget `return out`?"),
    "a dict": (lambda x: {"out": x}, "returned dict; return the output as a numpy array"),
    "a string": (lambda x: "out", "returned str; return the output as a numpy array"),
    "a generator": (_generator, "returned generator; return the output as a numpy array"),
    "a list of numbers": (lambda x: x.tolist(), "returned a Python list (from .tolist()?)"),
    "integers": (lambda x: np.round(x).astype(int), "returned only integers (int64)"),
    "complex numbers": (lambda x: x + 1j, "of dtype complex128, expected real floats"),
    "NaN": (lambda x: np.log(x - 10), "is not finite at index (0, 0)"),
    "an empty tuple": (lambda x: (), "returned an empty tuple"),
}


@pytest.mark.parametrize("what", FORWARD_RETURNS)
def test_forward_returning_something_malformed_is_an_error_saying_what(what):
    out, message = FORWARD_RETURNS[what]
    result = gradverify.check(Returns(out), {"x": RNG.standard_normal((2, 3))})
    assert result.status is Status.ERROR and not result
    assert message in result.error, result.error


BACKWARD_RETURNS = {
    "a dict": (lambda dout, x: {"x": dout}, Status.ERROR, "returned dict; return the gradient"),
    "a string": (lambda dout, x: "dx", Status.ERROR, "returned str; return the gradient"),
    "a generator": (lambda dout, x: (d for d in [dout]), Status.ERROR, "returned generator"),
    "None": (lambda dout, x: None, Status.FAIL, "dx is None: backward never wrote it"),
    "a wrong shape": (lambda dout, x: dout[0], Status.FAIL, "dx has shape (3,), but x has shape"),
    "complex numbers": (lambda dout, x: dout + 0j, Status.FAIL, "dx is complex128"),
    "objects": (lambda dout, x: dout.astype(object), Status.FAIL, "dx is an object array"),
}


@pytest.mark.parametrize("what", BACKWARD_RETURNS)
def test_backward_returning_something_malformed_gets_a_verdict_saying_what(what):
    grad, status, message = BACKWARD_RETURNS[what]
    with np.errstate(all="raise"):  # no numpy warning may escape either
        result = gradverify.check(
            Returns(lambda x: 2 * x, grad), {"x": RNG.standard_normal((2, 3))}
        )
    assert result.status is status, str(result)
    assert message in str(result), str(result)


def test_a_gradient_returned_as_nested_lists_is_read_as_one_gradient():
    result = gradverify.check(
        Returns(lambda x: 2 * x, lambda dout, x: (2 * dout).tolist()),
        {"x": RNG.standard_normal((2, 3))},
    )
    assert result.status is Status.PASS, str(result)


def test_a_python_float_output_is_a_scalar_loss():
    result = gradverify.check(
        Returns(lambda x: float(np.sum(x**2)), lambda dout, x: 2 * x * dout),
        {"x": RNG.standard_normal(3)},
    )
    assert result.status is Status.PASS


class TwoOutputsInAList:
    """forward returns ``[x @ W, x.sum(1)]``: two outputs of different shapes in a list."""

    def __init__(self):
        self.W = RNG.standard_normal((3, 2))

    def forward(self, x):
        self.x = x
        return [x @ self.W, x.sum(axis=1)]

    def backward(self, d_product, d_sum):
        self.dW = self.x.T @ d_product
        return d_product @ self.W.T + d_sum[:, None]


def test_a_list_of_arrays_of_different_shapes_is_several_outputs():
    result = gradverify.check(TwoOutputsInAList(), {"x": RNG.standard_normal((4, 3))})
    assert result.status is Status.PASS, str(result)
    assert [t.name for t in result.tensors] == ["x", "W"]


class DropsAnOutput:
    """forward returns two outputs, but only one once x[0, 0] grows: the count changes."""

    def forward(self, x):
        self.x = x
        return (2 * x,) if x[0, 0] > 0.5 else (2 * x, x.sum(axis=1))

    def backward(self, d_double, d_sum):
        return 2 * d_double + d_sum[:, None]


def test_a_forward_whose_number_of_outputs_changes_is_an_error_saying_so():
    x = np.full((2, 3), 0.5)
    x[0, 0] = 0.5 - 1e-9  # the step of the check crosses the threshold
    result = gradverify.check(DropsAnOutput(), {"x": x})
    assert result.status is Status.ERROR, str(result)
    assert "returned 1 outputs at a perturbed point but 2 at the centre" in result.error


class BufferForward:
    """forward writes into one buffer it returns on every call (a common speed trick)."""

    def __init__(self):
        self.W = RNG.standard_normal((3, 2))
        self.out = np.empty((4, 2))

    def forward(self, x):
        self.x = x
        return np.matmul(x, self.W, out=self.out)

    def backward(self, dout):
        self.dW = self.x.T @ dout
        return dout @ self.W.T


def test_a_forward_reusing_its_output_buffer_is_checked_like_any_other():
    result = gradverify.check(BufferForward(), {"x": RNG.standard_normal((4, 3))})
    assert result.status is Status.PASS, str(result)


class RaisesIn:
    def __init__(self, stage):
        self.stage = stage

    def forward(self, x):
        if self.stage == "forward":
            raise ValueError("shapes (2,3) and (4,) not aligned")
        return x

    def backward(self, dout):
        raise KeyError("cache")


@pytest.mark.parametrize("stage", ["forward", "backward"])
def test_a_target_that_raises_is_an_error_quoting_its_line(stage):
    result = gradverify.check(RaisesIn(stage), {"x": RNG.standard_normal((2, 3))})
    assert result.status is Status.ERROR
    assert f"RaisesIn.{stage} raised" in result.error
    assert "test_malformed_targets.py" in result.error


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_non_finite_input_is_the_callers_error_named_before_the_target_runs(bad):
    x = RNG.standard_normal((2, 3))
    x[1, 2] = bad
    with pytest.raises(InvalidArgument, match=r"inputs\['x'\] is not finite at \(1, 2\)"):
        gradverify.check(Returns(lambda v: v), {"x": x})


def test_bool_of_a_result_is_whether_it_passed_and_its_repr_is_one_line():
    failing = gradverify.check(Returns(lambda x: 2 * x), {"x": RNG.standard_normal((2, 3))})
    passing = gradverify.check(
        Returns(lambda x: 2 * x, lambda dout, x: 2 * dout), {"x": RNG.standard_normal((2, 3))}
    )
    assert not failing and passing
    assert repr(failing) == "<CheckResult Returns.backward: FAIL (dx FAIL) seed=0>"
    with pytest.raises(AssertionError):
        assert gradverify.check(Returns(lambda x: 2 * x), {"x": RNG.standard_normal((2, 3))})

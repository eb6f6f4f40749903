"""Checks held against a trusted reference: what a gradient check cannot see, and who is blamed."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import gradverify
from gradverify import InvalidArgument, Status
from layers_under_test import broken, reference
from layers_under_test.alternatives import (
    SigmoidViaTanh,
    SoftmaxViaLog,
    SoftmaxWithLossLogSumExp,
)
from layers_under_test.registry import REFERENCE, WRONG_FUNCTION, LayerCase

SEEDS = range(4)


def _x(seed: int = 0, shape: tuple[int, ...] = (3, 4)) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


def _case_check(case: LayerCase, seed: int, **options: Any) -> gradverify.CheckResult:
    rng = np.random.default_rng(seed)
    target = case.build(rng)
    return gradverify.check(
        target,
        case.make_inputs(rng),
        nondiff=case.nondiff,
        kwargs=case.kwargs,
        seed=seed,
        **options,
    )


def test_a_wrong_slope_passes_the_gradient_check_and_fails_against_the_reference() -> None:
    plain = gradverify.check(broken.SigmoidWrongSlope(), {"x": _x()})
    assert plain.status is Status.PASS
    held = gradverify.check(broken.SigmoidWrongSlope(), {"x": _x()}, reference="Sigmoid")
    assert held.status is Status.FAIL
    assert [c.status for c in held.comparisons] == [Status.FAIL, Status.FAIL]
    assert held.against == "the reference Sigmoid"
    text = str(held)
    assert "forward output differs from the reference Sigmoid" in text
    assert (
        "FAIL         output     shape (3, 4) float64 | differs at (2, 1): 0.07372 vs 0.22" in text
    )
    assert all(t.status is Status.PASS for t in held.tensors)  # the gradient check stands


@pytest.mark.parametrize("seed", SEEDS)
def test_correct_alternative_formulas_pass_against_the_reference(seed: int) -> None:
    x = _x(seed, (4, 5))
    assert gradverify.check(SigmoidViaTanh(), {"x": 3 * x}, reference="sigmoid", seed=seed)
    assert gradverify.check(SoftmaxViaLog(), {"x": 3 * x}, reference="Softmax", seed=seed)
    labels = np.eye(5)[np.random.default_rng(seed + 10).integers(0, 5, 4)]
    softmax = gradverify.check(
        SoftmaxWithLossLogSumExp(),
        {"x": x, "t": labels},  # the book's log(y + 1e-7) is off where y < ~1e-5
        nondiff=["t"],
        reference="SoftmaxWithLoss",
        seed=seed,
    )
    assert softmax.status is Status.PASS, softmax


@pytest.mark.parametrize("flag", [True, False])
def test_dropout_scaled_at_test_time_is_caught_in_both_modes(flag: bool) -> None:
    options: dict[str, Any] = {"kwargs": {"train_flg": flag}}
    layer = broken.DropoutNotInverted(0.3)
    assert gradverify.check(layer, {"x": _x()}, **options).status is Status.PASS
    held = gradverify.check(layer, {"x": _x()}, reference=reference.InvertedDropout(0.3), **options)
    assert held.status is Status.FAIL
    output = held.comparisons[0]
    assert output.kind == "output" and output.status is Status.FAIL
    assert output.hint.startswith("yours = 0.7 x the reference InvertedDropout on every element")
    assert "a scale that belongs to the other mode" in output.hint


def test_a_mode_swap_is_named() -> None:
    held = gradverify.check(
        broken.DropoutModesSwapped(), {"x": _x()}, kwargs={"train_flg": True}, reference="Dropout"
    )
    assert held.comparisons[0].hint == ""  # the book's Dropout is no inverted dropout
    held = gradverify.check(
        broken.DropoutModesSwapped(),
        {"x": _x()},
        kwargs={"train_flg": True},
        reference="InvertedDropout",
    )
    assert "with train_flg=True computes what the reference computes with train_flg=False" in (
        held.comparisons[0].hint
    )


@pytest.mark.parametrize("name", list(WRONG_FUNCTION))
def test_every_wrong_function_twin_fails_against_its_reference(name: str) -> None:
    case = WRONG_FUNCTION[name]
    for seed in SEEDS:
        assert _case_check(case, seed).status is Status.PASS, f"{name}: {case.bug}"
        held = _case_check(case, seed, reference=case.reference)
        assert held.status is Status.FAIL, f"{name} seed {seed}"
        assert held.comparisons[0].status is Status.FAIL


@pytest.mark.parametrize("name", [n for n, c in REFERENCE.items() if not c.factory])
def test_every_shipped_layer_passes_against_itself(name: str) -> None:
    """No false failure from the comparison: a fresh build of the same case, as reference."""
    case = REFERENCE[name]
    rng = np.random.default_rng(5)
    target, inputs = case.build(rng), case.make_inputs(rng)
    trusted = case.build(np.random.default_rng(6))  # other weights: the target's are copied in
    held = gradverify.check(
        target, inputs, nondiff=case.nondiff, kwargs=case.kwargs, reference=trusted
    )
    assert held.status is Status.PASS, held
    assert held.comparisons and all(c.status is Status.PASS for c in held.comparisons)


def test_a_failing_reference_is_the_references_error() -> None:
    held = gradverify.check(
        SigmoidViaTanh(), {"x": _x()}, reference=broken.SigmoidMissingOneMinus()
    )
    assert held.status is Status.ERROR
    assert held.error.startswith(
        "the reference SigmoidMissingOneMinus does not pass its own gradient check (FAIL), so "
        "the differences from it say nothing about SigmoidViaTanh.backward"
    )
    assert "SigmoidMissingOneMinus.backward — dx disagrees with finite differences" in held.error
    assert held.comparisons == ()  # nothing is blamed on the target
    assert [t.status for t in held.tensors] == [Status.PASS]


def test_a_reference_that_raises_is_the_references_error() -> None:
    class Raises:
        def forward(self, x: np.ndarray) -> np.ndarray:
            raise RuntimeError("not implemented")

        def backward(self, dout: np.ndarray) -> np.ndarray:
            return dout

    held = gradverify.check(SigmoidViaTanh(), {"x": _x()}, reference=Raises())
    assert held.status is Status.ERROR
    assert held.error.startswith("the reference Raises could not be run on these inputs")
    assert "RuntimeError: not implemented" in held.error


def test_weights_are_copied_in_by_name_and_both_objects_left_as_found() -> None:
    rng = np.random.default_rng(0)
    target = reference.Affine(rng.standard_normal((4, 3)), rng.standard_normal(3))
    trusted = reference.Affine(rng.standard_normal((4, 3)), rng.standard_normal(3))
    before = {k: v.copy() for k, v in vars(trusted).items() if isinstance(v, np.ndarray)}
    target_w = target.W.copy()
    assert gradverify.check(target, {"x": _x(1, (2, 4))}, reference=trusted)
    assert np.array_equal(target.W, target_w)
    assert {k: v for k, v in vars(trusted).items() if isinstance(v, np.ndarray)}.keys() == (
        before.keys()
    )
    assert all(np.array_equal(getattr(trusted, k), v) for k, v in before.items())
    assert trusted.dW is None and trusted.x is None


def test_a_network_is_compared_by_its_params_keys() -> None:
    case = REFERENCE["TwoLayerNet"]
    rng = np.random.default_rng(0)
    net, inputs = case.build(rng), case.make_inputs(rng)
    other = case.build(np.random.default_rng(1))
    held = gradverify.check(net, inputs, nondiff=case.nondiff, reference=other)
    assert held.status is Status.PASS
    assert [c.name for c in held.comparisons] == [
        "output",
        *(f"gradient()[{k!r}]" for k in net.params),
    ]
    swapped = broken.TwoLayerNetSwappedKeys(5, 3, 3, 0.25, np.random.default_rng(0))
    _, inputs = case.build(rng), case.make_inputs(rng)
    trusted = reference.TwoLayerNet(5, 3, 3)
    assert gradverify.check(swapped, inputs, nondiff=case.nondiff, reference=trusted).status is (
        Status.FAIL
    )


def test_a_class_or_name_is_built_from_what_the_target_holds() -> None:
    rng = np.random.default_rng(0)
    layer = reference.Affine(rng.standard_normal((4, 3)), rng.standard_normal(3))
    assert gradverify.check(layer, {"x": _x(1, (2, 4))}, reference=reference.Affine)
    assert gradverify.check(layer, {"x": _x(1, (2, 4))}, reference="affine")
    net = reference.TwoLayerNet(5, 3, 3)
    with pytest.raises(InvalidArgument, match=r"holds no input_size, hidden_size, output_size"):
        gradverify.check(net, {"x": _x(0, (2, 5)), "t": np.eye(3)[[0, 2]]}, reference="TwoLayerNet")


class AffineRenamed:
    """A correct Affine whose weights are called ``weights`` and ``bias``."""

    def __init__(self, weights: np.ndarray, bias: np.ndarray) -> None:
        self.weights, self.bias = weights, bias
        self.dweights = self.dbias = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.x = x
        return x @ self.weights + self.bias

    def backward(self, dout: np.ndarray) -> np.ndarray:
        self.dweights, self.dbias = self.x.T @ dout, dout.sum(axis=0)
        return dout @ self.weights.T


def test_weights_named_otherwise_pair_by_value_or_are_refused() -> None:
    rng = np.random.default_rng(0)
    w, b = rng.standard_normal((4, 3)), rng.standard_normal(3)
    same = gradverify.check(
        AffineRenamed(w, b), {"x": _x(1, (2, 4))}, reference=reference.Affine(w, b)
    )
    assert same.status is Status.PASS  # built from the same arrays: paired by their values
    assert [c.name for c in same.comparisons] == ["output", "dx", "dweights", "dbias"]
    with pytest.raises(InvalidArgument, match=r"holds no weight named 'weights' and no single"):
        gradverify.check(
            AffineRenamed(w, b), {"x": _x(1, (2, 4))}, reference=reference.Affine(b=b, W=w + 1)
        )


class LazyRenamed:
    """A correct Affine with weights ``P``, ``Q`` whose gradient attributes appear in backward."""

    def __init__(self, P: np.ndarray, Q: np.ndarray) -> None:
        self.P, self.Q = P, Q

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.x = x
        return x @ self.P + self.Q

    def backward(self, dout: np.ndarray) -> np.ndarray:
        self.dP, self.dQ = self.x.T @ dout, dout.sum(axis=0)
        return dout @ self.P.T


class GradW:
    """A correct Affine without bias whose gradient is ``grad_W`` (declared with params=)."""

    def __init__(self, W: np.ndarray) -> None:
        self.W, self.grad_W = W, None

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.x = x
        return x @ self.W

    def backward(self, dout: np.ndarray) -> np.ndarray:
        self.grad_W = self.x.T @ dout
        return dout @ self.W.T


def test_references_the_target_was_not_designed_with_are_held_like_any_other() -> None:
    rng = np.random.default_rng(0)
    w, b = rng.standard_normal((4, 3)), rng.standard_normal(3)
    x = {"x": _x(1, (2, 4))}
    lazy = gradverify.check(reference.Affine(w, b), x, reference=LazyRenamed(w.copy(), b.copy()))
    assert lazy.status is Status.PASS, lazy  # its dP exists only after a backward
    read_only = reference.Affine(w + 1, b)
    read_only.W.setflags(write=False)
    held = gradverify.check(reference.Affine(w, b), x, reference=read_only)
    assert held.status is Status.PASS, held
    assert not read_only.W.flags.writeable and np.array_equal(read_only.W, w + 1)
    declared = gradverify.check(GradW(w), x, params={"W": "grad_W"}, reference=GradW(w - 1))
    assert declared.status is Status.PASS, declared  # the same class takes the declaration


def test_a_gradient_the_reference_lacks_is_inconclusive_not_the_targets_fail() -> None:
    def forward(x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, Any]:
        return x @ w, (x, w)

    def backward_x_only(dout: np.ndarray, cache: Any) -> np.ndarray:
        return dout @ cache[1].T

    def backward(dout: np.ndarray, cache: Any) -> tuple[np.ndarray, np.ndarray]:
        return dout @ cache[1].T, cache[0].T @ dout

    inputs = {"x": _x(1, (2, 4)), "w": _x(2, (4, 3))}
    held = gradverify.check((forward, backward), inputs, reference=(forward, backward_x_only))
    assert held.status is Status.INCONCLUSIVE
    assert (
        held.comparisons[-1].problem == "the reference forward has no gradient of w to compare with"
    )


@pytest.mark.parametrize("value", [0, False, [1, 2], {"W": 1}, np])
def test_a_value_is_no_reference_and_is_refused_before_the_check(value: Any) -> None:
    class Counted(SigmoidViaTanh):
        calls = 0

        def forward(self, x: np.ndarray) -> np.ndarray:
            Counted.calls += 1
            return super().forward(x)

    with pytest.raises(InvalidArgument, match=r"`reference` must be a trusted layer"):
        gradverify.check(Counted(), {"x": _x()}, reference=value)
    assert Counted.calls == 0


def test_module_object_names_a_reference_in_python_too() -> None:
    held = gradverify.check(
        broken.SigmoidWrongSlope(), {"x": _x()}, reference="layers_under_test.reference:Sigmoid"
    )
    assert held.status is Status.FAIL and held.against == "the reference Sigmoid"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"reference": "Affine", "baseline": "b.npz"}, "pass `reference` or `baseline`, not both"),
        ({"regen": True}, r"`regen=True` rewrites a baseline: pass baseline=PATH"),
        ({"regen": "yes"}, r"`regen` must be True or False, got regen='yes'"),
        ({"baseline": 3}, r"`baseline` must be a file path, got baseline=3"),
        ({"reference": "Afine"}, r"reference 'Afine' is not a shipped reference layer \(they are"),
    ],
)
def test_bad_comparison_arguments_are_named(options: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        gradverify.check(SigmoidViaTanh(), {"x": _x()}, **options)


def test_the_reference_may_not_be_the_target() -> None:
    layer = SigmoidViaTanh()
    with pytest.raises(InvalidArgument, match="`reference` is the checked target itself"):
        gradverify.check(layer, {"x": _x()}, reference=layer)


def test_fuzz_builds_a_named_reference_for_every_case_and_refuses_a_baseline() -> None:
    spec = REFERENCE["Affine"].spec
    found = gradverify.fuzz(reference.Affine, spec, examples=8, reference="Affine")
    assert found.passed
    wrong = gradverify.fuzz(
        broken.SigmoidWrongSlope, REFERENCE["Sigmoid"].spec, examples=4, reference="Sigmoid"
    )
    assert not wrong.passed and wrong.result is not None
    assert wrong.result.against == "the reference Sigmoid"
    assert wrong.result.comparisons[0].status is Status.FAIL
    with pytest.raises(InvalidArgument, match="fuzz takes no `baseline`"):
        gradverify.fuzz(reference.Affine, spec, examples=2, baseline="x.npz")


def test_json_carries_the_comparisons() -> None:
    held = gradverify.check(broken.SigmoidWrongSlope(), {"x": _x()}, reference="Sigmoid")
    data = held.to_dict()
    assert data["against"] == "the reference Sigmoid"
    output = data["comparisons"][0]
    assert output["name"] == "output" and output["status"] == "fail"
    assert output["differing"] == 12 and output["rows"][0]["index"] == [2, 1]


def test_assert_gradients_raises_with_the_difference() -> None:
    with pytest.raises(gradverify.GradientMismatch) as raised:
        gradverify.assert_gradients(broken.SigmoidWrongSlope(), {"x": _x()}, reference="Sigmoid")
    message = str(raised.value)
    assert "SigmoidWrongSlope.backward — forward output differs from the reference Sigmoid" in (
        message
    )
    assert "dx differs from the reference Sigmoid" in message
    assert raised.value.result.comparisons[0].status is Status.FAIL


@pytest.mark.parametrize("path", ["", "a\x00b.npz", "."])
def test_a_baseline_path_that_names_no_file_is_refused(path: str) -> None:
    with pytest.raises(InvalidArgument, match=r"`baseline` must name a file"):
        gradverify.check(SigmoidViaTanh(), {"x": _x()}, baseline=path)


def test_a_baseline_that_cannot_be_written_is_an_error_that_keeps_the_gradient_verdict(
    tmp_path,
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    held = gradverify.check(SigmoidViaTanh(), {"x": _x()}, baseline=str(blocker / "s.npz"))
    assert held.status is Status.ERROR
    assert held.error.startswith(f"the baseline {blocker / 's.npz'} cannot be written (")
    assert [t.status for t in held.tensors] == [Status.PASS]


def test_the_other_mode_is_suggested_only_for_a_train_flag() -> None:
    class Mean:
        def forward(self, x: np.ndarray, keepdims: bool = False) -> np.ndarray:
            return x.mean(axis=1, keepdims=keepdims)

        def backward(self, dout: np.ndarray) -> np.ndarray:
            return np.repeat(dout.reshape(-1, 1), 4, axis=1) / 4

    class Sum(Mean):
        def forward(self, x: np.ndarray, keepdims: bool = False) -> np.ndarray:
            return 4 * super().forward(x, keepdims)

        def backward(self, dout: np.ndarray) -> np.ndarray:
            return 4 * super().backward(dout)

    held = gradverify.check(Sum(), {"x": _x()}, kwargs={"keepdims": True}, reference=Mean())
    assert held.comparisons[0].hint.startswith("yours = 4 x the reference Mean on every element")
    assert "other mode" not in held.comparisons[0].hint

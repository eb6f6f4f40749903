"""Declared conventions: each public style checks with its declaration alone, and its twin fails.

The targets are in `layers_under_test.conventions`, written the way public code
writes them.  Each test also proves the declaration is what makes the difference
(without it the check cannot examine the weights: never a PASS), and that the
target is left exactly as it was.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from gradverify import InvalidArgument, Status, check
from layers_under_test import conventions as public
from layers_under_test.reference import Affine

SEEDS = range(5)
PASS_FORWARD = {"forward": "forward_pass", "backward": "backward_pass"}
PROPOGATE = {"forward": "forward_pass", "backward": "back_propogate"}


def _affine_weights(rng: np.random.Generator, bias_shape: tuple[int, ...] = (3,)) -> tuple:
    return rng.standard_normal((4, 3)), rng.standard_normal(bias_shape)


def _verdicts(build: Any, inputs: Any, **declared: Any) -> set[Status]:
    found = set()
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        found.add(check(build(rng), inputs(rng), seed=seed, **declared).status)
    return found


def _x(rng: np.random.Generator, name: str = "x") -> dict[str, np.ndarray]:
    return {name: rng.standard_normal((2, 4))}


# ---------------------------------------------------------------- methods, optimizer


def test_optimizer_inside_backward_is_captured_and_weights_stay() -> None:
    rng = np.random.default_rng(0)
    layer = public.DenseWithOptimizer(*_affine_weights(rng, (1, 3)))
    W, w0, opt = layer.W, layer.w0, layer.W_opt
    before = W.copy(), w0.copy()
    result = check(layer, _x(rng, "X"), methods=PASS_FORWARD, optimizer=["W_opt", "w0_opt"])
    assert result.status is Status.PASS, result
    assert {t.name for t in result.tensors} == {"X", "W", "w0"}
    assert layer.W is W and layer.w0 is w0 and layer.W_opt is opt  # the very objects
    assert np.array_equal(W, before[0]) and np.array_equal(w0, before[1])
    assert "optimizer=['W_opt', 'w0_opt']" in result.reproduce


@pytest.mark.parametrize("cls", [public.DenseWithOptimizer, public.DenseWithOptimizerMeanBias])
def test_optimizer_twin_fails(cls: type) -> None:
    verdicts = _verdicts(
        lambda rng: cls(*_affine_weights(rng, (1, 3))),
        lambda rng: _x(rng, "X"),
        methods=PASS_FORWARD,
        optimizer=["W_opt", "w0_opt"],
    )
    expected = Status.PASS if cls is public.DenseWithOptimizer else Status.FAIL
    assert verdicts == {expected}


def test_without_the_optimizer_declared_the_weights_are_not_passed_silently() -> None:
    rng = np.random.default_rng(0)
    layer = public.DenseWithOptimizerMeanBias(*_affine_weights(rng, (1, 3)))
    result = check(layer, _x(rng, "X"), methods=PASS_FORWARD)
    assert result.status is Status.FAIL, result  # the real optimizer moved the weights
    assert "declare optimizer=['W_opt', 'w0_opt']" in str(result)


def test_an_optimizer_never_called_is_an_error_saying_so() -> None:
    rng = np.random.default_rng(0)
    layer = public.DenseWithOptimizer(*_affine_weights(rng, (1, 3)))
    layer.trainable = False
    result = check(layer, _x(rng, "X"), methods=PASS_FORWARD, optimizer="W_opt")
    assert result.status is Status.ERROR
    assert "never called W_opt.update()" in result.error


def test_methods_and_params_by_other_names() -> None:
    verdicts = {
        cls: _verdicts(
            lambda rng, cls=cls: cls(*_affine_weights(rng)),
            lambda rng: _x(rng, "X"),
            methods=PROPOGATE,
            params={"W": "dEdW", "B": "dEdB"},
        )
        for cls in (public.BackPropogateLayer, public.BackPropogateLayerAveraged)
    }
    assert verdicts[public.BackPropogateLayer] == {Status.PASS}
    assert verdicts[public.BackPropogateLayerAveraged] == {Status.FAIL}


def test_undeclared_methods_are_named_in_the_refusal() -> None:
    rng = np.random.default_rng(0)
    layer = public.BackPropogateLayer(*_affine_weights(rng))
    with pytest.raises(Exception, match=r"methods=\{'forward': 'forward_pass', 'backward': "):
        check(layer, _x(rng, "X"))


@pytest.mark.parametrize(
    ("declared", "message"),
    [
        (
            {"methods": {"forward": "forward_pass", "backward": "back_propagate"}},
            r"`methods\['backward'\]`: 'back_propagate' was not found \(did you mean 'back_pro",
        ),
        ({"methods": {"backward": "back_propogate"}}, r"method forward \(methods= does not"),
        ({"methods": {"fwd": "forward_pass"}}, r"has only \['forward', 'backward'\]"),
        ({"methods": PROPOGATE, "optimizer": "W_optim"}, r"`optimizer`: 'W_optim' was not found"),
        (
            {"methods": PROPOGATE, "flush": "flush_all"},
            r"`flush`: 'flush_all' was not found; found: back_propogate, forward_pass",
        ),
        ({"methods": PROPOGATE, "returns": ("X", 3)}, r"`returns` must name"),
        ({"methods": PROPOGATE, "returns": ("X", "X")}, r"names X more than once"),
        ({"backward_args": "dout"}, r"`backward_args` must list"),
    ],
)
def test_wrong_declarations_name_what_was_looked_for(declared: dict, message: str) -> None:
    rng = np.random.default_rng(0)
    layer = public.BackPropogateLayer(*_affine_weights(rng))
    W = layer.W.copy()
    with pytest.raises(InvalidArgument, match=message):
        check(layer, _x(rng, "X"), **declared)
    assert np.array_equal(layer.W, W) and layer.X is None  # left as it was


# ---------------------------------------------------------------- what backward returns


@pytest.mark.parametrize(
    ("cls", "expected"),
    [(public.AffineReturningList, Status.PASS), (public.AffineReturningListMeanBias, Status.FAIL)],
)
def test_backward_returning_dx_and_a_list_is_understood_by_shape(
    cls: type, expected: Status
) -> None:
    assert _verdicts(lambda rng: cls(*_affine_weights(rng)), _x) == {expected}


def test_a_list_of_same_shaped_gradients_is_never_guessed() -> None:
    rng = np.random.default_rng(0)
    layer = public.AffineReturningList(rng.standard_normal((3, 3)), rng.standard_normal(3))
    layer.b = rng.standard_normal((3, 3))  # W and b now have one shape: which is which?
    result = check(layer, {"x": rng.standard_normal((3, 3))})
    assert result.status is Status.ERROR
    assert "W and b all have the shape (3, 3)" in result.error and "params=[" in result.error
    declared = check(layer, {"x": rng.standard_normal((3, 3))}, params=["W", "b"])
    assert declared.status is Status.FAIL  # db is a sum over rows: a (3,) shape, b is (3, 3)


def test_declared_order_wins_where_shapes_would_mislead() -> None:
    """A list in the reverse of the weights' order, with one shape: declared, it passes."""

    class Bilinear:
        def __init__(self, A: np.ndarray, B: np.ndarray) -> None:
            self.A, self.B = A, B

        def forward(self, x: np.ndarray) -> np.ndarray:
            self.x = x
            return x @ self.A + x @ self.B * 2.0

        def backward(self, dout: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
            return dout @ self.A.T + 2.0 * dout @ self.B.T, [2.0 * self.x.T @ dout, self.x.T @ dout]

    rng = np.random.default_rng(0)
    layer = Bilinear(rng.standard_normal((3, 3)), rng.standard_normal((3, 3)))
    x = {"x": rng.standard_normal((2, 3))}
    assert check(layer, x, returns=("x", ["B", "A"])).status is Status.PASS
    assert check(layer, x, returns=("x", ["A", "B"])).status is Status.FAIL


def test_a_flat_return_of_weight_gradients_is_named_by_returns() -> None:
    class FlatAffine(Affine):
        def backward(self, dout: np.ndarray) -> tuple[np.ndarray, ...]:
            dx = super().backward(dout)
            return dx, self.dW, self.db

    rng = np.random.default_rng(0)
    layer, x = FlatAffine(*_affine_weights(rng)), _x(rng)
    undeclared = check(layer, x)
    assert undeclared.status is Status.FAIL
    assert "returns=('x', 'W', 'b') names each in order" in str(undeclared)
    assert check(layer, x, returns=("x", "W", "b")).status is Status.PASS


def test_backward_returning_a_dict_of_weight_gradients() -> None:
    class DictAffine(Affine):
        def backward(self, dout: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
            dx = super().backward(dout)
            return dx, {"dW": self.dW, "b": self.db}

    rng = np.random.default_rng(0)
    layer = DictAffine(*_affine_weights(rng))
    del layer.dW, layer.db  # the gradients reach the check only through the dict
    result = check(layer, _x(rng))
    assert result.status is Status.PASS, result
    assert {t.name for t in result.tensors} == {"x", "W", "b"}


# ---------------------------------------------------------------- accumulate until flushed


@pytest.mark.parametrize(
    ("cls", "expected"),
    [
        (public.FullyConnectedFlushed, Status.PASS),
        (public.FullyConnectedFlushedNoActivationGrad, Status.FAIL),
    ],
)
def test_flushed_layer_with_lazy_parameters(cls: type, expected: Status) -> None:
    verdicts = _verdicts(
        lambda rng: cls(3, seed=int(rng.integers(100))), _x, flush="flush_gradients"
    )
    assert verdicts == {expected}


def test_flushed_layer_is_left_unbuilt_and_without_flush_it_cannot_pass() -> None:
    layer = public.FullyConnectedFlushed(3)
    inputs = _x(np.random.default_rng(0))
    result = check(layer, inputs, flush="flush_gradients")
    assert {t.name for t in result.tensors} == {"x", "parameters['W']", "parameters['b']"}
    assert not layer.is_initialized and layer.parameters == {} and layer.X == []
    assert check(layer, inputs).status is not Status.PASS  # inputs pile up: backward returns a list


# ---------------------------------------------------------------- function pairs


@pytest.mark.parametrize(
    ("backward", "expected"),
    [(public.fc_backward, Status.PASS), (public.fc_backward_mean_bias, Status.FAIL)],
)
def test_pair_whose_backward_takes_forward_inputs(backward: Any, expected: Status) -> None:
    def inputs(rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {
            "x": rng.standard_normal((2, 4)),
            "W": rng.standard_normal((4, 3)),
            "b": rng.standard_normal(3),
        }

    verdicts = _verdicts(
        lambda rng: (public.fc_forward, backward),
        inputs,
        backward_args=("dout", "W", "x"),
        returns=("W", "b", "x"),
    )
    assert verdicts == {expected}


def test_a_pair_returning_gradients_in_another_order_is_told_how_to_declare_it() -> None:
    rng = np.random.default_rng(0)
    inputs = {
        "x": rng.standard_normal((2, 4)),
        "W": rng.standard_normal((4, 3)),
        "b": rng.standard_normal(3),
    }

    def fc_forward(x: np.ndarray, W: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, tuple]:
        return public.fc_forward(x, W, b), (x, W)

    def fc_backward(dout: np.ndarray, cache: tuple) -> tuple[np.ndarray, ...]:
        x, W = cache
        return public.fc_backward(dout, W, x)  # (dW, db, dx)

    result = check((fc_forward, fc_backward), inputs)
    assert result.status is Status.FAIL
    assert "declare returns=('W', 'b', 'x')" in str(result)
    assert check((fc_forward, fc_backward), inputs, returns=("W", "b", "x")).status is Status.PASS


def test_pair_declarations_name_forward_inputs() -> None:
    rng = np.random.default_rng(0)
    inputs = {
        "x": rng.standard_normal((2, 4)),
        "W": rng.standard_normal((4, 3)),
        "b": rng.standard_normal(3),
    }
    pair = (public.fc_forward, public.fc_backward)
    with pytest.raises(
        InvalidArgument, match=r"`backward_args`: 'w' was not found \(did you mean 'W'\?\)"
    ):
        check(pair, inputs, backward_args=("dout", "w", "x"), returns=("W", "b", "x"))
    with pytest.raises(InvalidArgument, match=r"`returns`: 'q' was not found"):
        check(pair, inputs, backward_args=("dout", "W", "x"), returns=("W", "q", "x"))
    result = check(pair, inputs, backward_args=("dout", "W", "x"), returns=("W", "b"))
    assert result.status is Status.ERROR and "returns=('W', 'b') declares 2" in result.error


# ---------------------------------------------------------------- the CLI and the plugin

_CLI_TARGET = [
    "check",
    "layers_under_test.conventions:BackPropogateLayerAveraged",
    "--init",
    "W=4,3",
    "--init",
    "B=3",
    "--input",
    "X=2,4",
]


def test_cli_takes_the_declarations_and_reproduces_them(capsys: Any) -> None:
    from gradverify.cli import main

    declared = [
        "--methods", "forward=forward_pass", "--methods", "backward=back_propogate",
        "--params", "W=dEdW", "--params", "B=dEdB",
    ]  # fmt: skip
    assert main([*_CLI_TARGET, *declared]) == 1
    out = capsys.readouterr().out
    assert "dEdW" in out and "FAIL" in out
    assert "--methods backward=back_propogate" in out  # the reproduce line keeps them
    assert main([*_CLI_TARGET]) == 2  # undeclared: refused, saying what to declare
    assert "--methods forward=forward_pass --methods backward=back_propogate" in (
        capsys.readouterr().err
    )


def test_cli_returns_layout_and_its_errors(capsys: Any) -> None:
    from gradverify.cli import main

    target = [
        "check", "layers_under_test.conventions:AffineReturningListMeanBias",
        "--init", "W=3,3", "--init", "b=3", "--input", "x=2,3",
    ]  # fmt: skip
    assert main([*target, "--returns", "x,[W,b]"]) == 1
    assert "db" in capsys.readouterr().out
    assert main([*target, "--returns", "x,[W,b"]) == 2
    assert "--returns takes names separated by commas" in capsys.readouterr().err


def test_plugin_fixture_takes_the_declarations(pytester: Any) -> None:
    pytester.makepyfile(
        """
import numpy as np
from layers_under_test import conventions as public

def make(cls):
    rng = np.random.default_rng(0)
    layer = cls(rng.standard_normal((4, 3)), rng.standard_normal((1, 3)))
    return layer, {"X": rng.standard_normal((2, 4))}

DECLARED = dict(
    methods={"forward": "forward_pass", "backward": "backward_pass"},
    optimizer=["W_opt", "w0_opt"],
)

def test_good(gradcheck):
    gradcheck(*make(public.DenseWithOptimizer), **DECLARED)

def test_bad(gradcheck):
    gradcheck(*make(public.DenseWithOptimizerMeanBias), **DECLARED)
"""
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-n", "0")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*dw0 via w0_opt disagrees with finite differences*"])


# ---------------------------------------------------------------- found in review


class CachedCopyAffine(public.AffineReturningList):
    """Caches a copy of its input: a float array held that is no weight."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.x = x.copy()
        return x @ self.W + self.b


def test_returns_may_name_gradients_and_never_takes_a_cache_for_a_weight() -> None:
    rng = np.random.default_rng(0)
    layer, x = CachedCopyAffine(*_affine_weights(rng)), _x(rng)
    result = check(layer, x, returns=("dx", ["dW", "db"]))
    assert result.status is Status.PASS, result
    assert {t.name for t in result.tensors} == {"x", "W", "b"}


def test_weights_in_a_dict_or_a_tuple_are_matched_to_the_returned_gradients() -> None:
    class InDict:
        def __init__(self, W: np.ndarray, b: np.ndarray) -> None:
            self.params = {"W": W, "b": b}

        def forward(self, x: np.ndarray) -> np.ndarray:
            self.x = x
            return x @ self.params["W"] + self.params["b"]

        def backward(self, dout: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
            grads = {"W": self.x.T @ dout, "b": dout.sum(axis=0)}
            return dout @ self.params["W"].T, grads

    class InTuple(InDict):
        def __init__(self, W: np.ndarray, b: np.ndarray) -> None:
            self.weights = (W, b)
            self.params = {"W": W, "b": b}

        def backward(self, dout: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
            dx, grads = super().backward(dout)
            return dx, [grads["W"], grads["b"]]

    for cls in (InDict, InTuple):
        rng = np.random.default_rng(0)
        result = check(cls(*_affine_weights(rng)), _x(rng))
        assert result.status is Status.PASS, result
        assert len(result.tensors) == 3


def test_an_optimizer_called_by_keyword_is_recorded() -> None:
    class Keywords(public.DenseWithOptimizer):
        def backward_pass(self, accum_grad: np.ndarray) -> np.ndarray:
            W = self.W
            assert self.layer_input is not None
            grad_w = self.layer_input.T.dot(accum_grad)
            self.W = self.W_opt.update(w=self.W, grad_wrt_w=grad_w)
            self.w0 = self.w0_opt.update(self.w0, grad_wrt_w=accum_grad.sum(0, keepdims=True))
            return accum_grad.dot(W.T)

    rng = np.random.default_rng(0)
    layer = Keywords(*_affine_weights(rng, (1, 3)))
    result = check(layer, _x(rng, "X"), methods=PASS_FORWARD, optimizer=["W_opt", "w0_opt"])
    assert result.status is Status.PASS, result


@pytest.mark.parametrize(
    ("declared", "message"),
    [
        ({"optimizer": ["W_opt", "W_opt"]}, r"`optimizer` names 'W_opt' more than once"),
        ({"backward_args": ("dout", "dout")}, r"`backward_args` names 'dout' more than once"),
        ({"backward_args": ("dout", "out")}, r"backward_args cannot be declared for a layer"),
        ({"optimizer": "opts"}, r"holds a list of optimizers; name each one.*'opts\[0\]'"),
        ({"flush": "trainable"}, r"`flush`: 'trainable' is a bool \(True\), not what it must"),
    ],
)
def test_declarations_that_cannot_apply_are_refused(declared: dict, message: str) -> None:
    rng = np.random.default_rng(0)
    layer = public.DenseWithOptimizer(*_affine_weights(rng, (1, 3)))
    layer.opts = [layer.W_opt, layer.w0_opt]  # type: ignore[attr-defined]
    with pytest.raises(InvalidArgument, match=message):
        check(layer, _x(rng, "X"), methods=PASS_FORWARD, **declared)


def test_cli_layout_names_holding_brackets_are_quoted() -> None:
    from gradverify.adapters.conventions import parse_layout

    assert parse_layout("x,['params[0]','params[1]']") == ["x", ["params[0]", "params[1]"]]
    with pytest.raises(InvalidArgument, match="--returns takes names separated by commas"):
        parse_layout("x W")

"""Layers that carry state from one call to the next are checked from a fixed state.

The second volume's ``TimeRNN(stateful=True)`` starts every forward from the hidden
state the last one left.  The check holds that state fixed (re-binding what the layer
held before every call, or its own ``reset_state()``), checks the gradient of the
starting state where the layer exposes it (``dh``), and leaves the state as it was.
"""

from __future__ import annotations

import numpy as np
import pytest

from gradverify import Status, check
from gradverify.results import FindingKind
from layers_under_test import broken, volume2

N, T, D, H = 2, 3, 3, 4


def _rnn(cls: type, rng: np.random.Generator, *, started: bool = True) -> object:
    layer = cls(*(rng.standard_normal(s) for s in ((D, H), (H, H), (H,))), stateful=True)
    if started:
        layer.set_state(rng.standard_normal((N, H)))
    return layer


def _lstm(cls: type, rng: np.random.Generator) -> object:
    shapes = ((D, 4 * H), (H, 4 * H), (4 * H,))
    layer = cls(*(rng.standard_normal(s) for s in shapes), stateful=True)
    layer.set_state(rng.standard_normal((N, H)), rng.standard_normal((N, H)))
    return layer


def _xs(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {"xs": rng.standard_normal((N, T, D))}


@pytest.mark.parametrize("seed", range(10))
def test_stateful_rnn_passes_with_the_gradient_of_its_starting_state(seed: int) -> None:
    rng = np.random.default_rng(seed)
    layer = _rnn(volume2.TimeRNN, rng)
    h, saved = layer.h, layer.h.copy()
    result = check(layer, _xs(rng), seed=seed)
    assert result.status is Status.PASS, result
    assert "dh" in {t.grad_name for t in result.tensors}
    assert any("carries state" in note and "h" in note for note in result.notes)
    assert layer.h is h and np.array_equal(h, saved) and layer.layers is None  # as it was


def test_stateful_rnn_without_a_starting_state_passes_from_zero() -> None:
    rng = np.random.default_rng(0)
    layer = _rnn(volume2.TimeRNN, rng, started=False)
    result = check(layer, _xs(rng))
    assert result.status is Status.PASS, result
    assert "dh" not in {t.grad_name for t in result.tensors}  # no state: nothing to perturb
    assert layer.h is None


@pytest.mark.parametrize("seed", range(5))
def test_stateful_twins_fail(seed: int) -> None:
    rng = np.random.default_rng(seed)
    assert check(_rnn(broken.TimeRNNForgetsDh, rng), _xs(rng), seed=seed).status is Status.FAIL
    rng = np.random.default_rng(seed)
    lstm = check(_lstm(broken.TimeLSTMForgetsDc, rng), _xs(rng), seed=seed)
    assert lstm.status is Status.FAIL


def test_stateful_lstm_checks_dh_and_says_what_it_holds_fixed() -> None:
    rng = np.random.default_rng(0)
    result = check(_lstm(volume2.TimeLSTM, rng), _xs(rng))
    assert result.status is Status.PASS, result
    (note,) = [n for n in result.notes if "carries state" in n]
    assert "re-binds" in note and " c" in note and note.endswith("is checked: dh")


def test_a_dh_set_only_by_backward_is_checked_too() -> None:
    class Late(volume2.TimeRNN):  # no self.dh in __init__: backward makes it
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            del self.dh

    rng = np.random.default_rng(0)
    result = check(_rnn(Late, rng), _xs(rng))
    assert result.status is Status.PASS, result
    assert "dh" in {t.grad_name for t in result.tensors}


class InPlaceState:
    """State updated in place (re-binding cannot undo it); reset_state() can."""

    def __init__(self, W: np.ndarray) -> None:
        self.W = W
        self.total = np.zeros(W.shape[1])

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.x = x
        out = x @ self.W + self.total
        self.total += out.sum(axis=0)
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        self.dW = self.x.T @ dout
        return dout @ self.W.T


def test_state_changed_in_place_is_held_by_reset_state_or_reported() -> None:
    rng = np.random.default_rng(0)
    x = {"x": rng.standard_normal((2, 3))}
    layer = InPlaceState(rng.standard_normal((3, 4)))
    changing = check(layer, x)
    assert changing.status is Status.FAIL
    assert FindingKind.NONDETERMINISTIC_FORWARD in {f.kind for f in changing.findings}

    class Resettable(InPlaceState):
        def reset_state(self) -> None:
            self.total[...] = 0.0

    layer = Resettable(rng.standard_normal((3, 4)))
    layer.total += 1.0
    result = check(layer, x)
    assert result.status is Status.PASS, result
    assert any("Resettable.reset_state() gives" in note for note in result.notes)
    assert np.array_equal(layer.total, np.ones(4))  # the check's own state put back


class Rnnlm:
    """The second volume's language model: its TimeLSTM keeps its state between batches."""

    def __init__(self, rng: np.random.Generator, vocabulary: int = 5) -> None:
        lstm = volume2.TimeLSTM(
            *(0.5 * rng.standard_normal(s) for s in ((D, 4 * H), (H, 4 * H), (4 * H,))),
            stateful=True,
        )
        self.layers = [
            volume2.TimeEmbedding(rng.standard_normal((vocabulary, D))),
            lstm,
            volume2.TimeAffine(
                rng.standard_normal((H, vocabulary)), rng.standard_normal(vocabulary)
            ),
        ]
        self.loss_layer = volume2.TimeSoftmaxWithLoss()
        self.lstm_layer = lstm
        self.params = [p for layer in self.layers for p in layer.params]
        self.grads = [g for layer in self.layers for g in layer.grads]

    def forward(self, xs: np.ndarray, ts: np.ndarray) -> float:
        for layer in self.layers:
            xs = layer.forward(xs)
        return self.loss_layer.forward(xs, ts)

    def backward(self, dout: float = 1) -> None:
        dout = self.loss_layer.backward(dout)
        for layer in reversed(self.layers):
            dout = layer.backward(dout)

    def reset_state(self) -> None:
        self.lstm_layer.reset_state()


def test_a_network_holding_a_stateful_layer_is_checked_from_its_state() -> None:
    rng = np.random.default_rng(0)
    model = Rnnlm(rng)
    words = {"xs": rng.integers(0, 5, (N, T)), "ts": rng.integers(0, 5, (N, T))}
    model.forward(**words)  # a batch before: the LSTM now carries h and c into the next
    h = model.lstm_layer.h
    result = check(model, words)
    assert result.status is Status.PASS, result
    assert len(result.tensors) == len(model.params)
    assert any("carries state" in note for note in result.notes)
    assert model.lstm_layer.h is h


def test_state_and_a_declared_optimizer_together() -> None:
    """The state is held to what the layer holds once the optimizer's stand-in is bound,
    so the stand-in stays for every call and the weights stay put."""

    class StepOptimizer:
        def update(self, w: np.ndarray, grad: np.ndarray) -> np.ndarray:
            return w - 0.1 * grad

    class StatefulDense:
        def __init__(self, W: np.ndarray) -> None:
            self.W, self.opt, self.h = W, StepOptimizer(), np.zeros(W.shape[1])

        def forward(self, x: np.ndarray) -> np.ndarray:
            self.x = x
            out = x @ self.W + self.h
            self.h = out.sum(axis=0)
            return out

        def backward(self, dout: np.ndarray) -> np.ndarray:
            W = self.W
            self.W = self.opt.update(self.W, self.x.T @ dout)
            return dout @ W.T

    rng = np.random.default_rng(0)
    layer = StatefulDense(rng.standard_normal((3, 2)))
    W, opt = layer.W, layer.opt
    result = check(layer, {"x": rng.standard_normal((2, 3))}, optimizer="opt")
    assert result.status is Status.PASS, result
    assert layer.W is W and layer.opt is opt

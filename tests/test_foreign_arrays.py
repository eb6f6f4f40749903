"""Layers computing with arrays of another library check as their numpy twins do.

One family of layers is written once against an array namespace ``xp`` (the array
API: ``xp.sum``, ``xp.exp``, ``xp.where``) and built for numpy, for
`array_api_strict` (the standard and nothing more) and for torch CPU tensors when
torch is installed; the verdicts must be the same seed for seed, the user's arrays
untouched.  CuPy is checked where a GPU and CuPy are present.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import pytest

from gradverify import Status, check

array_api_strict = pytest.importorskip("array_api_strict")


def _torch() -> Any:
    torch = pytest.importorskip("torch", reason="torch is not installed (an optional backend)")
    from array_api_compat import torch as namespace

    del torch
    return namespace


class Affine:
    def __init__(self, xp: Any, W: Any, b: Any) -> None:
        self.xp, self.W, self.b = xp, W, b

    def forward(self, x: Any) -> Any:
        self.x = x
        return self.x @ self.W + self.b

    def backward(self, dout: Any) -> Any:
        self.dW = self.x.T @ dout
        self.db = self._bias(dout)
        return dout @ self.W.T

    def _bias(self, dout: Any) -> Any:
        return self.xp.sum(dout, axis=0)


class AffineDbMean(Affine):
    """db as the batch mean of dout, not its sum."""

    def _bias(self, dout: Any) -> Any:
        return self.xp.mean(dout, axis=0)


class Sigmoid:
    def __init__(self, xp: Any) -> None:
        self.xp = xp

    def forward(self, x: Any) -> Any:
        self.out = 1.0 / (1.0 + self.xp.exp(-x))
        return self.out

    def backward(self, dout: Any) -> Any:
        return dout * self.out * (1.0 - self.out)


class ReluNoMask:
    """Backward passes dout through where x <= 0."""

    def __init__(self, xp: Any) -> None:
        self.xp = xp

    def forward(self, x: Any) -> Any:
        return self.xp.where(x > 0, x, self.xp.zeros_like(x))

    def backward(self, dout: Any) -> Any:
        return dout


def _namespaces() -> dict[str, Any]:
    found = {"numpy": np, "array_api_strict": array_api_strict}
    with contextlib.suppress(pytest.skip.Exception):  # torch's own test says it skipped
        found["torch"] = _torch()
    return found


def _case(name: str, xp: Any, seed: int) -> tuple[Any, dict[str, Any]]:
    rng = np.random.default_rng(seed)
    x = xp.asarray(rng.standard_normal((3, 4)))
    if name in ("Affine", "AffineDbMean"):
        cls = Affine if name == "Affine" else AffineDbMean
        W, b = rng.standard_normal((4, 2)), rng.standard_normal(2)
        return cls(xp, xp.asarray(W), xp.asarray(b)), {"x": x}
    return {"Sigmoid": Sigmoid, "ReluNoMask": ReluNoMask}[name](xp), {"x": x}


@pytest.mark.parametrize("name", ["Affine", "AffineDbMean", "Sigmoid", "ReluNoMask"])
def test_same_verdicts_as_numpy_seed_for_seed(name: str) -> None:
    verdicts: dict[str, list[Status]] = {}
    for library, xp in _namespaces().items():
        verdicts[library] = [check(*_case(name, xp, seed), seed=seed).status for seed in range(5)]
    expected = Status.PASS if name in ("Affine", "Sigmoid") else Status.FAIL
    assert verdicts["numpy"] == [expected] * 5
    assert all(v == verdicts["numpy"] for v in verdicts.values()), verdicts


def test_the_users_arrays_are_untouched_and_the_weights_put_back() -> None:
    layer, inputs = _case("Affine", array_api_strict, 0)
    W, x = layer.W, inputs["x"]
    before = np.from_dlpack(W).copy(), np.from_dlpack(x).copy()
    result = check(layer, inputs)
    assert result.status is Status.PASS
    assert {t.name for t in result.tensors} == {"x", "W", "b"}
    assert layer.W is W and inputs["x"] is x
    assert np.array_equal(np.from_dlpack(W), before[0])
    assert np.array_equal(np.from_dlpack(x), before[1])
    assert "(array_api_strict)" in result.label
    assert any("array_api_strict arrays" in note for note in result.notes)


def test_torch_float32_is_checked_at_float32_precision() -> None:
    torch = _torch()
    rng = np.random.default_rng(0)
    W = torch.asarray(rng.standard_normal((4, 2)), dtype=torch.float32)
    b = torch.asarray(rng.standard_normal(2), dtype=torch.float32)
    x = torch.asarray(rng.standard_normal((3, 4)), dtype=torch.float32)
    good = check(Affine(torch, W, b), {"x": x})
    assert good.status is Status.PASS, good
    assert {t.dtype for t in good.tensors} == {"float32"}
    assert check(AffineDbMean(torch, W, b), {"x": x}).status is Status.FAIL


def test_an_array_of_no_known_library_is_named_never_passed() -> None:
    class Opaque:
        shape = (2,)
        dtype = "float64"

        def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
            return np.ones(2)

    class Holder:
        def __init__(self) -> None:
            self.W = Opaque()

        def forward(self, x: np.ndarray) -> np.ndarray:
            return x * 2.0

        def backward(self, dout: np.ndarray) -> np.ndarray:
            return dout * 2.0

    result = check(Holder(), {"x": np.ones(2)})  # held: named as an array it cannot move
    assert result.status is Status.INCONCLUSIVE
    assert "Opaque" in result.tensors[-1].problem
    given = check(Holder(), {"x": Opaque()})  # given as the input: nothing to check with
    assert given.status is Status.ERROR
    assert "no array-API namespace covers" in given.error


def test_cupy_on_a_gpu() -> None:
    cupy = pytest.importorskip("cupy", reason="CuPy is not installed (needs a CUDA GPU)")
    try:
        gpus = cupy.cuda.runtime.getDeviceCount()
    except Exception as error:  # CuPy without a driver
        pytest.skip(f"no CUDA device: {error}")
    if not gpus:
        pytest.skip("no CUDA device")
    layer, inputs = _case("Affine", cupy, 0)
    assert check(layer, inputs).status is Status.PASS
    broken, inputs = _case("AffineDbMean", cupy, 0)
    assert check(broken, inputs).status is Status.FAIL


def test_a_numpy_scalar_held_is_not_another_library() -> None:
    class Scaled(Sigmoid):
        def __init__(self) -> None:
            super().__init__(np)
            self.scale = np.float64(1.0)

    result = check(Scaled(), {"x": np.ones((2, 3))})
    assert result.status is Status.PASS
    assert result.label == "Scaled.backward"  # not wrapped as "(numpy)"


def test_workers_are_not_forked_for_another_librarys_arrays() -> None:
    layer, inputs = _case("AffineDbMean", array_api_strict, 0)
    result = check(layer, inputs, workers=2, mode="full")
    assert result.status is Status.FAIL
    assert any("workers=2 asked for, but the target computes with" in n for n in result.notes)


def test_torch_bfloat16_is_an_error_saying_why() -> None:
    torch = _torch()
    layer = Sigmoid(torch)
    result = check(layer, {"x": torch.ones((2, 3), dtype=torch.bfloat16)})
    assert result.status is Status.ERROR
    assert "bfloat16 has no numpy copy" in result.error


class TorchNet:
    """The textbook's two-layer network over torch tensors; its second Affine is broken."""

    def __init__(self, torch: Any, rng: np.random.Generator) -> None:
        def t(*shape: int) -> Any:
            return torch.asarray(rng.standard_normal(shape))

        self.params = {"W1": t(4, 5), "b1": t(5), "W2": t(5, 3), "b2": t(3)}
        self.affine1 = Affine(torch, self.params["W1"], self.params["b1"])
        self.relu = Relu(torch)
        self.affine2 = AffineDbMean(torch, self.params["W2"], self.params["b2"])
        self.torch = torch

    def loss(self, x: Any, t: Any) -> Any:
        scores = self.affine2.forward(self.relu.forward(self.affine1.forward(x)))
        return self.torch.sum((scores - t) ** 2) / 2

    def gradient(self, x: Any, t: Any) -> dict[str, Any]:
        scores = self.affine2.forward(self.relu.forward(self.affine1.forward(x)))
        dout = self.affine1.backward(self.relu.backward(self.affine2.backward(scores - t)))
        del dout
        return {"W1": self.affine1.dW, "b1": self.affine1.db, "W2": self.affine2.dW,
                "b2": self.affine2.db}  # fmt: skip


class Relu:
    def __init__(self, xp: Any) -> None:
        self.xp = xp

    def forward(self, x: Any) -> Any:
        self.mask = x > 0
        return self.xp.where(self.mask, x, self.xp.zeros_like(x))

    def backward(self, dout: Any) -> Any:
        return self.xp.where(self.mask, dout, self.xp.zeros_like(dout))


def test_a_torch_network_is_diagnosed_layer_by_layer() -> None:
    torch = _torch()
    rng = np.random.default_rng(0)
    net = TorchNet(torch, rng)
    inputs = {"x": torch.asarray(rng.standard_normal((3, 4))),
              "t": torch.asarray(rng.standard_normal((3, 3)))}  # fmt: skip
    result = check(net, inputs)
    assert result.status is Status.FAIL
    assert result.diagnosis is not None
    verdicts = {v.path: v.status for v in result.diagnosis.layers}
    assert verdicts == {"affine1": Status.PASS, "relu": Status.PASS, "affine2": Status.FAIL}

"""Fuzzing finds what one fixed shape misses, and shrinks it to the smallest failing case."""

from __future__ import annotations

import numpy as np
import pytest

import gradverify
from gradverify import InvalidArgument, Status
from gradverify.fuzzing import fuzz
from layers_under_test import reference

AFFINE = {
    "dims": {"N": [1, 4], "D": [1, 5], "M": [1, 5]},
    "init": {"W": ["D", "M"], "b": ["M"]},
    "inputs": {"x": ["N", "D"]},
}
SOFTMAX = {
    "dims": {"N": [1, 4], "C": [2, 5]},
    "inputs": {
        "x": ["N", "C"],
        "t": {"shape": ["N", "C"], "domain": "onehot", "classes": "C"},
    },
}


class AffineDbSqueeze(reference.Affine):
    """db squeezed: right for M > 1, a 0-d array instead of shape (1,) when M == 1."""

    def backward(self, dout):
        dx = super().backward(dout)
        self.db = np.squeeze(dout.sum(axis=0, keepdims=True))
        return dx


class SoftmaxBatchFromClasses(reference.SoftmaxWithLoss):
    """Divides by the number of classes instead of the batch size: right only when N == C."""

    def backward(self, dout=1):
        return (self.y - self.t) / self.t.shape[1]


def test_fixed_shape_misses_what_fuzzing_finds_and_shrinks():
    rng = np.random.default_rng(0)
    layer = AffineDbSqueeze(rng.standard_normal((4, 3)), rng.standard_normal(3))
    assert gradverify.check(layer, {"x": rng.standard_normal((2, 4))}).passed
    found = fuzz(AffineDbSqueeze, AFFINE, examples=50)
    assert found.status is Status.FAIL
    assert found.case.dims == {"N": 1, "D": 1, "M": 1}  # the smallest shape that fails
    text = str(found)
    assert "smallest failing case:" in text and "db has shape (), but b has shape (1,)" in text
    assert "reproduce: gradverify.fuzz(AffineDbSqueeze, spec, examples=50, seed=0)" in text


def test_batch_size_bug_shrinks_to_the_smallest_mismatch():
    t = np.eye(3)[[0, 1, 2]]
    square = gradverify.check(
        SoftmaxBatchFromClasses(),
        {"x": np.random.default_rng(0).standard_normal((3, 3)), "t": t},
        nondiff=["t"],
    )
    assert square.passed  # N == C: the fixed square case cannot tell
    found = fuzz(SoftmaxBatchFromClasses, SOFTMAX, examples=50)
    assert found.status is Status.FAIL
    assert found.case.dims == {"N": 1, "C": 2}


def test_same_seed_same_verdict():
    first, again = (fuzz(AffineDbSqueeze, AFFINE, examples=20, seed=7) for _ in range(2))
    assert first.case.describe() == again.case.describe()


@pytest.mark.parametrize(
    ("factory", "spec"),
    [(reference.Affine, AFFINE), (reference.SoftmaxWithLoss, SOFTMAX)],
)
def test_reference_layers_survive_fuzzing(factory, spec):
    assert fuzz(factory, spec, examples=60).passed


def test_a_factory_that_cannot_build_is_an_error():
    found = fuzz(reference.Affine, {"dims": {"N": 2}, "init": {"Q": ["N"]}, "inputs": {"x": ["N"]}})
    assert found.status is Status.ERROR and "factory(**init) raised TypeError" in found.result.error


def test_bad_examples_argument():
    with pytest.raises(InvalidArgument, match="`examples` must be a positive int"):
        fuzz(reference.Affine, AFFINE, examples=0)


def test_the_same_seed_draws_the_same_cases_whatever_the_process_imported(tmp_path, monkeypatch):
    """Hypothesis mixes constants from imported local modules into its draws; a module
    full of them imported between two runs must not change what the seed draws."""
    spec = {"dims": {"N": [1, 3], "D": [1, 4]}, "inputs": {"x": ["N", "D"]}}
    seen: list[list[bytes]] = [[], []]

    def recording(run):
        def factory():
            layer = reference.Relu()
            forward = layer.forward

            def watched(x):
                seen[run].append(np.asarray(x).tobytes())
                return forward(x)

            layer.forward = watched
            return layer

        return factory

    fuzz(recording(0), spec, examples=40, seed=3)
    (tmp_path / "constants_here.py").write_text(
        "VALUES = [0.123456789, -7.75, 1e-3, 42.5, 3.25e5, 0.015625, -0.333, 2.5e-7]\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    __import__("constants_here")
    fuzz(recording(1), spec, examples=40, seed=3)
    assert seen[0] == seen[1]

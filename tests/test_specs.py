"""Specs are validated once, with errors that name the entry and the fix."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings

from gradverify.errors import InvalidArgument
from gradverify.specs import draw, parse_spec
from gradverify.strategies import cases

AFFINE = {
    "dims": {"N": [1, 4], "D": [1, 5], "M": 3},
    "init": {"W": ["D", "M"], "b": ["M"]},
    "inputs": {"x": ["N", "D"]},
}


def test_a_valid_spec():
    spec = parse_spec(AFFINE)
    assert spec.dims == {"N": (1, 4), "D": (1, 5), "M": (3, 3)}
    assert spec.init["W"].shape == ("D", "M") and spec.inputs["x"].domain == "real"
    assert spec.nondiff == ()


def test_labels_are_never_differentiated():
    spec = parse_spec(
        {
            "dims": {"N": [1, 3], "C": [2, 4]},
            "inputs": {
                "x": ["N", "C"],
                "t": {"shape": ["N", "C"], "domain": "onehot", "classes": "C"},
                "y": {"shape": ["N"], "domain": "labels", "classes": "C"},
            },
        }
    )
    assert spec.nondiff == ("t", "y")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ([1, 2], "`spec` must be a mapping"),
        ({"dims": {}, "inputs": {"x": ["K"]}}, "uses dimension 'K', which dims does not declare"),
        ({"dims": {"N": [3, 1]}, "inputs": {"x": ["N"]}}, "dims.N must satisfy 0 <= low <= high"),
        (
            {"dims": {"N": "many"}, "inputs": {"x": ["N"]}},
            "dims.N must be an int or \\[low, high\\]",
        ),
        ({"dims": {}, "inputs": {"x": [0]}}, "inputs.x has size 0"),
        ({"dims": {}, "inputs": {"x": {"shape": [2], "domain": "complex"}}}, "domain 'complex'"),
        ({"dims": {}, "inputs": {"x": {"shape": [2], "scale": -1}}}, "scale -1"),
        ({"dims": {}, "inputs": {"t": {"shape": [2], "domain": "labels"}}}, "give classes"),
        (
            {
                "dims": {"C": 3},
                "inputs": {"t": {"shape": [2, 4], "domain": "onehot", "classes": "C"}},
            },
            "last dimension must be 'C'",
        ),
        (
            {
                "dims": {},
                "inputs": {"t": {"shape": [2], "domain": "labels", "classes": 3, "ignore": 0}},
            },
            "ignore 0; it is a negative int",
        ),
        (
            {"dims": {}, "inputs": {"x": {"shape": [2], "ignore": -1}}},
            "for the labels domain only",
        ),
        ({"dims": {}}, "needs 'inputs'"),
        ({"dims": {}, "inputs": {"x": [2]}, "outputs": {}}, "unknown keys \\['outputs'\\]"),
    ],
)
def test_invalid_specs(spec, message):
    with pytest.raises(InvalidArgument, match=message):
        parse_spec(spec)


def test_labels_need_at_least_one_class():
    with pytest.raises(InvalidArgument, match="labels need at least one class"):
        parse_spec(
            {
                "dims": {"C": [0, 3]},
                "inputs": {"t": {"shape": [2], "domain": "labels", "classes": "C"}},
            }
        )


def test_ignored_labels_are_drawn_but_never_all_of_them():
    spec = {
        "dims": {"N": [1, 3], "C": [1, 3]},
        "inputs": {"t": {"shape": ["N"], "domain": "labels", "classes": "C", "ignore": -100}},
    }
    drawn = [draw(spec, np.random.default_rng(seed)).inputs["t"] for seed in range(300)]
    assert any((t == -100).any() for t in drawn)
    assert not any((t == -100).all() for t in drawn)
    assert all(((t == -100) | ((t >= 0) & (t < 3))).all() for t in drawn)

    @given(cases(spec))
    @settings(max_examples=100, database=None)
    def never_all_ignored(case):
        labels = case.inputs["t"]
        assert not (labels == -100).all() and ((labels == -100) | (labels >= 0)).all()

    never_all_ignored()

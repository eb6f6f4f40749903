"""Specs are validated once, with errors that name the entry and the fix."""

from __future__ import annotations

import pytest

from gradverify.errors import InvalidArgument
from gradverify.specs import parse_spec

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

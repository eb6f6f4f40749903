"""Drawn cases are consistent, inside their domains, and away from kinks."""

from __future__ import annotations

import numpy as np
from hypothesis import given

import gradverify
from gradverify.specs import KINK_MARGIN
from gradverify.strategies import cases
from layers_under_test import reference

SPEC = {
    "dims": {"N": [1, 4], "D": [1, 5], "M": [1, 3], "C": [2, 4]},
    "init": {"W": ["D", "M"], "b": ["M"]},
    "inputs": {
        "x": ["N", "D"],
        "p": {"shape": ["N", "C"], "domain": "probabilities"},
        "u": {"shape": ["N"], "domain": "unit", "dtype": "float32"},
        "t": {"shape": ["N", "C"], "domain": "onehot", "classes": "C"},
        "y": {"shape": ["N"], "domain": "labels", "classes": "C"},
        "big": {"shape": ["D"], "scale": 1e3},
    },
}


@given(cases(SPEC))
def test_cases_are_consistent_and_in_their_domains(case):
    n, d, m, c = (case.dims[k] for k in "NDMC")
    assert case.init["W"].shape == (d, m) and case.inputs["x"].shape == (n, d)
    x = case.inputs["x"]
    assert np.all(np.isfinite(x)) and np.all(np.abs(x) >= KINK_MARGIN) and np.all(np.abs(x) <= 1)
    assert np.allclose(case.inputs["p"].sum(axis=1), 1) and np.all(case.inputs["p"] > 0)
    u = case.inputs["u"]
    assert u.dtype == np.float32 and np.all((u > 0) & (u < 1))
    assert np.array_equal(case.inputs["t"].sum(axis=1), np.ones(n))
    assert case.inputs["y"].dtype == np.int64 and np.all(
        (case.inputs["y"] >= 0) & (case.inputs["y"] < c)
    )
    assert np.max(np.abs(case.inputs["big"])) <= 1e3
    assert case.nondiff == ("t", "y")


@given(cases({"dims": {"N": [1, 3], "D": [1, 4]}, "inputs": {"x": ["N", "D"]}}))
def test_usable_in_a_users_own_test(case):
    assert gradverify.check(reference.Relu(), case.inputs, nondiff=case.nondiff).passed


@given(
    cases(
        {
            "dims": {"N": [9, 12]},
            "inputs": {"x": ["N", "N"], "p": {"shape": ["N", 9], "domain": "probabilities"}},
        }
    )
)
def test_large_arrays_are_drawn_from_a_seed_in_their_domain(case):
    x = case.inputs["x"]
    assert x.size > 64 and np.all(np.abs(x) >= KINK_MARGIN) and np.all(np.abs(x) <= 1)
    assert np.allclose(case.inputs["p"].sum(axis=1), 1)

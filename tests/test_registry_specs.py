"""The registry's specs and twins: fuzzing passes every reference layer over its spec's
shapes, fails each shape-dependent twin at the smallest shape that shows it, and each
contract twin trips the finding it names."""

from __future__ import annotations

import time

import numpy as np
import pytest

import gradverify
from gradverify import Status
from gradverify.specs import parse_spec
from layers_under_test import broken
from layers_under_test.registry import BROKEN, REFERENCE, SHAPE_DEPENDENT, LayerCase, find_case

EXAMPLES = 200  # per reference case: all of them together take about a minute
SHAPE_EXAMPLES = 100
SEEDS = range(10)


def _factory(case: LayerCase):
    return case.factory or case.target


def _check(case: LayerCase, seed: int):
    rng = np.random.default_rng(seed)
    target, inputs = case.build(rng), case.make_inputs(rng)
    return gradverify.check(target, inputs, nondiff=case.nondiff, kwargs=case.kwargs, seed=seed)


# ---------------------------------------------------------------- specs


@pytest.mark.parametrize("name", [*REFERENCE, *SHAPE_DEPENDENT])
def test_every_reference_and_shape_dependent_case_has_a_valid_spec(name):
    case = {**REFERENCE, **SHAPE_DEPENDENT}[name]
    assert case.spec is not None, f"{name} has no spec: `gradverify check --fuzz` cannot cover it"
    parsed = parse_spec(case.spec)
    # labels come from the spec's domains, exactly the case's non-differentiated labels
    assert set(parsed.nondiff) <= set(case.nondiff)


@pytest.mark.parametrize("name", REFERENCE)
def test_reference_case_survives_fuzzing_over_its_spec(name, record_property):
    case = REFERENCE[name]
    started = time.perf_counter()
    found = gradverify.fuzz(
        _factory(case), case.spec, examples=EXAMPLES, kwargs=case.kwargs, nondiff=case.nondiff
    )
    seconds = time.perf_counter() - started
    record_property("inconclusive", found.inconclusive)
    record_property("seconds", round(seconds, 2))
    assert found.status not in (Status.FAIL, Status.ERROR), str(found)
    assert found.examples >= EXAMPLES
    # inconclusive: windows of a max pool tied at their maximum (the strategies draw
    # repeated values); a handful at most
    assert found.inconclusive <= EXAMPLES // 20, str(found)
    assert seconds < 30, f"{name}: {EXAMPLES} examples took {seconds:.1f} s; shrink its dims"


# ---------------------------------------------------------------- shape-dependent twins


SMALLEST_FAILING_DIMS = {
    "AffineDbSqueeze": {"N": 1, "D": 1, "M": 1},
    "SoftmaxWithLossBatchFromClasses": {"N": 1, "C": 2},
}


def test_shape_dependent_twins_are_separate_from_broken_ones():
    assert set(SHAPE_DEPENDENT) == set(SMALLEST_FAILING_DIMS)
    assert not set(SHAPE_DEPENDENT) & set(BROKEN)
    for name, case in SHAPE_DEPENDENT.items():
        assert case.target is getattr(broken, name)
        assert case.bug == case.target.__doc__.strip().splitlines()[0]
        assert find_case(case.target) is case


@pytest.mark.parametrize("name", SHAPE_DEPENDENT)
def test_shape_dependent_twin_passes_its_fixed_case(name):
    results = [_check(SHAPE_DEPENDENT[name], seed) for seed in range(50)]
    failed = [str(r) for r in results if r.status is not Status.PASS]
    assert not failed, failed[0]


@pytest.mark.parametrize("name", SHAPE_DEPENDENT)
def test_fuzzing_fails_shape_dependent_twin_at_its_smallest_failing_shape(name):
    case = SHAPE_DEPENDENT[name]
    found = gradverify.fuzz(_factory(case), case.spec, examples=SHAPE_EXAMPLES, kwargs=case.kwargs)
    assert found.status is Status.FAIL, str(found)
    assert found.case is not None and found.case.dims == SMALLEST_FAILING_DIMS[name], str(found)


# ---------------------------------------------------------------- contract twins


CONTRACT_TWINS = [
    ("AddDropsDout", "dout ignored"),
    ("ReluForwardInPlace", "input modified"),
    ("AffineAccumulatesDW", "backward not repeatable"),
    ("SigmoidPreviousOutput", "stale state"),
    ("SigmoidPythonRandomNoise", "nondeterministic forward"),
    ("SigmoidTooManyGradients", "too many gradients"),
    ("SigmoidFloat32Gradient", "gradient dtype"),
    ("ReluSquaredDout", "not linear in dout"),
]


@pytest.mark.parametrize(("name", "finding"), CONTRACT_TWINS)
def test_contract_twin_trips_the_finding_it_names(name, finding):
    for seed in SEEDS:
        result = _check(BROKEN[name], seed)
        severities = {f.name: f.severity for f in result.findings}
        assert severities.get(finding) == "error", (seed, result.findings)
        assert result.status is Status.FAIL

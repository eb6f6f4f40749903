"""Mode "auto": tensors get full checks smallest first while their summed cost fits the budget."""

from __future__ import annotations

import time

import numpy as np

import gradverify
from gradverify.config import CheckConfig
from gradverify.planning import full_calls, plan
from layers_under_test.reference import Affine


def test_smallest_tensors_are_checked_in_full_while_they_fit():
    config = CheckConfig(budget=1.0)
    # 1 ms a call: 100 elements cost 0.203 s, 300 cost 0.603 s, 1000 cost 2.003 s
    chosen = plan([300, 1000, 100], 1e-3, config)
    assert chosen.full == (True, False, True)
    # what is left of the budget pays for the projections of the one tensor not in full
    left = 1.0 - (full_calls(300) + full_calls(100)) * 1e-3
    assert chosen.projection_calls == int(left / 1e-3)


def test_projection_calls_are_shared_by_the_projected_tensors():
    chosen = plan([1000, 2000, 10], 1e-3, CheckConfig(budget=1.0))
    assert chosen.full == (False, False, True)
    assert chosen.projection_calls == int((1.0 - full_calls(10) * 1e-3) / 1e-3 / 2)


def test_explicit_modes_ignore_the_budget():
    assert plan([10**6], 1.0, CheckConfig(mode="full")).full == (True,)
    assert plan([1], 0.0, CheckConfig(mode="fast")).full == (False,)


def test_zero_budget_checks_everything_by_projections():
    assert plan([1, 2], 1e-9, CheckConfig(budget=0.0)).full == (False, False)


def test_an_empty_tensor_is_never_projected():
    assert plan([0, 5], 1.0, CheckConfig(budget=0.0)).full == (True, False)
    assert plan([0, 5], 1.0, CheckConfig(mode="fast")).full == (True, False)


class SlowAffine(Affine):
    """An Affine whose forward takes at least a millisecond."""

    def forward(self, x, train_flg=None):
        time.sleep(1e-3)
        return super().forward(x)


def test_auto_checks_by_projections_only_what_does_not_fit():
    rng = np.random.default_rng(0)
    layer = SlowAffine(rng.standard_normal((40, 30)), rng.standard_normal(30))
    # dx (120 elements) and db (30) take under 0.3 s at 1 ms a call; dW (1200) over 2.4 s
    result = gradverify.check(layer, {"x": rng.standard_normal((3, 40))}, budget=1.5)
    assert [t.projected for t in result.tensors] == [False, True, False]
    assert result.status is gradverify.Status.PASS
    dW = result.tensors[1]
    assert any("mode='full'" in note for note in dW.notes), dW.notes

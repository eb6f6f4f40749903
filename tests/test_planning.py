"""Mode "auto": every tensor whose full check fits the time budget gets one, smallest first."""

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
    assert chosen.full_seconds(1000) == full_calls(1000) * 1e-3


def test_explicit_modes_ignore_the_budget():
    assert plan([10**6], 1.0, CheckConfig(mode="full")).full == (True,)
    assert plan([1], 0.0, CheckConfig(mode="fast")).full == (False,)


def test_zero_budget_checks_everything_by_projections():
    assert plan([1, 2], 1e-9, CheckConfig(budget=0.0)).full == (False, False)


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

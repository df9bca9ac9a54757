"""Pure rail rules: declines and fault plans."""

from __future__ import annotations

import random

import pytest

from clearway.rail.domain import ChargeStatus, FaultAction, FaultPlan, InvalidCharge, new_charge


def test_a_charge_settles_unless_the_sandbox_declines_its_source():
    assert new_charge("CW1", 5, "EUR", "acct_a", "acct_b").status is ChargeStatus.SETTLED
    assert new_charge("CW1", 5, "EUR", "acct_nsf", "acct_b").status is ChargeStatus.DECLINED


def test_a_fault_plan_draws_each_fault_at_its_rate():
    plan = FaultPlan(error_rate=0.2, lose_response_rate=0.3)
    rng = random.Random(5)
    draws = [plan.draw(rng) for _ in range(10_000)]
    assert 0.17 < draws.count(FaultAction.ERROR) / 10_000 < 0.23
    assert 0.27 < draws.count(FaultAction.LOSE_RESPONSE) / 10_000 < 0.33
    assert FaultAction.CRASH not in draws


def test_rates_outside_zero_to_one_are_refused():
    with pytest.raises(InvalidCharge):
        FaultPlan(crash_rate=1.5)

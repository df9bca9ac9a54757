"""The retry schedule is data; the delay function is pure."""

from __future__ import annotations

import random
from dataclasses import replace

from clearway.shared.backoff import parse_retry_after
from clearway.webhooks.domain import (
    RETRY_SCHEDULE,
    Breaker,
    Outcome,
    check_subscriptions,
    classify,
    fair_shares,
    matches,
    retry_policy,
)


def retry_delay(attempt, retry_after=None, rng=None, *, schedule=RETRY_SCHEDULE):  # type: ignore[no-untyped-def]
    policy = retry_policy(schedule)
    return replace(policy, rng=rng or random.Random()).delay(attempt, retry_after)


def test_the_published_schedule_is_immediately_5s_5min_30min_2h_5h_10h_10h():
    assert RETRY_SCHEDULE == (0, 5, 300, 1800, 7200, 18000, 36000, 36000)


def test_each_delay_is_its_schedule_step_within_20_percent_jitter():
    rng = random.Random(7)
    for attempt in range(1, len(RETRY_SCHEDULE)):
        for _ in range(50):
            delay = retry_delay(attempt, rng=rng)
            step = RETRY_SCHEDULE[attempt]
            assert step * 0.8 <= delay <= step * 1.2


def test_after_the_last_attempt_there_is_no_delay_but_the_dead_letter():
    assert retry_delay(len(RETRY_SCHEDULE)) is None
    assert retry_delay(3, schedule=(0, 1, 1)) is None


def test_retry_after_is_a_floor_capped_by_the_longest_step():
    rng = random.Random(1)
    assert retry_delay(1, retry_after=120, rng=rng) == 120
    assert retry_delay(1, retry_after=10**9, rng=rng) == max(RETRY_SCHEDULE)
    assert retry_delay(2, retry_after=1, rng=rng) >= 240


def test_outcomes_2xx_succeed_3xx_fail_410_is_gone_429_throttles():
    assert classify(200) is Outcome.SUCCESS and classify(204) is Outcome.SUCCESS
    assert classify(301) is Outcome.FAILURE and classify(500) is Outcome.FAILURE
    assert classify(410) is Outcome.GONE and classify(429) is Outcome.THROTTLED


def test_retry_after_headers_in_seconds_are_read_and_nonsense_ignored():
    assert parse_retry_after("3") == 3 and parse_retry_after("x") is None
    assert parse_retry_after(None) is None and parse_retry_after("-1") is None


def test_subscriptions_take_exact_types_and_wildcards_of_known_types():
    known = ["transfer.settled", "transfer.created", "consent.revoked"]
    assert matches("transfer.*", "transfer.settled") and not matches(
        "transfer.*", "consent.revoked"
    )
    assert check_subscriptions(["*", "transfer.settled", "transfer.*"], known) == [
        "*",
        "transfer.settled",
        "transfer.*",
    ]
    for bad in (["nope.nothing"], ["Transfer Settled"], ["audit.*"], []):
        try:
            check_subscriptions(bad, known)
        except ValueError:
            raise AssertionError("InvalidSubscription is not a ValueError") from None
        except Exception:
            continue
        raise AssertionError(f"{bad} was accepted")


def test_the_breaker_opens_at_the_threshold_and_its_pause_doubles_up_to_a_cap():
    b = Breaker(threshold=5, cooldown_s=30, max_cooldown_s=100)
    assert [b.pause(n) for n in (4, 5, 6, 7, 20)] == [None, 30, 60, 100, 100]
    assert not b.is_open(4) and b.is_open(5)


def test_the_breaker_counts_an_endpoint_down_hanging_or_overloaded_not_a_quick_refusal():
    counts = Breaker.counts
    assert counts(Outcome.FAILURE, None) and counts(Outcome.REFUSED, None)
    assert counts(Outcome.FAILURE, 503) and counts(Outcome.FAILURE, 504)
    assert not counts(Outcome.FAILURE, 500) and not counts(Outcome.FAILURE, 404)
    assert not counts(Outcome.THROTTLED, 429) and not counts(Outcome.SUCCESS, 200)


def test_claims_are_shared_by_tenants_in_turn_then_by_their_endpoints():
    endpoints = [("a1", "big"), ("a2", "big"), ("a3", "big"), ("b1", "small")]
    room = {"a1": 16, "a2": 16, "a3": 16, "b1": 16}
    shares = fair_shares(endpoints, 8, room)
    assert shares["b1"] == 4, "one endpoint of a small tenant gets its tenant's half"
    assert sum(shares[e] for e in ("a1", "a2", "a3")) == 4
    assert fair_shares(endpoints, 100, {**room, "b1": 1})["b1"] == 1, "never beyond its room"
    assert fair_shares(endpoints, 3, {"a1": 0}) == {}

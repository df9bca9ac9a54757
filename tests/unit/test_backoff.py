"""One retry policy: 1-based attempts, bounded jitter, a cap, Retry-After as a floor."""

from __future__ import annotations

import logging
import math
import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from clearway.shared.backoff import (
    MAX_RETRY_AFTER_S,
    Backoff,
    RetriesExhausted,
    parse_retry_after,
    retry,
)


def no_jitter(**kw: object) -> Backoff:
    return Backoff(jitter=0.0, **kw)  # type: ignore[arg-type]


def test_attempts_are_one_based_for_exponential_and_scheduled_policies():
    exp = no_jitter(base=0.1, cap=100.0)
    assert [exp.delay(n) for n in (1, 2, 3, 4)] == [0.1, 0.2, 0.4, 0.8]
    steps = Backoff.from_schedule((5, 300, 1800))
    assert [steps.delay(n) for n in (1, 2, 3)] == [5, 300, 1800]
    assert steps.delay(4) is None, "a schedule of 3 steps allows 4 attempts"
    with pytest.raises(ValueError):
        exp.delay(0)


def test_max_attempts_ends_with_none_after_the_last_attempt():
    b = no_jitter(base=1.0, max_attempts=3)
    assert b.delay(1) == 1.0 and b.delay(2) == 2.0
    assert b.delay(3) is None and b.exhausted(3) and not b.exhausted(2)
    assert no_jitter().delay(10_000) == 30.0, "no max_attempts: retries forever, capped"


def test_the_cap_bounds_the_step_and_jitter_stays_within_its_fraction():
    b = Backoff(base=1.0, cap=8.0, jitter=0.25, rng=random.Random(3))
    for attempt in range(1, 40):
        step = min(8.0, 2.0 ** (attempt - 1))
        for _ in range(20):
            d = b.delay(attempt)
            assert d is not None and step * 0.75 <= d <= step * 1.25
    seen = {round(b.delay(5) or 0, 6) for _ in range(50)}
    assert len(seen) > 10, "jitter spreads the delays"
    with pytest.raises(ValueError):
        Backoff(jitter=1.5)


def test_retry_after_is_a_floor_capped_by_the_longest_step_by_default():
    b = no_jitter(base=1.0, cap=10.0)
    assert b.delay(1, retry_after=4.0) == 4.0
    assert b.delay(4, retry_after=1.0) == 8.0, "a short Retry-After does not shorten the wait"
    assert b.delay(1, retry_after=1e12) == 10.0
    assert no_jitter(cap=10.0, retry_after_cap=60.0).delay(1, retry_after=120) == 60.0


@pytest.mark.parametrize("garbage", [math.nan, -1.0, -math.inf])
def test_a_nan_or_negative_retry_after_is_ignored(garbage: float):
    assert no_jitter(base=1.0).delay(1, retry_after=garbage) == 1.0


def test_an_infinite_retry_after_is_clamped():
    assert no_jitter(base=1.0, cap=10.0).delay(1, retry_after=math.inf) == 10.0
    huge = Backoff.from_schedule((1.0,), retry_after_cap=math.inf)
    assert huge.delay(1, retry_after=math.inf) == MAX_RETRY_AFTER_S


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("3", 3.0), (" 120 ", 120.0), ("1.5", 1.5), ("0", 0.0), ("9" * 12, MAX_RETRY_AFTER_S)],
)
def test_retry_after_delta_seconds_are_read_and_bounded(header: str, seconds: float):
    assert parse_retry_after(header) == seconds


@pytest.mark.parametrize(
    "header", [None, "", "x", "-1", "inf", "Infinity", "nan", "NaN", "1e9", "9" * 5000, "0x10"]
)
def test_garbage_retry_after_headers_are_ignored(header: str | None):
    assert parse_retry_after(header) is None


def test_retry_after_http_dates_count_from_now_and_never_go_negative():
    now = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=90), usegmt=True)
    earlier = format_datetime(now - timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(later, now=now.timestamp()) == 90.0
    assert parse_retry_after(earlier, now=now.timestamp()) == 0.0
    assert parse_retry_after("Sun, 06 Nov 1994 08:49:37", now=now.timestamp()) is None


async def test_retry_runs_until_success_and_reports_each_retry():
    calls: list[int] = []
    waits: list[float] = []
    seen: list[int] = []

    async def op() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise OSError("down")
        return "ok"

    async def sleep(s: float) -> None:
        waits.append(s)

    result = await retry(
        op,
        no_jitter(base=0.5),
        what="op",
        retry_on=(OSError,),
        on_retry=lambda e, n: seen.append(n),
        sleep=sleep,
    )
    assert result == "ok" and waits == [0.5, 1.0] and seen == [1, 2]


async def test_exhaustion_logs_at_error_and_raises(caplog: pytest.LogCaptureFixture):
    async def op() -> None:
        raise OSError("still down")

    async def sleep(s: float) -> None:
        return None

    with caplog.at_level(logging.WARNING), pytest.raises(RetriesExhausted) as info:
        await retry(op, no_jitter(max_attempts=3), what="the op", sleep=sleep)
    assert info.value.attempts == 3 and isinstance(info.value.__cause__, OSError)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "the op failed 3 times" in errors[0].getMessage()


async def test_errors_outside_retry_on_propagate_at_once():
    calls = 0

    async def op() -> None:
        nonlocal calls
        calls += 1
        raise KeyError("bug")

    with pytest.raises(KeyError):
        await retry(op, no_jitter(), what="op", retry_on=(OSError,))
    assert calls == 1

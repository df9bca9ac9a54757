"""Per-endpoint rate limits hold across workers; a 429's Retry-After is respected."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration


async def test_a_1_per_second_rate_limit_is_never_exceeded_across_workers(
    service_factory, settings, receiver_factory, publish, make_event, eventually
):
    # two service instances (processes' worth of workers) share one endpoint
    first = await service_factory(settings.replace(workers=3))
    await service_factory(
        settings.replace(workers=3, run_consumer=False, run_relay=False)
    )
    receiver = await receiver_factory()
    await first.create_endpoint(receiver.url, rate_limit_per_s=1)
    await publish([make_event(i, run="rate") for i in range(5)])

    await eventually(lambda: len(receiver.requests) >= 5, timeout=90)
    times = sorted(r.at for r in receiver.requests)
    # token bucket of 1/s, burst 1: any window of w seconds holds at most w + 1 requests.
    # The slots are taken at claim time; sender and receiver share this test's event
    # loop, so a stall of it (a loaded CI host) can bunch two arrivals whose claims were
    # a second apart: arrivals are allowed that much jitter, and no more.
    jitter = 0.5
    for i in range(len(times)):
        for j in range(i + 1, len(times)):
            assert times[j] - times[i] >= (j - i) - 1 - jitter, (
                f"requests {i}..{j} too close: {times}"
            )
    assert times[-1] - times[0] >= len(times) - 1 - jitter, "5 requests took at least ~4 s"


async def test_a_429_with_retry_after_is_respected(
    service_factory, settings, receiver_factory, publish, make_event, eventually
):
    # Retry-After is honoured up to the schedule's longest step: make that 5 s here
    service = await service_factory(settings.replace(schedule=(0, 0.3, 0.3, 0.3, 5)))
    receiver = await receiver_factory(
        lambda req, n: (429, {"retry-after": "2"}, b"slow down") if n == 1 else (204, {}, b"")
    )
    await service.create_endpoint(receiver.url)
    await publish([make_event(1, run="429")])
    await eventually(lambda: len(receiver.requests) >= 2)
    first, second = receiver.requests[:2]
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert second.at - first.at >= 2.0 - 0.05, (
        "the retry waited at least Retry-After, not the 0.3 s step"
    )

"""Receivers that are slow, wrong or hostile cannot stop delivery for anyone else."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from dataclasses import replace
from datetime import datetime

import pytest
from clearway_webhook_verify import ReplayedMessage, VerificationError, Verifier, signing_keys

from clearway.webhooks.dispatcher import Dispatcher
from clearway.webhooks.ssrf import SsrfGuard, guarded_session

pytestmark = pytest.mark.integration

# Retry-After values no receiver should be able to hurt us with (RFC 9110 §10.2.3 allows
# only delta-seconds and an HTTP-date).
BAD_RETRY_AFTER = [
    "inf",
    "nan",
    "-1",
    "1e9",
    "99999999999",
    "Fri, 31 Dec 9999 23:59:59 GMT",
    "Wed, 21 Oct 2015 07:28:00 GMT",
    "soon",
    "",
]


async def test_bad_retry_after_values_are_scheduled_sanely_and_others_recorded_once(
    service, receiver_factory, publish, make_event, eventually
):
    throttled = []
    for value in BAD_RETRY_AFTER:
        rec = await receiver_factory(
            lambda req, n, v=value: (429, {"retry-after": v}, b"") if n == 1 else (204, {}, b"")
        )
        await service.create_endpoint(rec.url)
        throttled.append(rec)
    healthy = [await receiver_factory() for _ in range(2)]
    for rec in healthy:
        await service.create_endpoint(rec.url)
    events = [make_event(i, run="ra") for i in range(20)]
    await publish(events)

    async def all_delivered() -> bool:
        n = await service.pool.fetchval("SELECT count(*) FROM messages WHERE status = 'delivered'")
        return n == len(events) * (len(throttled) + len(healthy))

    await eventually(all_delivered, timeout=60)
    longest = max(service.settings.schedule)
    for rec in throttled:
        by_id: dict[str, list[float]] = {}
        for r in rec.requests:
            by_id.setdefault(r.headers["webhook-id"], []).append(r.at)
        first = min(by_id.values(), key=lambda ts: ts[0])
        # the 429'd message came back within the schedule's longest step plus claim lag
        # (seconds on a loaded CI host), not in 10^9 seconds, and nothing stalled the
        # endpoint's other messages
        assert first[1] - first[0] <= longest + 20, rec.requests[0].headers
    for rec in healthy:
        counts = Counter(r.headers["webhook-id"] for r in rec.requests)
        assert len(counts) == len(events) and set(counts.values()) == {1}, "exactly once"
    paused = await service.pool.fetchval(
        "SELECT max(next_allowed_at - now()) FROM endpoints", column=0
    )
    assert paused is None or paused.total_seconds() <= longest + 1
    attempts = await service.pool.fetch(
        "SELECT message_id, count(*) AS n FROM attempts GROUP BY message_id"
    )
    assert len(attempts) == len(events) * (len(throttled) + len(healthy))


async def test_one_outcome_that_cannot_be_recorded_does_not_stop_the_others(
    service_factory, settings, receiver_factory, publish, make_event, eventually, caplog
):
    # no workers of its own: this test drives one Dispatcher round by hand
    service = await service_factory(settings.replace(run_dispatcher=False))
    receiver = await receiver_factory()
    await service.create_endpoint(receiver.url)
    await publish([make_event(i, run="rec") for i in range(5)])

    async def pending() -> bool:
        return await service.pool.fetchval("SELECT count(*) FROM messages") == 5

    await eventually(pending)
    async with guarded_session(SsrfGuard(["127.0.0.0/8"])) as session:
        d = Dispatcher(service.app.state.ctx, service.pool, session, "")
        claimed = await d._claim(10)
        results = [await d._attempt(c, keys) for c, keys in claimed]
        # what an unparsed Retry-After: inf once did: a delay Postgres cannot store
        results[0] = replace(results[0], status="pending", delay_s=float("inf"))
        await d._record_or_keep(results)
    rows = await service.pool.fetch("SELECT id, status FROM messages ORDER BY id")
    poisoned = results[0].claimed.id
    assert {r["status"] for r in rows if r["id"] != poisoned} == {"delivered"}
    assert await service.pool.fetchval("SELECT count(*) FROM attempts") == 4
    assert poisoned in caplog.text, "the one not recorded is named in the log"


class DripReceiver:
    """A raw HTTP server that reads the request, then answers one byte every ``every``
    seconds (a 'slowloris' response), never finishing in time."""

    def __init__(self, every: float = 0.5) -> None:
        self.every = every
        self.requests: list[str] = []
        self.server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/drip"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                headers = dict(
                    line.split(": ", 1) for line in head.decode().split("\r\n")[1:] if ": " in line
                )
                lower = {k.lower(): v for k, v in headers.items()}
                await reader.readexactly(int(lower.get("content-length", "0")))
                self.requests.append(lower["webhook-id"])
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
                for _ in range(1000):
                    writer.write(b"x")
                    await writer.drain()
                    await asyncio.sleep(self.every)
        writer.close()

    async def __aenter__(self) -> DripReceiver:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()


def _latencies(requests) -> list[float]:  # type: ignore[no-untyped-def]
    return [
        r.at - datetime.fromisoformat(r.json["timestamp"].replace("Z", "+00:00")).timestamp()
        for r in requests
    ]


def _p99(values: list[float]) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(0.99 * (len(values) - 1)))]


async def _paced(publish, make, n: int, rate: float) -> None:  # type: ignore[no-untyped-def]
    """Publish ``n`` events at ``rate``/s, each made (and timestamped) when it is sent."""
    step = 25
    for i in range(0, n, step):
        await publish([make(j) for j in range(i, min(n, i + step))])
        await asyncio.sleep(step / rate)


async def test_a_dripping_endpoint_never_holds_up_a_healthy_one_nor_causes_lease_resends(
    service_factory, settings, receiver_factory, publish, make_event, eventually
):
    service = await service_factory(
        settings.replace(request_timeout_s=1.0, lease_s=3.0, workers=2, endpoint_concurrency=4)
    )
    healthy = await receiver_factory()
    await service.create_endpoint(healthy.url)
    n, rate = 1000, 125

    # warm up (connections, caches), unmeasured: neither phase pays for it
    await _paced(publish, lambda i: make_event(i, run="warm"), 200, rate)
    await eventually(lambda: len(healthy.requests) >= 200, timeout=30)
    healthy.requests.clear()
    # the healthy endpoint alone
    await _paced(publish, lambda i: make_event(i, run="alone"), n, rate)
    await eventually(lambda: len(healthy.requests) >= n, timeout=30)
    alone = _p99(_latencies(healthy.requests))

    async with DripReceiver() as drip:
        dripping = await service.create_endpoint(drip.url)
        healthy.requests.clear()
        # the same load again, every event now also going to the dripping endpoint
        await _paced(publish, lambda i: make_event(i, run="drip"), n, rate)
        await eventually(lambda: len(healthy.requests) >= n, timeout=30)
        beside_drip = _p99(_latencies(healthy.requests))
        # stop claiming for the dripper; let its attempts in flight end and be recorded
        r = await service.http.post(
            f"/v1/endpoints/{dripping['id']}/disable", json={}, headers=service.auth
        )
        assert r.status_code == 200, r.text
        await asyncio.sleep(service.settings.request_timeout_s + 1)
        sent = Counter(drip.requests)
        recorded = {
            row["message_id"]: row["n"]
            for row in await service.pool.fetch(
                "SELECT a.message_id, count(*) AS n FROM attempts a"
                " JOIN messages m ON m.id = a.message_id WHERE m.endpoint_id = $1"
                " GROUP BY a.message_id",
                dripping["id"],
            )
        }

    print(
        f"healthy p99 alone {alone * 1000:.0f} ms, beside the dripper {beside_drip * 1000:.0f} ms"
    )
    # Isolation: no healthy delivery waited behind a dripping attempt's deadline (a
    # worker stuck on the dripper would add the deadline to the healthy p99; measured
    # against the same run's p99 alone, so a busy CPU slowing both does not count).
    # How close the two p99s are is a speed figure, printed here and benchmarked.
    # The goal is within 2x of the p99 alone; when that p99 is a few milliseconds, 2x
    # is below a loaded host's scheduling noise, so half a deadline is the floor (a
    # worker stuck on the dripper would add a whole deadline).
    deadline = service.settings.request_timeout_s
    assert beside_drip <= max(2 * alone, alone + 0.5 * deadline), (alone, beside_drip)
    counts = Counter(r.headers["webhook-id"] for r in healthy.requests)
    assert set(counts.values()) == {1}, "no healthy message was delivered twice"
    assert sent, "the dripping endpoint was tried"
    # every request the dripper saw is a recorded, timed-out attempt: none was a re-send
    # of a message whose lease ran out while its attempt was still in flight
    assert sent == Counter(recorded), (sent, recorded)
    outcomes = await service.pool.fetch(
        "SELECT DISTINCT a.outcome, a.error FROM attempts a JOIN messages m ON m.id = a.message_id"
        " WHERE m.endpoint_id = $1",
        dripping["id"],
    )
    assert [(o["outcome"], o["error"]) for o in outcomes] == [
        ("failure", "timeout: no complete answer within 1s")
    ]
    breaker = await service.pool.fetchval(
        "SELECT consecutive_failures FROM endpoints WHERE id = $1", dripping["id"]
    )
    assert breaker >= service.settings.breaker_threshold, "its circuit breaker opened"
    # its messages are paused, not lost
    assert (
        await service.pool.fetchval(
            "SELECT count(*) FROM messages"
            " WHERE endpoint_id = $1 AND status IN ('pending', 'skipped')",
            dripping["id"],
        )
        == n
    )


async def test_a_delivery_the_partner_failed_to_process_is_accepted_by_the_verifier_on_retry(
    service, receiver_factory, publish, make_event, eventually
):
    holder: dict[str, Verifier] = {}
    handled: list[str] = []

    def partner(req, n):  # type: ignore[no-untyped-def]
        try:
            with holder["verifier"].receive(req.body, req.headers) as event:
                if n == 1:
                    raise RuntimeError("the partner's database is down")
                handled.append(event["event_id"])
        except ReplayedMessage:
            return 204, {}, b""
        except VerificationError:
            return 400, {}, b"bad signature"
        except RuntimeError:
            return 503, {}, b"try again"
        return 204, {}, b""

    receiver = await receiver_factory(partner)
    endpoint = await service.create_endpoint(receiver.url, ed25519_signatures=True)
    assert endpoint["ed25519_signatures"] is True
    # the partner checks the v1a signature only: it holds no shared secret, only the
    # published public keys
    key_set = (await service.http.get("/v1/webhooks/signing-keys")).json()
    holder["verifier"] = Verifier(signing_keys(key_set))
    event = make_event(1, run="partner")
    await publish([event])
    await eventually(lambda: len(handled) == 1)
    assert [r.headers["webhook-id"] for r in receiver.requests[:2]] == [
        receiver.requests[0].headers["webhook-id"]
    ] * 2
    sigs = receiver.requests[0].headers["webhook-signature"].split(" ")
    assert [s.split(",")[0] for s in sigs] == ["v1", "v1a"]
    assert handled == [event.id]
    msg = receiver.requests[0].headers["webhook-id"]

    async def delivered() -> bool:
        r = await service.http.get(f"/v1/messages/{msg}", headers=service.auth)
        return r.json()["status"] == "delivered"

    await eventually(delivered)
    started = time.monotonic()
    # a copy after success is a replay to the partner, answered 2xx and not handled again
    r = await service.http.post(f"/v1/messages/{msg}/resend", headers=service.auth)
    assert r.status_code in (200, 202), r.text
    await eventually(lambda: len(receiver.requests) == 3)
    assert handled == [event.id] and time.monotonic() - started < 30

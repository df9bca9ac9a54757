"""Webhook delivery: deliveries/s and event→delivery latency vs a bare HTTP client.

Same run, same fast local receiver (a separate process), same payloads:
- the service: events published to Kafka → fan-out consumer → messages →
  dispatcher (signed POSTs) → receiver; deliveries/s over a backlog of N events,
  then latency p50/p99 at a paced rate (event creation → receipt);
- the baseline: a bare ``httpx.AsyncClient`` posting the same bodies with the same
  concurrency, no signing, no database.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import subprocess
import sys
import time

import httpx

from benchmarks.common import fresh_database, stack, summary
from clearway.shared.auth import Principal
from clearway.shared.events import new_event
from clearway.shared.kafka import ensure_topics
from clearway.shared.relay import idempotent_producer
from clearway.shared.schemas import default_registry
from clearway.shared.settings import PlatformSettings
from clearway.webhooks import handlers
from clearway.webhooks.bootstrap import build_app, make_context
from clearway.webhooks.domain import Delivery
from clearway.webhooks.settings import WebhooksSettings

TOPIC = "clearway.platform.events.v1"
TENANT = "ten_bench"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def event(i: int, run: str, t0: float | None = None):
    return new_event(
        type="platform.test_event",
        source="/bench",
        aggregate_id=f"b_{run}_{i}",
        aggregate_version=1,
        data={"id": f"b_{run}_{i}", "amount": i, "note": None if t0 is None else repr(t0)},
        dataschema=default_registry().get("platform.test_event", 1).dataschema,
        correlation_id=f"corr_{run}_{i}",
        tenant=TENANT,
    )


async def stats(client: httpx.AsyncClient, base: str) -> dict:
    return (await client.get(f"{base}/stats")).json()


async def wait_count(client, base, n, timeout=600) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (await stats(client, base))["count"] >= n:
            return time.monotonic()
        await asyncio.sleep(0.05)
    raise TimeoutError(f"receiver did not get {n} requests")


async def baseline(base: str, n: int, concurrency: int) -> float:
    bodies = [
        Delivery.for_event(
            f"evt_{i}",
            "platform.test_event",
            "2026-01-01T00:00:00Z",
            {"id": str(i), "amount": i, "note": None},
        ).body
        for i in range(n)
    ]
    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(
        timeout=60,
        limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
    ) as client:

        async def post(body: bytes) -> None:
            async with sem:
                r = await client.post(
                    f"{base}/hook", content=body, headers={"content-type": "application/json"}
                )
                assert r.status_code == 204

        t = time.monotonic()
        await asyncio.gather(*(post(b) for b in bodies))
        return n / (time.monotonic() - t)


async def main(n: int, paced_rate: int, paced_seconds: float) -> None:
    port = free_port()
    receiver = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.bench_webhooks_receiver", str(port)]
    )
    base = f"http://127.0.0.1:{port}"
    try:
        with stack() as (admin, kafka):
            db = await fresh_database(admin)
            platform = PlatformSettings(
                database_url=db, kafka_bootstrap=kafka, topic_prefix=f"bench{int(time.time())}."
            )
            await ensure_topics(kafka, [platform.topic(TOPIC)])
            async with httpx.AsyncClient(timeout=120) as ctl:
                for _ in range(100):
                    with contextlib.suppress(httpx.HTTPError):
                        await ctl.get(f"{base}/stats")
                        break
                    await asyncio.sleep(0.1)
                bare = await baseline(base, n, concurrency=200)
                await ctl.post(f"{base}/reset")

                settings = WebhooksSettings(
                    platform=platform,
                    allow_networks=("127.0.0.0/8",),
                    workers=4,
                    batch_size=50,
                    max_connections=200,
                    poll_interval_s=0.02,
                    run_relay=False,
                )
                app = build_app(settings)
                async with app.router.lifespan_context(app):
                    principal = Principal(
                        "usr_bench", "cli_bench", TENANT, frozenset(), None, "at_b", None, None
                    )  # type: ignore[arg-type]
                    async with app.state.pool.acquire() as conn:
                        await handlers.create_endpoint(
                            make_context(settings),
                            conn,
                            principal,
                            TENANT,
                            url=f"{base}/hook",
                            description="",
                            event_types=["platform.*"],
                            rate_limit_per_s=None,
                        )
                    producer = idempotent_producer(kafka)
                    await producer.start()
                    try:
                        # throughput over a backlog
                        t = time.monotonic()
                        futs = [
                            await producer.send(
                                platform.topic(TOPIC),
                                value=e.body(),
                                key=e.key,
                                headers=e.headers(),
                            )
                            for e in (event(i, "tp") for i in range(n))
                        ]
                        await asyncio.gather(*futs)
                        done = await wait_count(ctl, base, n)
                        rate = n / (done - t)
                        await ctl.post(f"{base}/reset")
                        # latency at a paced rate
                        m = int(paced_rate * paced_seconds)
                        for i in range(m):
                            e = event(i, "lat", time.time())
                            await producer.send(
                                platform.topic(TOPIC),
                                value=e.body(),
                                key=e.key,
                                headers=e.headers(),
                            )
                            await asyncio.sleep(1 / paced_rate)
                        await wait_count(ctl, base, m)
                        lat = (await stats(ctl, base))["latencies"]
                    finally:
                        await producer.stop()
        print(
            f"webhooks: {rate:,.0f} deliveries/s over {n:,} events (Kafka → fan-out → signed POST)"
        )
        print(f"baseline: {bare:,.0f} posts/s, bare httpx.AsyncClient, same payloads and receiver")
        print(f"ratio:    {rate / bare:.0%} of the bare client")
        print(f"latency event→delivery at {paced_rate}/s: {summary(lat)}")
    finally:
        receiver.terminate()
        try:
            receiver.wait(timeout=10)
        except subprocess.TimeoutExpired:
            receiver.kill()
            receiver.wait()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=5_000)
    ap.add_argument("--paced-rate", type=int, default=500)
    ap.add_argument("--paced-seconds", type=float, default=5)
    a = ap.parse_args()
    asyncio.run(main(a.events, a.paced_rate, a.paced_seconds))

"""Webhook delivery: deliveries/s and event→delivery latency vs the fastest bare client.

Same run, same compiled local receiver (``benchmarks/webhooks_receiver``, a Go
server in its own process, its capacity measured alone with ``hey`` first), same
payloads:
- the receiver alone: requests/s with ``hey`` (so it is shown not to be the limit);
- the bare loops: each candidate client (``bench_webhooks_clients``) posting the
  same bodies with the same concurrency, no signing, no database; the fastest counts;
- the service: events published to Kafka → fan-out consumer → messages →
  dispatcher (signed POSTs, each outcome recorded) → receiver; deliveries/s over
  a backlog of N events, then latency p50/p99 at a paced rate (event creation →
  receipt).

    python -m benchmarks.bench_webhooks [--events 10000] [--paced-rate 500]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import uvloop

from benchmarks.bench_webhooks_clients import fastest
from benchmarks.bench_webhooks_receiver import compiled_receiver, receiver_capacity, receiver_pid
from benchmarks.common import cdf, cpu_seconds, emit, fresh_database, pct, stack, summary
from clearway.shared.auth import Principal
from clearway.shared.events import new_event
from clearway.shared.kafka import ensure_topics
from clearway.shared.relay import idempotent_producer
from clearway.shared.schemas import default_registry
from clearway.shared.settings import PlatformSettings
from clearway.webhooks import handlers
from clearway.webhooks.bootstrap import build_app, make_context
from clearway.webhooks.settings import WebhooksSettings

TOPIC = "clearway.platform.events.v1"
TENANT = "ten_bench"
CONCURRENCY = 64


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
        await asyncio.sleep(0.02)
    raise TimeoutError(f"receiver did not get {n} requests")


class CpuShares:
    """CPU seconds each part of the pipeline used between :meth:`start` and :meth:`stop`
    (Linux /proc): a figure the other sessions on a shared machine disturb less than
    wall-clock rates. The Kafka broker is shared with them and not counted."""

    def __init__(self, parts: dict[str, list[int]]) -> None:
        self.parts = parts
        self.used: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        return {k: sum(cpu_seconds(p) for p in pids) for k, pids in self.parts.items()}

    def start(self) -> None:
        self.used = self._now()

    def stop(self) -> None:
        self.used = {k: v - self.used[k] for k, v in self._now().items()}

    def per(self, n: int) -> str:
        parts = ", ".join(f"{k} {v / n * 1e6:.0f}" for k, v in self.used.items())
        return f"{sum(self.used.values()) / n * 1e6:.0f} µs/delivery ({parts})"


async def _measure(ctl, base, producer, platform, n, paced_rate, paced_seconds, pool, cpu):  # type: ignore[no-untyped-def]
    """Deliveries/s over a backlog of ``n`` events, then latencies at ``paced_rate``."""

    async def send(e) -> None:  # type: ignore[no-untyped-def]
        await producer.send(platform.topic(TOPIC), value=e.body(), key=e.key, headers=e.headers())

    async def progress(t: float) -> None:
        while True:
            await asyncio.sleep(2)
            r = await pool.fetchrow(
                "SELECT count(*) AS c, count(*) FILTER (WHERE status = 'delivered') AS d"
                " FROM messages"
            )
            print(f"  {time.monotonic() - t:5.1f}s messages {r['c']:6d} delivered {r['d']:6d}")

    # throughput over a backlog: the clock runs from the first send to the last receipt
    cpu.parts["postgres"] = [
        r["pid"]
        for r in await pool.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        )
    ]
    cpu.start()
    t = time.monotonic()
    shown = asyncio.create_task(progress(t))
    try:
        futs = [
            await producer.send(
                platform.topic(TOPIC), value=e.body(), key=e.key, headers=e.headers()
            )
            for e in (event(i, "tp") for i in range(n))
        ]
        await asyncio.gather(*futs)
        done = await wait_count(ctl, base, n)
        cpu.stop()
    finally:
        shown.cancel()
    rate = n / (done - t)
    await ctl.post(f"{base}/reset")
    # latency at a paced rate, in bursts of 1/50 s, each event stamped when sent
    m = int(paced_rate * paced_seconds)
    burst = max(1, paced_rate // 50)
    start = time.monotonic()
    for i in range(0, m, burst):
        for j in range(i, min(m, i + burst)):
            await send(event(j, "lat", time.time()))
        await asyncio.sleep(max(0.0, start + (i + burst) / paced_rate - time.monotonic()))
    await wait_count(ctl, base, m)
    # how many message updates were heap-only (the claims, docs/adr/0052); the other
    # backends report their counts within a second or so of their transactions
    await asyncio.sleep(1.5)
    hot = await pool.fetchrow(
        "SELECT n_tup_upd AS upd, n_tup_hot_upd AS hot FROM pg_stat_user_tables"
        " WHERE relname = 'messages'"
    )
    print(f"messages updates: {hot['upd']:,}, heap-only (HOT) {hot['hot']:,}")
    return rate, (await stats(ctl, base))["latencies"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def dispatcher_processes(platform: PlatformSettings, k: int, workers: int) -> Iterator[list[int]]:
    """``k`` webhook service processes that only dispatch (no consumer, no relay), as
    production scales delivery out: ``python -m clearway.webhooks`` (uvicorn, uvloop)."""
    env = {
        **os.environ,
        "CLEARWAY_DATABASE_URL": platform.database_url,
        "CLEARWAY_KAFKA_BOOTSTRAP": platform.kafka_bootstrap,
        "CLEARWAY_TOPIC_PREFIX": platform.topic_prefix,
        "CLEARWAY_OAUTH_ISSUER": "http://127.0.0.1:9",
        "CLEARWAY_LOG_LEVEL": "WARNING",
        "CLEARWAY_WEBHOOKS_ALLOW_NETWORKS": "127.0.0.0/8",
        "CLEARWAY_WEBHOOKS_RUN_CONSUMER": "false",
        "CLEARWAY_WEBHOOKS_RUN_RELAY": "false",
        "CLEARWAY_WEBHOOKS_WORKERS": str(workers),
        "CLEARWAY_WEBHOOKS_BATCH_SIZE": str(2 * CONCURRENCY // workers),
        "CLEARWAY_WEBHOOKS_ENDPOINT_CONCURRENCY": str(2 * CONCURRENCY),
        "CLEARWAY_WEBHOOKS_MAX_CONNECTIONS": str(CONCURRENCY),
        "CLEARWAY_WEBHOOKS_POLL_INTERVAL_S": "0.02",
    }
    procs = []
    for _ in range(k):
        port = _free_port()
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "clearway.webhooks"],
                env={**env, "CLEARWAY_WEBHOOKS_PORT": str(port)},
                stdout=subprocess.DEVNULL,
            )
        )
        for _ in range(300):
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            time.sleep(0.1)
    try:
        yield [p.pid for p in procs]
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=20)


async def main(n: int, paced_rate: int, paced_seconds: float, workers: int, processes: int) -> None:
    with compiled_receiver() as base:
        alone = receiver_capacity(base)
        print(f"receiver alone (hey, c={CONCURRENCY}): {alone:,.0f} requests/s")
        best, bare = await fastest(f"{base}/hook", n, CONCURRENCY)
        with stack() as (admin, kafka):
            db = await fresh_database(admin)
            platform = PlatformSettings(
                database_url=db, kafka_bootstrap=kafka, topic_prefix=f"bench{int(time.time())}."
            )
            await ensure_topics(platform.kafka, [platform.topic(TOPIC)])
            async with httpx.AsyncClient(timeout=120) as ctl:
                await ctl.post(f"{base}/reset")
                settings = WebhooksSettings(
                    platform=platform,
                    allow_networks=("127.0.0.0/8",),
                    workers=workers,
                    batch_size=2 * CONCURRENCY // workers,
                    endpoint_concurrency=2 * CONCURRENCY,
                    max_connections=CONCURRENCY,
                    poll_interval_s=0.02,
                    run_relay=False,
                    run_dispatcher=processes == 0,
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
                    producer = idempotent_producer(platform.kafka)
                    await producer.start()
                    try:
                        with dispatcher_processes(platform, processes, workers) as pids:
                            cpu = CpuShares(
                                {
                                    "bench+fan-out": [os.getpid()],
                                    "dispatchers": pids,
                                    "receiver": [receiver_pid(base)],
                                }
                            )
                            rate, lat = await _measure(
                                ctl,
                                base,
                                producer,
                                platform,
                                n,
                                paced_rate,
                                paced_seconds,
                                app.state.pool,
                                cpu,
                            )
                    finally:
                        await producer.stop()
    print(f"webhooks: {rate:,.0f} deliveries/s over {n:,} events (Kafka → fan-out → signed POST)")
    print(f"baseline: {bare:,.0f} posts/s, bare {best} loop, same payloads and receiver")
    print(f"ratio:    {rate / bare:.0%} of the fastest bare client")
    print(f"latency event→delivery at {paced_rate}/s: {summary(lat)}")
    print(f"CPU over the backlog: {cpu.per(n)}")
    emit(
        "webhooks",
        {
            "deliveries_per_s": rate,
            "bare_posts_per_s": bare,
            "receiver_alone_per_s": alone,
            "paced_rate": float(paced_rate),
            "p50_ms": pct(lat, 50) * 1000,
            "p99_ms": pct(lat, 99) * 1000,
        },
        cdfs={f"event → delivery @{paced_rate}/s": cdf(lat)},
    )


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=10_000)
    ap.add_argument("--paced-rate", type=int, default=500)
    ap.add_argument("--paced-seconds", type=float, default=10)
    ap.add_argument("--workers", type=int, default=2, help="dispatcher workers per process")
    ap.add_argument(
        "--processes", type=int, default=2, help="dispatcher processes (0: in the bench's own)"
    )
    a = ap.parse_args()
    # uvloop, as the service runs (uvicorn): the in-process fan-out consumer runs as in
    # production and the bare loops get the fastest event loop there is here
    uvloop.run(main(a.events, a.paced_rate, a.paced_seconds, a.workers, a.processes))

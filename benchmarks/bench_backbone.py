"""Outbox → relay → Kafka → inbox, against raw aiokafka on the same broker.

Prints, for the same run:
- sustained throughput: events/s written to the outbox and applied through the
  inbox (effects counted in Postgres) vs raw aiokafka produce→consume;
- end-to-end latency p50/p99 at a paced 1,000 events/s (outbox commit → effect
  committed) vs raw aiokafka (send → consumed).

With ``--breakdown`` the relay runs with timestamps (``benchmarks.relay_probe``)
and the latency run also prints where the time goes, hop by hop.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import uuid

import asyncpg
from aiokafka import AIOKafkaConsumer

from benchmarks.common import cdf, emit, fresh_database, pct, stack, summary
from clearway.shared.consumer import IdempotentConsumer
from clearway.shared.db import Migration, create_pool, migrate
from clearway.shared.dlt import DeadLetters
from clearway.shared.events import Event, new_event
from clearway.shared.kafka import ensure_topics, make_broker, subscribe_idempotent
from clearway.shared.kafka_link import KafkaLink
from clearway.shared.outbox import Outbox
from clearway.shared.relay import idempotent_producer

SCHEMA = "bench"
EFFECTS = Migration(
    "0001_effects",
    "CREATE TABLE effects (event_id text NOT NULL, amount bigint NOT NULL)",
)


def _event(i: int, run: str) -> Event:
    return new_event(
        type="bench.happened",
        source="/bench",
        aggregate_id=f"agg_{run}_{i % 64}",
        aggregate_version=i,
        data={"amount": i, "t0": time.time(), "run": run},
        correlation_id=f"corr_{run}_{i}",
    )


HOPS = (
    "outbox write → claim starts",
    "claim starts → rows claimed",
    "claimed → producer send",
    "send → broker ack",
    "broker ack → relay commit",
    "send → fetch returned",
    "fetch returned → subscriber called",
    "subscriber called → handler start",
    "handler start → inbox commit",
    "total (outbox write → inbox commit)",
)


def _ce_id(record) -> str:
    return dict(record.headers or ())["ce_id"].decode()


class Platform:
    def __init__(self, db: str, kafka: str, topic: str, breakdown: bool = False) -> None:
        self.db, self.kafka, self.topic = db, kafka, topic
        self.latencies: list[float] = []
        self._warm = self.latencies  # the list of the warm-up and throughput runs
        self.applied = 0
        self.breakdown = breakdown
        self.probe_out = f"/tmp/relay-probe-{uuid.uuid4().hex[:8]}.json"
        #: per event id: outbox write, fetch returned, subscriber called, handler start,
        #: inbox commit (breakdown only)
        self.stamps: dict[str, list[float]] = {}

    def _instrument(self, consumer: IdempotentConsumer) -> None:
        """Timestamps of the consumer side: the fetch's return (aiokafka's getmany,
        which FastStream calls) and the inbox commit (handle_records' return)."""
        fetched: dict[str, float] = {}
        getmany = AIOKafkaConsumer.getmany

        async def stamped_getmany(self_, *args, **kwargs):
            out = await getmany(self_, *args, **kwargs)
            now = time.time()
            for records in out.values():
                for r in records:
                    fetched[_ce_id(r)] = now
            return out

        AIOKafkaConsumer.getmany = stamped_getmany  # type: ignore[method-assign]
        handle = consumer.handle_records

        async def stamped_handle(records):
            entered = time.time()
            await handle(records)
            now = time.time()
            for r in records:
                ce_id = _ce_id(r)
                s = self.stamps.get(ce_id)
                if s is not None:
                    s[1], s[2] = fetched.pop(ce_id, 0.0), entered
                    s.append(now)

        consumer.handle_records = stamped_handle  # type: ignore[method-assign]

    async def start(self) -> None:
        await migrate(
            self.db, schema=SCHEMA, service="bench", migrations=[EFFECTS], role_password="bench"
        )
        # The consumer and the load generator stand for different services: they
        # get their own pools so the consumer never queues behind the writers.
        self.pool = await create_pool(self.db, schema=SCHEMA, max_size=4)
        self.writer_pool = await create_pool(self.db, schema=SCHEMA, max_size=16)
        # The relay runs in its own process, as it would inside the producing
        # service; the consumer side lives in this process.
        relay = ["clearway.shared.relay", "--batch-size", "2000"]
        if self.breakdown:
            relay = ["benchmarks.relay_probe", "--out", self.probe_out]
        self.relay = subprocess.Popen(
            [
                sys.executable,
                "-m",
                *relay,
                "--schema",
                SCHEMA,
                "--database-url",
                self.db,
                "--kafka-bootstrap",
                self.kafka,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.producer = idempotent_producer(KafkaLink(self.kafka))
        await self.producer.start()
        consumer = IdempotentConsumer(
            "bench", self.pool, DeadLetters(self.producer, "bench"), batch_handler=self._apply
        )
        if self.breakdown:
            self._instrument(consumer)
        self.broker = make_broker(KafkaLink(self.kafka))
        subscribe_idempotent(self.broker, consumer, self.topic, group_id="bench", max_records=2000)
        await self.broker.start()

    async def _apply(self, conn: asyncpg.Connection, events) -> None:
        started = time.time()
        await conn.copy_records_to_table(
            "effects",
            records=[(e.id, e.data["amount"]) for e in events],
            columns=["event_id", "amount"],
        )
        now = time.time()
        # recorded after the handler; the commit follows within the same batch
        self.latencies += [now - e.data["t0"] for e in events]
        if self.breakdown and self.latencies is not self._warm:
            for e in events:
                self.stamps[e.id] = [e.data["t0"], 0.0, 0.0, started]
        self.applied += len(events)

    def _print_breakdown(self) -> None:
        with open(self.probe_out) as f:
            relay = json.load(f)
        os.unlink(self.probe_out)
        print_breakdown(relay, self.stamps)

    async def stop(self) -> None:
        await self.broker.stop()
        self.relay.terminate()
        self.relay.wait(timeout=10)
        if self.breakdown:
            self._print_breakdown()
        await self.producer.stop()
        await self.pool.close()
        await self.writer_pool.close()


def _breakdown_rows(relay: dict[str, list[float]], consumer: dict[str, list[float]]):
    for ce_id, (t0, fetched, entered, started, committed) in consumer.items():
        r = relay.get(ce_id)
        if r is None or len(r) < 5 or not fetched:
            continue
        claiming, claimed, sent, acked, relay_committed = r
        yield (
            claiming - t0,
            claimed - claiming,
            sent - claimed,
            acked - sent,
            relay_committed - acked,
            fetched - sent,
            entered - fetched,
            started - entered,
            committed - started,
            committed - t0,
        )


def print_breakdown(relay: dict[str, list[float]], consumer: dict[str, list[float]]) -> None:
    """p50/p99 of every hop of the paced run, in milliseconds."""
    rows = list(_breakdown_rows(relay, consumer))
    print(f"\n== breakdown of the paced run ({len(rows)} events; ms) ==")
    for i, hop in enumerate(HOPS):
        col = [r[i] for r in rows]
        print(f"{hop:40s} p50 {pct(col, 50) * 1000:7.1f}   p99 {pct(col, 99) * 1000:7.1f}")


async def _write(pool: asyncpg.Pool, topic: str, numbers: range, run: str) -> None:
    # Events are built inside the transaction so t0 is the moment of the write,
    # not the moment the load generator queued it.
    async with pool.acquire() as conn, conn.transaction():
        await Outbox().add(conn, topic, *(_event(i, run) for i in numbers))


async def platform_throughput(p: Platform, n: int, per_txn: int = 250) -> float:
    run = uuid.uuid4().hex[:6]
    start_applied = p.applied
    t0 = time.perf_counter()
    sem = asyncio.Semaphore(4)

    async def one(start: int) -> None:
        async with sem:
            await _write(p.writer_pool, p.topic, range(start, start + per_txn), run)

    await asyncio.gather(*(one(s) for s in range(0, n, per_txn)))
    while p.applied - start_applied < n:
        await asyncio.sleep(0.01)
    return n / (time.perf_counter() - t0)


async def paced_writes(db: str, topic: str, rate: int, seconds: float, run: str) -> None:
    """One event per transaction at ``rate``/s: what a service's request handlers do."""
    pool = await create_pool(db, schema=SCHEMA, max_size=16)
    total = int(rate * seconds)
    per_tick = max(1, int(rate * 0.01))
    t0 = time.perf_counter()
    sent = 0
    pending: set[asyncio.Task[None]] = set()
    while sent < total:
        for _ in range(per_tick):
            t = asyncio.create_task(_write(pool, topic, range(sent, sent + 1), run))
            pending.add(t)
            t.add_done_callback(pending.discard)
            sent += 1
        await asyncio.sleep(max(0.0, t0 + sent / rate - time.perf_counter()))
    await asyncio.gather(*pending)
    await pool.close()


async def platform_latency(p: Platform, rate: int, seconds: float) -> list[float]:
    # The writers run in their own process (they stand for the producing
    # service); sharing this event loop would charge their CPU to the consumer.
    p.latencies = []
    start_applied = p.applied
    total = int(rate * seconds)
    writer = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "benchmarks.bench_backbone",
        "--write-only",
        p.db,
        p.topic,
        "--rate",
        str(rate),
        "--seconds",
        str(seconds),
    )
    if await writer.wait() != 0:
        raise RuntimeError("writer process failed")
    while p.applied - start_applied < total:
        await asyncio.sleep(0.01)
    return list(p.latencies)


async def raw_kafka(kafka: str, topic: str, n: int, rate: int | None) -> tuple[float, list[float]]:
    """Raw aiokafka: same headers and payload size, idempotent producer, group consumer."""
    producer = idempotent_producer(KafkaLink(kafka))
    await producer.start()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka,
        group_id=f"raw-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_records=2000,
    )
    await consumer.start()
    sample = _event(0, "raw")
    headers = sample.headers()
    latencies: list[float] = []
    got = 0

    async def consume() -> None:
        nonlocal got
        while got < n:
            batch = await consumer.getmany(timeout_ms=200, max_records=2000)
            now = time.time()
            for records in batch.values():
                for r in records:
                    latencies.append(now - json.loads(r.value)["t0"])
                got += len(records)
            if batch:
                await consumer.commit()

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.5)  # let the group join before timing
    t0 = time.perf_counter()
    futures = []
    for i in range(n):
        body = json.dumps({"amount": i, "t0": time.time(), "run": "raw"}).encode()
        futures.append(
            await producer.send(topic, value=body, key=f"agg_{i % 64}".encode(), headers=headers)
        )
        if rate:
            await asyncio.sleep(max(0.0, t0 + (i + 1) / rate - time.perf_counter()))
    await asyncio.gather(*futures)
    await task
    elapsed = time.perf_counter() - t0
    await consumer.stop()
    await producer.stop()
    return n / elapsed, latencies


async def main(n: int, rate: int, seconds: float, breakdown: bool = False) -> dict[str, float]:
    with stack() as (admin, kafka):
        db = await fresh_database(admin)
        topic = f"bench{uuid.uuid4().hex[:6]}.events.v1"
        raw_topic = topic + ".raw"
        await ensure_topics(KafkaLink(kafka), [topic, raw_topic, raw_topic + ".lat"])
        p = Platform(db, kafka, topic, breakdown)
        await p.start()
        try:
            await platform_throughput(p, 2000)  # warm-up
            plat_tput = await platform_throughput(p, n)
            raw_tput, _ = await raw_kafka(kafka, raw_topic, n, None)
            plat_lat = await platform_latency(p, rate, seconds)
            _, raw_lat = await raw_kafka(kafka, raw_topic + ".lat", int(rate * seconds), rate)
        finally:
            await p.stop()
    print("\n== backbone: outbox → relay → Kafka → inbox (effects committed in Postgres) ==")
    print(
        f"throughput  platform {plat_tput:9.0f} events/s   raw aiokafka {raw_tput:9.0f} msg/s"
        f"   ratio {plat_tput / raw_tput:.2f}   (goal ≥ 5000 events/s)"
    )
    print(f"latency @{rate}/s  platform {summary(plat_lat)}")
    print(f"latency @{rate}/s  raw      {summary(raw_lat)}")
    print(
        f"p99 ratio platform/raw {pct(plat_lat, 99) / max(pct(raw_lat, 99), 1e-6):.2f}"
        "   (goal platform p99 ≤ 50 ms)"
    )
    figures = {
        "platform_eps": plat_tput,
        "raw_eps": raw_tput,
        "rate": float(rate),
        "platform_p50_ms": pct(plat_lat, 50) * 1000,
        "platform_p99_ms": pct(plat_lat, 99) * 1000,
        "raw_p50_ms": pct(raw_lat, 50) * 1000,
        "raw_p99_ms": pct(raw_lat, 99) * 1000,
    }
    emit(
        "backbone",
        figures,
        cdfs={
            f"outbox → inbox @{rate}/s": cdf(plat_lat),
            f"raw aiokafka @{rate}/s": cdf(raw_lat),
        },
    )
    return figures


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=30000)
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--write-only", nargs=2, metavar=("DB", "TOPIC"))
    ap.add_argument("--breakdown", action="store_true", help="print the per-hop timestamps")
    a = ap.parse_args()
    if a.write_only:
        db, topic = a.write_only
        asyncio.run(paced_writes(db, topic, a.rate, a.seconds, uuid.uuid4().hex[:6]))
    else:
        asyncio.run(main(a.events, a.rate, a.seconds, a.breakdown))

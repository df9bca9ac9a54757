"""Outbox → relay → Kafka → idempotent consumer, against the real broker and database."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer

from clearway.shared.consumer import IdempotentConsumer
from clearway.shared.db import create_pool
from clearway.shared.dlt import DeadLetters
from clearway.shared.events import Event, header_map
from clearway.shared.kafka import ensure_topics, make_broker, subscribe_idempotent
from clearway.shared.kafka_link import KafkaLink
from clearway.shared.outbox import Outbox
from clearway.shared.relay import OutboxRelay, idempotent_producer
from clearway.shared.settings import PlatformSettings
from clearway.shared.testing.helpers import eventually, kafka_env

from .kit_helpers import SCHEMA, demo_event, migrate_effects

pytestmark = pytest.mark.integration


async def record_effect(conn: asyncpg.Connection, ev: Event) -> None:
    await conn.execute(
        "INSERT INTO effects (event_id, correlation_id, amount) VALUES ($1, $2, $3)",
        ev.id,
        ev.correlation_id,
        ev.data["amount"],
    )


async def write_events(pool: asyncpg.Pool, topic: str, n: int, per_txn: int = 500) -> list[str]:
    outbox = Outbox()
    ids: list[str] = []
    for start in range(0, n, per_txn):
        events = [demo_event(i) for i in range(start, min(n, start + per_txn))]
        async with pool.acquire() as conn, conn.transaction():
            await outbox.add(conn, topic, *events)
        ids += [e.id for e in events]
    return ids


async def prepared(platform: PlatformSettings) -> asyncpg.Pool:
    await migrate_effects(platform.database_url)
    return await create_pool(platform.database_url, schema=SCHEMA, max_size=5)


async def start_consumer(platform: PlatformSettings, pool: asyncpg.Pool, topic: str):
    producer = idempotent_producer(platform.kafka)
    await producer.start()
    consumer = IdempotentConsumer(
        "kitdemo", pool, DeadLetters(producer, "kitdemo"), handler=record_effect
    )
    broker = make_broker(platform.kafka)
    subscribe_idempotent(broker, consumer, topic, group_id="kitdemo")
    await broker.start()
    return consumer, broker, producer


async def counts(pool: asyncpg.Pool) -> tuple[int, int]:
    row = await pool.fetchrow("SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM effects")
    return row["n"], row["d"]


async def test_events_written_to_the_outbox_are_applied_once_by_the_consumer(platform):
    topic = platform.topic("clearway.kitdemo.events.v1")
    await ensure_topics(platform.kafka, [topic])
    pool = await prepared(platform)
    ids = await write_events(pool, topic, 300)
    relay = OutboxRelay(platform.database_url, SCHEMA, platform.kafka)
    await relay.start()
    consumer, broker, producer = await start_consumer(platform, pool, topic)
    try:
        await eventually(lambda: _done(pool, len(ids)))
        # the same events published again (a relay crash after send) change nothing
        await write_events(pool, topic, 300)
        await eventually(lambda: _true(consumer.duplicates >= 300))
        assert await counts(pool) == (300, 300)
        assert await pool.fetchval("SELECT count(*) FROM inbox") == 300
    finally:
        await broker.stop()
        await relay.stop()
        await producer.stop()
        await pool.close()


async def _done(pool: asyncpg.Pool, n: int) -> bool:
    return (await counts(pool))[0] >= n


async def _true(v: bool) -> bool:
    return v


def _relay_env(platform: PlatformSettings) -> dict[str, str]:
    """The relay of schema ``SCHEMA`` logs in as that schema's service would; this
    test's service is the stack's super user."""
    env = {**os.environ, **kafka_env(platform)}
    if (login := platform.kafka_logins.get("admin")) is not None:
        env[f"CLEARWAY_{SCHEMA.upper()}_KAFKA_USERNAME"] = login.username
        env[f"CLEARWAY_{SCHEMA.upper()}_KAFKA_PASSWORD"] = login.password
    return env


def _relay_process(platform: PlatformSettings) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "clearway.shared.relay",
            "--schema",
            SCHEMA,
            "--database-url",
            platform.database_url,
            "--kafka-bootstrap",
            platform.kafka_bootstrap,
            "--batch-size",
            "500",
        ],
        env=_relay_env(platform),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


@pytest.mark.slow
async def test_a_relay_killed_mid_batch_loses_nothing_and_effects_apply_exactly_once(platform):
    n = 10_000
    topic = platform.topic("clearway.kitdemo.events.v1")
    await ensure_topics(platform.kafka, [topic])
    pool = await prepared(platform)
    ids = await write_events(pool, topic, n)

    kills = 0
    relay = _relay_process(platform)
    try:
        # SIGKILL the relay twice while it is working through the outbox.
        for threshold in (n - 1500, n // 2):
            await eventually(lambda t=threshold: _outbox_below(pool, t), timeout=60, interval=0.005)
            os.kill(relay.pid, signal.SIGKILL)
            relay.wait()
            kills += 1
            relay = _relay_process(platform)
        await eventually(lambda: _outbox_below(pool, 1), timeout=120)
    finally:
        relay.send_signal(signal.SIGTERM)
        try:
            relay.wait(timeout=10)
        except subprocess.TimeoutExpired:
            relay.kill()
    assert kills == 2

    published = await _read_topic(platform.kafka, topic)
    assert set(ids) <= set(published), "every event was published at least once"

    consumer, broker, producer = await start_consumer(platform, pool, topic)
    try:
        await eventually(lambda: _done(pool, n), timeout=120)
        await eventually(lambda: _true(consumer.applied + consumer.duplicates >= len(published)))
        assert await counts(pool) == (n, n), "every event applied exactly once"
        # the republished copies, if the kill caught a batch in flight, were refused
        assert consumer.duplicates == len(published) - n
    finally:
        await broker.stop()
        await producer.stop()
        await pool.close()


async def _outbox_below(pool: asyncpg.Pool, n: int) -> bool:
    return await pool.fetchval("SELECT count(*) FROM outbox") < n


async def _read_topic(kafka: KafkaLink, topic: str) -> list[str]:
    c = AIOKafkaConsumer(
        topic,
        **kafka.client_options(),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await c.start()
    ids: list[str] = []
    try:
        while True:
            batch = await c.getmany(timeout_ms=1500, max_records=5000)
            if not batch:
                break
            for records in batch.values():
                ids += [header_map(r.headers)["ce_id"] for r in records]
    finally:
        await c.stop()
    return ids


async def test_the_relay_wakes_on_notify_without_waiting_for_its_poll(platform):
    topic = platform.topic("clearway.kitdemo.events.v1")
    await ensure_topics(platform.kafka, [topic])
    pool = await prepared(platform)
    relay = OutboxRelay(platform.database_url, SCHEMA, platform.kafka, poll_interval=30)
    await relay.start()
    try:
        await eventually(lambda: _true(relay.is_leader))
        await write_events(pool, topic, 1)
        await eventually(lambda: _true(relay.published == 1), timeout=5)
    finally:
        await relay.stop()
        await pool.close()


async def test_a_second_relay_stands_by_until_the_leader_goes(platform):
    pool = await prepared(platform)
    a = OutboxRelay(platform.database_url, SCHEMA, platform.kafka)
    b = OutboxRelay(platform.database_url, SCHEMA, platform.kafka)
    await a.start()
    await eventually(lambda: _true(a.is_leader))
    await b.start()
    await asyncio.sleep(1.5)
    assert not b.is_leader
    await a.stop()
    await eventually(lambda: _true(b.is_leader), timeout=10)
    await b.stop()
    await pool.close()

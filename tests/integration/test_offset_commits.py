"""Offsets are committed off the consume path, never ahead of the inbox commit
(docs/design.md §4.3), against the real broker and database."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from clearway.shared.backoff import Backoff
from clearway.shared.consumer import IdempotentConsumer
from clearway.shared.db import create_pool
from clearway.shared.dlt import DeadLetters
from clearway.shared.events import Event
from clearway.shared.kafka import ensure_topics, make_broker, subscribe_idempotent
from clearway.shared.kafka_link import KafkaLink
from clearway.shared.relay import idempotent_producer
from clearway.shared.settings import PlatformSettings
from clearway.shared.testing.helpers import eventually

from .kit_helpers import SCHEMA, demo_event, migrate_effects

pytestmark = pytest.mark.integration

GROUP = "kitdemo"
FAST = Backoff(base=0.05, cap=0.2, jitter=0.0)


async def _pool(platform: PlatformSettings) -> asyncpg.Pool:
    await migrate_effects(platform.database_url)
    return await create_pool(platform.database_url, schema=SCHEMA, max_size=5)


async def _publish(producer, topic: str, numbers: range, *, keys: int = 1) -> None:
    futures = []
    for i in numbers:
        ev = demo_event(i, keys=keys)
        futures.append(
            await producer.send(topic, value=ev.body(), key=ev.key, headers=ev.headers())
        )
    await asyncio.gather(*futures)


async def _committed(kafka: KafkaLink, topic: str) -> dict[int, int]:
    """The group's committed offset per partition of ``topic``."""
    admin = AIOKafkaAdminClient(**kafka.client_options())
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(GROUP)
    finally:
        await admin.close()
    return {tp.partition: om.offset for tp, om in offsets.items() if tp.topic == topic}


async def _committed_sum(kafka: KafkaLink, topic: str) -> int:
    """The committed offsets of ``topic`` added up: with one key, the one partition's."""
    return sum((await _committed(kafka, topic)).values())


async def _counts(pool: asyncpg.Pool) -> tuple[int, int]:
    row = await pool.fetchrow("SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM effects")
    return row["n"], row["d"]


async def _record(conn: asyncpg.Connection, ev: Event) -> None:
    await conn.execute(
        "INSERT INTO effects (event_id, correlation_id, amount) VALUES ($1, $2, $3)",
        ev.id,
        ev.correlation_id,
        ev.data["amount"],
    )


def _member(platform, pool, producer, topic, handler=_record):
    consumer = IdempotentConsumer(
        "kitdemo", pool, DeadLetters(producer, "kitdemo"), handler=handler, infra_retry=FAST
    )
    broker = make_broker(platform.kafka)
    subscribe_idempotent(broker, consumer, topic, group_id=GROUP)
    return consumer, broker


async def test_an_offset_never_passes_a_batch_whose_database_transaction_fails(platform):
    topic = platform.topic("clearway.kitdemo.offsets.v1")
    await ensure_topics(platform.kafka, [topic])
    pool = await _pool(platform)
    producer = idempotent_producer(platform.kafka)
    await producer.start()
    seen_while_failing: list[int] = []

    async def flaky(conn: asyncpg.Connection, ev: Event) -> None:
        await _record(conn, ev)
        if ev.data["amount"] == 20 and len(seen_while_failing) < 3:
            # The batch holding event 20 has applied its effects but not committed:
            # the group's offset must still stand where the last committed batch ended.
            seen_while_failing.append(await _committed_sum(platform.kafka, topic))
            # A real database failure mid-batch: our own backend goes away.
            await conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")

    consumer, broker = _member(platform, pool, producer, topic, flaky)
    await broker.start()
    try:
        await _publish(producer, topic, range(20))
        await eventually(lambda: _true(consumer.applied >= 20))
        await eventually(lambda: _equals(_committed_sum(platform.kafka, topic), 20))
        await _publish(producer, topic, range(20, 40))
        await eventually(lambda: _true(consumer.applied >= 40))
        assert len(seen_while_failing) == 3
        assert all(seen == 20 for seen in seen_while_failing), seen_while_failing
        assert await _counts(pool) == (40, 40), "the failed attempts left no effect behind"
        await eventually(lambda: _equals(_committed_sum(platform.kafka, topic), 40))
    finally:
        await broker.stop()
        await producer.stop()
        await pool.close()


async def test_stopping_commits_the_offsets_of_everything_applied(platform):
    topic = platform.topic("clearway.kitdemo.offsets.v1")
    await ensure_topics(platform.kafka, [topic])
    pool = await _pool(platform)
    producer = idempotent_producer(platform.kafka)
    await producer.start()
    consumer, broker = _member(platform, pool, producer, topic)
    await broker.start()
    try:
        await _publish(producer, topic, range(300))
        await eventually(lambda: _true(consumer.applied >= 300), interval=0.005)
    finally:
        await broker.stop()
    try:
        # Read right after stop, without waiting: stop itself committed them.
        assert await _committed_sum(platform.kafka, topic) == 300
        # A restart of the group resumes after them: nothing redelivered.
        consumer, broker = _member(platform, pool, producer, topic)
        await broker.start()
        await _publish(producer, topic, range(300, 301))
        await eventually(lambda: _true(consumer.applied >= 1))
        assert consumer.duplicates == 0
        assert await _counts(pool) == (301, 301)
    finally:
        await broker.stop()
        await producer.stop()
        await pool.close()


async def test_a_rebalance_hands_over_partitions_without_losing_or_repeating_effects(platform):
    topic = platform.topic("clearway.kitdemo.offsets.v1")
    await ensure_topics(platform.kafka, [topic])
    pool = await _pool(platform)
    producer = idempotent_producer(platform.kafka)
    await producer.start()
    first, first_broker = _member(platform, pool, producer, topic)
    second, second_broker = _member(platform, pool, producer, topic)
    await first_broker.start()
    try:
        await _publish(producer, topic, range(600), keys=50)
        await eventually(lambda: _true(first.applied >= 600))
        # A second member joins: the first commits what it applied, then lets go.
        await second_broker.start()
        await _publish(producer, topic, range(600, 1200), keys=50)
        await eventually(lambda: _done(pool, 1200))
        await eventually(lambda: _true(second.applied > 0))
        assert await _counts(pool) == (1200, 1200), "every event applied exactly once"
    finally:
        await second_broker.stop()
        await first_broker.stop()
    try:
        committed = await _committed(platform.kafka, topic)
        ends = await _ends(platform.kafka, topic, committed)
        assert committed == ends, "all applied offsets committed after both stopped"
    finally:
        await producer.stop()
        await pool.close()


async def _ends(kafka: KafkaLink, topic: str, partitions: dict[int, int]) -> dict[int, int]:
    c = AIOKafkaConsumer(**kafka.client_options())
    await c.start()
    try:
        tps = [TopicPartition(topic, p) for p in partitions]
        ends = await c.end_offsets(tps)
    finally:
        await c.stop()
    return {tp.partition: off for tp, off in ends.items()}


async def _done(pool: asyncpg.Pool, n: int) -> bool:
    return (await _counts(pool))[0] >= n


async def _equals(value, expected) -> bool:
    return (await value) == expected


async def _true(v: bool) -> bool:
    return v

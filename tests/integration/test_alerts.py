"""The kit's alerts fire when their condition is made true (deploy/prometheus/alerts.yaml).

Each test makes the condition real on the real broker or database, reads
``GET /metrics`` of a kit app before and after, and has promtool evaluate the
alert on those samples (``clearway.shared.testing.alerts``, ADR 0043).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from fastapi import Request

from clearway.shared import dlt_cli
from clearway.shared.auth import RevocationFeed, RevocationSet
from clearway.shared.backoff import Backoff
from clearway.shared.db import create_pool
from clearway.shared.dlt import DeadLetters, dlt_topic
from clearway.shared.events import events_topic, new_event
from clearway.shared.http import ApiVersions, Deprecation, create_app
from clearway.shared.kafka import ensure_topics
from clearway.shared.kafka_lag import DeadLetterDepth, record_consumer_lag
from clearway.shared.kafka_link import KafkaLink, TopicLayout
from clearway.shared.outbox import Outbox
from clearway.shared.relay import OutboxRelay, idempotent_producer
from clearway.shared.testing.alerts import Series, assert_fires, samples, scrape
from clearway.shared.testing.helpers import eventually, free_port

from .kit_helpers import SCHEMA, migrate_effects

pytestmark = pytest.mark.integration

JOB = {"job": "kitdemo", "instance": "127.0.0.1:8000"}
APP = create_app("kitdemo", title="metrics")  # serves the process's metrics


@dataclass
class Record:
    topic: str
    partition: int = 0
    offset: int = 0
    key: bytes | None = b"k"
    value: bytes | None = b"{}"
    headers: Any = ()


@contextlib.asynccontextmanager
async def running(feed: RevocationFeed) -> AsyncIterator[None]:
    task = asyncio.create_task(feed.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def one(exposition: str, name: str, **match: str):
    [s] = samples(exposition, name, **match)
    return s


async def test_a_dead_letter_fires_clearway_dead_letters_until_redriven(platform):
    topic = platform.topic("clearway.kitdemo.events.v1")
    await ensure_topics(platform.kafka, [topic])
    depth = DeadLetterDepth(platform.kafka)
    producer = idempotent_producer(platform.kafka)
    await producer.start()
    try:
        labels = {"consumer": "kitdemo", "topic": topic}
        await depth.record([(topic, "kitdemo")])  # no DLT yet: nothing waits
        before = one(await scrape(APP), "clearway_dlt_depth_messages", **labels)
        assert before.value == 0

        await DeadLetters(producer, "kitdemo").send(Record(topic), "poison", attempts=3)
        await depth.record([(topic, "kitdemo")])
        after = one(await scrape(APP), "clearway_dlt_depth_messages", **labels)
        assert after.value == 1
        assert_fires(
            "ClearwayDeadLetters",
            [Series(before, after, scrape_labels=JOB)],
            {"job": JOB["job"], **labels},
        )

        # A redrive empties it (the redrive group's offset moves past the letter).
        await dlt_cli.redrive(platform.kafka, dlt_topic(topic, "kitdemo"))
        await depth.record([(topic, "kitdemo")])
        assert one(await scrape(APP), "clearway_dlt_depth_messages", **labels).value == 0
    finally:
        await depth.close()
        await producer.stop()


async def test_records_not_applied_fire_clearway_consumer_lag(platform):
    topic = platform.topic("clearway.kitdemo.events.v1")
    group = f"{platform.topic_prefix}lagdemo"
    await ensure_topics(platform.kafka, [topic], layout=TopicLayout(partitions=1))
    consumer = AIOKafkaConsumer(
        **platform.kafka.client_options(), group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    producer = idempotent_producer(platform.kafka)
    await producer.start()
    try:
        consumer.subscribe([topic])

        async def assigned():
            await consumer.getmany(timeout_ms=100)  # joins the group; commits nothing
            return consumer.assignment()

        await eventually(assigned)
        labels = {"consumer": group, "topic": topic}
        await record_consumer_lag(consumer, group)
        before = one(await scrape(APP), "clearway_consumer_lag_messages", **labels)

        # A consumer that stopped applying: 1001 records wait.
        sent = [await producer.send(topic, b"{}", key=b"k") for _ in range(1001)]
        await asyncio.gather(*sent)
        await record_consumer_lag(consumer, group)
        after = one(await scrape(APP), "clearway_consumer_lag_messages", **labels)
        assert (before.value, after.value) == (0, 1001)
        assert_fires(
            "ClearwayConsumerLag",
            [Series(before, after, scrape_labels=JOB)],
            {"job": JOB["job"], **labels},
        )
    finally:
        await producer.stop()
        await consumer.stop()


async def test_an_old_outbox_row_fires_clearway_outbox_lag(platform):
    await migrate_effects(platform.database_url)
    topic = platform.topic("clearway.kitdemo.events.v1")
    await ensure_topics(platform.kafka, [topic])
    pool = await create_pool(platform.database_url, schema=SCHEMA)
    producer = idempotent_producer(platform.kafka)
    await producer.start()
    relay = OutboxRelay(platform.database_url, SCHEMA, platform.kafka, producer=producer)
    try:
        async with pool.acquire() as conn:
            await relay.publish_batch(conn)  # empty: no lag
            before = one(await scrape(APP), "clearway_outbox_lag_seconds", service=SCHEMA)
            async with conn.transaction():
                ev = new_event(
                    type="kit.demo",
                    source="/kitdemo",
                    aggregate_id="a",
                    aggregate_version=1,
                    data={"amount": 1},
                )
                await Outbox().add(conn, topic, ev)
                # the relay was away for five minutes
                await conn.execute("UPDATE outbox SET created_at = now() - interval '5 minutes'")
            assert await relay.publish_batch(conn) == 1
        after = one(await scrape(APP), "clearway_outbox_lag_seconds", service=SCHEMA)
        assert before.value == 0 and after.value >= 300
        assert_fires(
            "ClearwayOutboxLag",
            [Series(before, after, growth=60, scrape_labels=JOB)],
            {"job": JOB["job"], "service": SCHEMA},
        )
    finally:
        await producer.stop()
        await pool.close()


async def test_a_feed_that_cannot_read_fires_clearway_revocation_feed_lag(platform):
    topic = platform.topic(events_topic("consent"))
    await ensure_topics(platform.kafka, [topic])
    labels = {"topic": topic}

    # A feed that reads is current: its lag stays near zero.
    current = RevocationFeed(platform.kafka, topic, RevocationSet())
    async with running(current):
        await eventually(current.ready.wait)

        async def near_zero():
            found = samples(await scrape(APP), "clearway_revocation_feed_lag_seconds", **labels)
            return found[0] if found and found[0].value < 1 else None

        before = await eventually(near_zero)

    # The same feed against a broker that is gone: the lag grows with the clock.
    gone = KafkaLink(f"127.0.0.1:{free_port()}")
    broken = RevocationFeed(
        gone, topic, RevocationSet(), start_timeout_s=1, backoff=Backoff(base=0.2, cap=0.5)
    )
    async with running(broken):

        async def measured():
            return samples(await scrape(APP), "clearway_revocation_feed_lag_seconds", **labels)

        [first] = await eventually(measured)
        await asyncio.sleep(1.5)
        after = one(await scrape(APP), "clearway_revocation_feed_lag_seconds", **labels)
        assert after.value >= first.value + 1.4
    assert_fires(
        "ClearwayRevocationFeedLag",
        [Series(before, after, growth=60, scrape_labels=JOB)],
        {**JOB, **labels},
    )


async def test_calls_on_a_deprecated_version_fire_clearway_deprecated_calls():
    versions = ApiVersions(
        current="2026-11-01",
        supported=["2026-06-01"],
        deprecated={"2026-01-15": Deprecation(sunset=date(2027, 1, 15), link="https://x.test")},
    )
    app = create_app("deprecdemo", title="deprecations", api_versions=versions)

    @app.get("/v1/things")
    async def things(request: Request) -> dict[str, str]:
        request.state.client_id = "cli_old_partner"
        return {}

    labels = {"client": "cli_old_partner", "version": "2026-01-15"}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:
        old = {"Clearway-Version": "2026-01-15"}
        assert (await client.get("/v1/things", headers=old)).status_code == 200
        before = one(await scrape(app), "clearway_deprecated_calls_total", **labels)
        assert (await client.get("/v1/things", headers=old)).status_code == 200
        after = one(await scrape(app), "clearway_deprecated_calls_total", **labels)
    assert after.value == before.value + 1
    assert_fires(
        "ClearwayDeprecatedCalls",
        [Series(before, after, scrape_labels=JOB)],
        {"job": JOB["job"], **labels},
    )

"""One trace id from the HTTP edge through the outbox and Kafka to the consumer."""

from __future__ import annotations

import asyncpg
import httpx
import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from clearway.shared.consumer import IdempotentConsumer
from clearway.shared.db import create_pool
from clearway.shared.dlt import DeadLetters
from clearway.shared.events import Event, new_event
from clearway.shared.http import create_app
from clearway.shared.kafka import ensure_topics, make_broker, subscribe_idempotent
from clearway.shared.outbox import Outbox
from clearway.shared.relay import OutboxRelay, idempotent_producer
from clearway.shared.telemetry import setup_tracing
from clearway.shared.testing.helpers import eventually

from .kit_helpers import SCHEMA, migrate_effects

pytestmark = pytest.mark.integration


async def test_one_trace_spans_http_outbox_kafka_and_consumer(platform):
    exporter = InMemorySpanExporter()
    setup_tracing("kitdemo", processors=[SimpleSpanProcessor(exporter)])
    topic = platform.topic("clearway.kitdemo.events.v1")
    await ensure_topics(platform.kafka, [topic])
    await migrate_effects(platform.database_url)
    pool = await create_pool(platform.database_url, schema=SCHEMA)

    app = create_app("kitdemo", title="demo")

    @app.post("/v1/things")
    async def create_thing() -> dict[str, str]:
        async with pool.acquire() as conn, conn.transaction():
            [ev] = await Outbox().add(
                conn,
                topic,
                new_event(
                    type="kit.demo",
                    source="/kitdemo",
                    aggregate_id="thing_1",
                    aggregate_version=1,
                    data={"amount": 1},
                ),
            )
        return {"event_id": ev.id}

    seen: list[Event] = []

    async def handler(conn: asyncpg.Connection, ev: Event) -> None:
        seen.append(ev)
        await conn.execute(
            "INSERT INTO effects (event_id, correlation_id, amount) VALUES ($1,$2,1)",
            ev.id,
            ev.correlation_id,
        )

    producer = idempotent_producer(platform.kafka)
    await producer.start()
    relay = OutboxRelay(platform.database_url, SCHEMA, platform.kafka)
    await relay.start()
    broker = make_broker(platform.kafka)
    subscribe_idempotent(
        broker,
        IdempotentConsumer("kitdemo", pool, DeadLetters(producer, "kitdemo"), handler=handler),
        topic,
        group_id="kitdemo",
    )
    await broker.start()
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as client:
            r = await client.post("/v1/things", headers={"X-Correlation-ID": "corr_trace_demo"})
        assert r.status_code == 200

        async def consumed() -> bool:
            return bool(seen)

        await eventually(consumed)
        assert seen[0].correlation_id == "corr_trace_demo"

        def spans_named(part: str):
            return [s for s in exporter.get_finished_spans() if part in s.name]

        async def consumer_span_done() -> bool:
            return bool(spans_named("process"))

        await eventually(consumer_span_done)
        http_span = spans_named("POST /v1/things")[0]
        publish = spans_named("publish")[0]
        process = spans_named("process")[0]
        trace_id = http_span.context.trace_id
        assert publish.context.trace_id == trace_id
        assert process.context.trace_id == trace_id
        assert process.parent.span_id == publish.context.span_id
        assert process.attributes["clearway.correlation_id"] == "corr_trace_demo"
    finally:
        await broker.stop()
        await relay.stop()
        await producer.stop()
        await pool.close()

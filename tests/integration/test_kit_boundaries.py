"""Boundaries the kit enforces with real infrastructure: roles, schemas, revocations."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import asyncpg
import pytest

from clearway.shared.auth import (
    CONSENT_EVENTS_TOPIC,
    RevocationFeed,
    RevocationSet,
    TokenVerifier,
)
from clearway.shared.consumer import IdempotentConsumer
from clearway.shared.db import APPEND_ONLY, Migration, create_pool, migrate, service_dsn
from clearway.shared.dlt import DeadLetters, dlt_topic
from clearway.shared.dlt_cli import list_dead_letters
from clearway.shared.events import Event, new_event
from clearway.shared.kafka import ensure_topics, make_broker, subscribe_idempotent
from clearway.shared.outbox import Outbox
from clearway.shared.relay import idempotent_producer
from clearway.shared.schemas import SchemaValidationError, default_registry
from clearway.shared.testing.helpers import eventually
from clearway.shared.testing.issuer import TestIssuer

from .kit_helpers import EFFECTS

pytestmark = pytest.mark.integration

NOTES = Migration("0001_notes", "CREATE TABLE notes (id bigserial PRIMARY KEY, body text)")


async def test_a_service_role_reaches_its_own_schema_and_nothing_else(admin_dsn):
    await migrate(
        admin_dsn, schema="alpha", service="alpha", migrations=[NOTES], role_password="pw-a"
    )
    await migrate(
        admin_dsn, schema="beta", service="beta", migrations=[NOTES], role_password="pw-b"
    )
    alpha = await asyncpg.connect(service_dsn(admin_dsn, "alpha", "pw-a"))
    try:
        await alpha.execute("INSERT INTO alpha.notes (body) VALUES ('mine')")
        assert await alpha.fetchval("SELECT count(*) FROM alpha.notes") == 1
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await alpha.fetch("SELECT * FROM beta.notes")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await alpha.execute("CREATE TABLE alpha.sneaky (x int)")
    finally:
        await alpha.close()


async def test_an_append_only_role_can_insert_and_read_but_never_rewrite(admin_dsn):
    await migrate(
        admin_dsn,
        schema="ledgerx",
        service="ledgerx",
        migrations=[NOTES],
        role_password="pw",
        privileges=APPEND_ONLY,
    )
    conn = await asyncpg.connect(service_dsn(admin_dsn, "ledgerx", "pw"))
    try:
        await conn.execute("INSERT INTO ledgerx.notes (body) VALUES ('history')")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("UPDATE ledgerx.notes SET body = 'rewritten'")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("DELETE FROM ledgerx.notes")
    finally:
        await conn.close()


async def test_migrations_run_twice_apply_nothing_the_second_time(admin_dsn):
    first = await migrate(
        admin_dsn, schema="alpha", service="alpha", migrations=[NOTES], role_password="pw"
    )
    second = await migrate(
        admin_dsn, schema="alpha", service="alpha", migrations=[NOTES], role_password="pw"
    )
    assert "0001_notes" in first and second == []


def sample(amount: object) -> Event:
    schema = default_registry().get("platform.test_event", 1)
    return new_event(
        type="platform.test_event",
        source="/tests",
        aggregate_id="thing_1",
        aggregate_version=1,
        data={"id": "thing_1", "amount": amount},
        dataschema=schema.dataschema,
    )


async def test_the_outbox_refuses_a_payload_that_breaks_its_schema(platform):
    await migrate(
        platform.database_url,
        schema="kitdemo",
        service="kitdemo",
        migrations=[EFFECTS],
        role_password="dev",
    )
    pool = await create_pool(platform.database_url, schema="kitdemo")
    outbox = Outbox(validate=default_registry().validate)
    try:
        async with pool.acquire() as conn:
            with pytest.raises(SchemaValidationError, match="amount"):
                async with conn.transaction():
                    await outbox.add(conn, "t", sample("12.50"))
            async with conn.transaction():
                [written] = await outbox.add(conn, "t", sample(1250))
        assert written.data["note"] is None  # defaults filled in
        assert await pool.fetchval("SELECT count(*) FROM outbox") == 1
    finally:
        await pool.close()


async def test_a_schema_invalid_message_is_dead_lettered_with_the_field_named(platform):
    topic = platform.topic("clearway.platform.events.v1")
    await ensure_topics(platform.kafka, [topic])
    await migrate(
        platform.database_url,
        schema="kitdemo",
        service="kitdemo",
        migrations=[EFFECTS],
        role_password="dev",
    )
    pool = await create_pool(platform.database_url, schema="kitdemo")
    producer = idempotent_producer(platform.kafka)
    await producer.start()
    applied: list[Event] = []

    async def handler(conn: asyncpg.Connection, ev: Event) -> None:
        applied.append(ev)

    consumer = IdempotentConsumer(
        "kitdemo",
        pool,
        DeadLetters(producer, "kitdemo"),
        handler=handler,
        validate=default_registry().validate,
    )
    broker = make_broker(platform.kafka)
    subscribe_idempotent(broker, consumer, topic, group_id="kitdemo")
    await broker.start()
    try:
        bad = sample("not a number")
        good = new_event(
            type="platform.test_event",
            source="/tests",
            aggregate_id="thing_2",
            aggregate_version=1,
            data={"id": "thing_2", "amount": 5},
            dataschema=bad.dataschema,
        )
        for e in (bad, good):
            await producer.send_and_wait(topic, e.body(), key=e.key, headers=e.headers())

        async def good_applied() -> bool:
            return len(applied) == 1

        await eventually(good_applied)
        letters = []

        async def dead_lettered() -> bool:
            letters[:] = await list_dead_letters(platform.kafka, dlt_topic(topic, "kitdemo"))
            return len(letters) == 1

        await eventually(dead_lettered, interval=0.5)
        assert letters[0].meta("error_type") == "SchemaValidationError"
        assert "amount" in letters[0].meta("error_message")
    finally:
        await broker.stop()
        await producer.stop()
        await pool.close()


async def test_a_revocation_on_kafka_reaches_the_verifier_within_a_second(platform):
    topic = platform.topic(CONSENT_EVENTS_TOPIC)
    await ensure_topics(platform.kafka, [topic])
    issuer = TestIssuer()
    revocations = RevocationSet()
    verifier = TokenVerifier(
        issuer=issuer.issuer,
        audience="clearway-transfer",
        jwks_source=issuer.jwks(),
        revocations=revocations,
    )
    feed = RevocationFeed(platform.kafka, topic, revocations)
    await feed.start()
    producer = idempotent_producer(platform.kafka)
    await producer.start()
    try:
        await asyncio.wait_for(feed.ready.wait(), 30)
        token = issuer.token(
            sub="user_1",
            client_id="cli_1",
            scopes=["payments:initiate"],
            audience="clearway-transfer",
            consent_id="cns_1",
        )
        assert (await verifier.verify(token)).consent_id == "cns_1"
        ev = new_event(
            type="consent.revoked",
            source="/consent",
            aggregate_id="cns_1",
            aggregate_version=2,
            data={"consent_id": "cns_1", "revoked_at": datetime.now(UTC).isoformat()},
        )
        sent = time.monotonic()
        await producer.send_and_wait(topic, ev.body(), key=ev.key, headers=ev.headers())

        async def refused() -> bool:
            try:
                await verifier.verify(token)
            except Exception:
                return True
            return False

        await eventually(refused, timeout=10, interval=0.01)
        # Loose bound here (noisy CI); the figure itself is measured by the benchmark.
        assert time.monotonic() - sent < 5
    finally:
        await feed.stop()
        await producer.stop()

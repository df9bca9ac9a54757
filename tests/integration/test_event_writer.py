"""EventWriter against the real Postgres: the outbox row, its id, and refusals."""

from __future__ import annotations

import json

import pytest

from clearway.shared.actor import Actor
from clearway.shared.context import correlation
from clearway.shared.db import create_pool, migrate
from clearway.shared.event_writer import EventWriter
from clearway.shared.events import event_id, header_map, headers_from_json
from clearway.shared.schemas import SchemaValidationError

from .kit_helpers import EFFECTS, SCHEMA

pytestmark = pytest.mark.integration

TYPE = "platform.test_event"


@pytest.fixture
async def pool(platform):
    await migrate(
        platform.database_url,
        schema=SCHEMA,
        service=SCHEMA,
        migrations=[EFFECTS],
        role_password="dev",
    )
    pool = await create_pool(platform.database_url, schema=SCHEMA)
    yield pool
    await pool.close()


async def _rows(pool):
    return await pool.fetch("SELECT event_id, topic, key, headers, payload FROM outbox ORDER BY 1")


async def test_emit_writes_one_outbox_row_with_a_deterministic_id(pool):
    writer = EventWriter("audit", topic_prefix="p1.")
    async with pool.acquire() as conn, conn.transaction():
        with correlation("corr_abc", "ten_1", causation_id="evt_cause"):
            written = await writer.emit(
                conn,
                TYPE,
                subject="thing_1",
                version=7,
                data={"id": "thing_1", "amount": 1250},
            )
    [row] = await _rows(pool)
    assert row["event_id"] == written.id == event_id("thing_1", 7, TYPE)
    assert row["topic"] == "p1.clearway.audit.events.v1"
    assert bytes(row["key"]) == b"thing_1"
    assert json.loads(bytes(row["payload"])) == {"id": "thing_1", "amount": 1250, "note": None}
    headers = header_map(headers_from_json(row["headers"]))
    assert headers["ce_source"] == "/clearway/audit"
    assert headers["ce_type"] == TYPE
    assert headers["ce_dataschema"] == "schemas/platform/platform.test_event/v1"
    assert headers["ce_correlationid"] == "corr_abc"
    assert headers["ce_causationid"] == "evt_cause"
    assert headers["ce_tenant"] == "ten_1"


async def test_a_schema_invalid_payload_is_refused_before_anything_is_written(pool):
    writer = EventWriter("audit")
    good = writer.event(TYPE, subject="a", version=1, data={"id": "a", "amount": 1})
    bad = writer.event(TYPE, subject="b", version=1, data={"id": "b", "amount": "12.50"})
    async with pool.acquire() as conn:
        with pytest.raises(SchemaValidationError, match="amount"):
            async with conn.transaction():
                await conn.execute("INSERT INTO effects (event_id, amount) VALUES ('x', 1)")
                await writer.write(conn, good, bad)
        with pytest.raises(SchemaValidationError):
            async with conn.transaction():
                await writer.emit(conn, TYPE, subject="c", version=1, data={"id": "c"})
    assert await _rows(pool) == []
    assert await pool.fetchval("SELECT count(*) FROM effects") == 0


async def test_write_several_at_once_and_outside_a_transaction_is_refused(pool):
    writer = EventWriter("webhooks")
    events = [
        writer.event(TYPE, subject="a", version=v, data={"id": "a", "amount": v})
        for v in (1, 2, 3)
    ]
    async with pool.acquire() as conn:
        with pytest.raises(RuntimeError, match="transaction"):
            await writer.write(conn, *events)
        async with conn.transaction():
            written = await writer.write(conn, *events)
            await writer.emit(
                conn,
                "webhooks.admin_action",
                subject="ep_1",
                version=1,
                data={"action": "endpoint.created", "resource": "ep_1"},
                actor=Actor("user_1", "cli_1", ("support_7",)),
            )
    rows = await _rows(pool)
    assert {r["event_id"] for r in rows} == {e.id for e in written} | {
        event_id("ep_1", 1, "webhooks.admin_action")
    }
    [admin] = [json.loads(bytes(r["payload"])) for r in rows if bytes(r["key"]) == b"ep_1"]
    assert Actor.from_data(admin["actor"]) == Actor("user_1", "cli_1", ("support_7",))

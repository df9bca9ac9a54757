"""Retention of delivery records (docs/design.md §9): attempts and dead letters past
their rule in ``webhooks.retention_rules`` are purged in bounded batches, and each
purge is an audited ``platform.records_purged`` event."""

from __future__ import annotations

import json

import pytest

from .conftest import TENANT

pytestmark = pytest.mark.integration


async def test_old_attempts_and_dead_letters_are_purged_in_batches_and_audited(
    service_factory, settings, receiver_factory
):
    # no relay: the purge events stay in the outbox, where the test reads them
    service = await service_factory(settings.model_copy(update={"run_relay": False}))
    endpoint = await service.create_endpoint((await receiver_factory()).url)
    records = service.app.state.records
    records.batch = 2  # a backlog drains in several bounded transactions
    async with service.pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO messages (id, tenant, endpoint_id, event_id, event_type, payload,"
            " status) VALUES ('msg_1', $1, $2, 'evt_1', 'platform.test_event', '\\x7b7d',"
            " 'failed')",
            TENANT,
            endpoint["id"],
        )
        await conn.execute(
            "INSERT INTO attempts (message_id, attempt_no, trigger, outcome, latency_ms,"
            " attempted_at) SELECT 'msg_1', n, 'schedule', 'failure', 1,"
            " now() - CASE WHEN n <= 5 THEN interval '31 days' ELSE interval '1 day' END"
            " FROM generate_series(1, 7) AS n"
        )
        await conn.execute(
            "INSERT INTO dead_letters (message_id, endpoint_id, tenant, reason, created_at)"
            " VALUES ('msg_1', $1, $2, 'exhausted', now() - interval '91 days'),"
            " ('msg_1', $1, $2, 'exhausted', now() - interval '89 days')",
            endpoint["id"],
            TENANT,
        )
    removed = await records.purge(service.pool)
    assert removed == {"webhook_attempts": 5, "webhook_dead_letters": 1}
    async with service.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM attempts") == 2
        assert await conn.fetchval("SELECT count(*) FROM dead_letters") == 1
        rules = {
            r["record_class"]: (r["purges"], r["last_purge_count"])
            for r in await conn.fetch("SELECT * FROM retention_rules")
        }
        payloads = [
            json.loads(r["payload"])
            for r in await conn.fetch(
                "SELECT payload FROM outbox WHERE headers::text LIKE '%records_purged%'"
                " ORDER BY id"
            )
        ]
    # 5 attempts in batches of 2: three purges (2, 2, 1), each its own event
    assert rules == {"webhook_attempts": (3, 1), "webhook_dead_letters": (1, 1)}
    assert [(p["record_class"], p["count"]) for p in payloads] == [
        ("webhook_attempts", 2),
        ("webhook_attempts", 2),
        ("webhook_attempts", 1),
        ("webhook_dead_letters", 1),
    ]
    assert {p["service"] for p in payloads} == {"webhooks"}
    assert {p["retention_days"] for p in payloads} == {30, 90}

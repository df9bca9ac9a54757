"""Retention of delivery records (docs/design.md §9): attempts, dead letters and message
payloads past their rule in ``webhooks.retention_rules`` are purged in bounded batches,
and each purge is an audited ``platform.records_purged`` event."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from clearway.shared import store_retention

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
    assert removed == {
        "webhook_attempts": 5,
        "webhook_dead_letters": 1,
        "webhook_message_payloads": 0,  # msg_1 failed just now
    }
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
                "SELECT payload FROM outbox WHERE headers::text LIKE '%records_purged%' ORDER BY id"
            )
        ]
    # 5 attempts in batches of 2: three purges (2, 2, 1), each its own event
    assert rules == {
        "webhook_attempts": (3, 1),
        "webhook_dead_letters": (1, 1),
        "webhook_message_payloads": (0, None),
    }
    assert [(p["record_class"], p["count"]) for p in payloads] == [
        ("webhook_attempts", 2),
        ("webhook_attempts", 2),
        ("webhook_attempts", 1),
        ("webhook_dead_letters", 1),
    ]
    assert {p["service"] for p in payloads} == {"webhooks"}
    assert {p["retention_days"] for p in payloads} == {30, 90}


async def _outbox_purges(conn) -> list[tuple[str, int, float]]:
    rows = await conn.fetch(
        "SELECT payload FROM outbox WHERE headers::text LIKE '%records_purged%' ORDER BY id"
    )
    return [
        (p["record_class"], p["count"], p["retention_days"])
        for p in (json.loads(r["payload"]) for r in rows)
    ]


async def test_payloads_of_settled_messages_are_purged_and_such_messages_are_not_redelivered(
    service_factory, settings, receiver_factory, eventually
):
    """A message keeps its payload while it is pending and for the rule's period after
    its last delivery activity; then the row stays (log, attempts, dead letters) without
    it, and neither a resend nor a replay can queue it again."""
    service = await service_factory(settings.model_copy(update={"run_relay": False}))
    endpoint = await service.create_endpoint((await receiver_factory()).url)
    ages = {  # message: (status, days since its last delivery activity)
        "msg_delivered": ("delivered", 91),
        "msg_failed": ("failed", 91),
        "msg_skipped": ("skipped", 120),
        "msg_recent": ("delivered", 89),
        "msg_month": ("failed", 20),
        "msg_pending": ("pending", 200),  # still in delivery: never purged
    }
    async with service.pool.acquire() as conn:
        for i, (msg, (status, days)) in enumerate(ages.items()):
            await conn.execute(
                "INSERT INTO messages (id, tenant, endpoint_id, event_id, event_type, payload,"
                " status, next_attempt_at, updated_at) VALUES ($1, $2, $3, $4,"
                " 'platform.test_event', '\\x7b7d', $5,"
                " CASE WHEN $5 = 'pending' THEN now() + interval '1 day' END,"
                " now() - make_interval(days => $6))",
                msg,
                TENANT,
                endpoint["id"],
                f"evt_{i}",
                status,
                days,
            )
    records = service.app.state.records
    removed = await records.purge(service.pool)
    assert removed["webhook_message_payloads"] == 3
    async with service.pool.acquire() as conn:
        kept = {
            r["id"]: r["kept"]
            for r in await conn.fetch(
                "SELECT id, payload IS NOT NULL AND payload_purged_at IS NULL AS kept FROM messages"
            )
        }
        assert await _outbox_purges(conn) == [("webhook_message_payloads", 3, 90)]
    assert kept == {
        "msg_delivered": False,
        "msg_failed": False,
        "msg_skipped": False,
        "msg_recent": True,
        "msg_month": True,
        "msg_pending": True,
    }

    shown = (await service.http.get("/v1/messages/msg_failed", headers=service.auth)).json()
    assert shown["status"] == "failed" and shown["payload_purged_at"] is not None
    refused = await service.http.post("/v1/messages/msg_failed/resend", headers=service.auth)
    assert refused.status_code == 409
    assert refused.json()["type"].endswith("/payload-purged")
    replay = await service.http.post(
        "/v1/replays",
        json={
            "endpoint_id": endpoint["id"],
            "since": "2000-01-01T00:00:00Z",
            "until": "2100-01-01T00:00:00Z",
            "status": "failed",
        },
        headers=service.auth,
    )
    assert replay.status_code == 202, replay.text

    async def done() -> dict | None:
        job = await service.http.get(f"/v1/replays/{replay.json()['id']}", headers=service.auth)
        return job.json() if job.json()["state"] == "done" else None

    await eventually(done)
    job = await done()
    assert job is not None
    # msg_month is re-queued (and delivered); msg_failed has nothing left to deliver
    assert (job["processed"], job["queued"], job["skipped"]) == (2, 1, 1)

    async def delivered() -> bool:
        async with service.pool.acquire() as conn:
            return bool(
                await conn.fetchval(
                    "SELECT status = 'delivered' FROM messages WHERE id = 'msg_month'"
                )
            )

    await eventually(delivered)
    # an operator shortens the rule (clearway-retention webhooks set): kept across a
    # restart's seeding, applied on the next run
    async with service.pool.acquire() as conn:
        assert await conn.fetchval("SELECT status FROM messages WHERE id = 'msg_failed'") == (
            "failed"
        )
        assert await store_retention.override(
            conn, "webhook_message_payloads", timedelta(days=10), "alice", "contract"
        )
        await records.seed(conn)
        await conn.execute(
            "UPDATE messages SET updated_at = now() - interval '11 days'"
            " WHERE id IN ('msg_month', 'msg_recent')"
        )
    removed = await records.purge(service.pool)
    assert removed["webhook_message_payloads"] == 2
    async with service.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM messages WHERE payload IS NULL") == 5
        assert (await _outbox_purges(conn))[-1] == ("webhook_message_payloads", 2, 10)

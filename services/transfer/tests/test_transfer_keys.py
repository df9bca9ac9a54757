"""Idempotency keys: in flight, stale and recovered, purged; cancel before submission."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from clearway.shared.events import event_id
from clearway.transfer.domain import TRANSFERS_ROUTE, fingerprint, reference_for
from clearway.transfer.handlers import purge_records, recover_stale_keys

pytestmark = pytest.mark.integration


def _key_row_args(clearway, body, key, tenant="ten_a", client="cli_mobile"):
    core = clearway.app.state.core
    return (
        tenant,
        client,
        key,
        fingerprint("POST", TRANSFERS_ROUTE, body),
        reference_for(core.reference_secret, tenant, client, key),
    )


async def _insert_in_flight(clearway, body, key, age="0 seconds"):
    await clearway.db.execute(
        "INSERT INTO transfer.idempotency_keys (tenant, client_id, key, fingerprint, state,"
        " reference, locked_at, expires_at) VALUES ($1,$2,$3,$4,'in_flight',$5,"
        " now() - $6::text::interval, now() + interval '7 days')",
        *_key_row_args(clearway, body, key),
        age,
    )


async def test_a_request_whose_first_attempt_is_still_in_flight_gets_409_with_retry_after(
    clearway, body
):
    await _insert_in_flight(clearway, body, "key-busy")
    r = await clearway.post("key-busy", body)
    assert r.status_code == 409
    assert int(r.headers["Retry-After"]) >= 1
    assert await clearway.count("SELECT count(*) FROM transfer.transfers") == 0


async def test_a_stale_in_flight_key_without_a_transfer_is_recovered_by_running_it_once(
    clearway, body
):
    await _insert_in_flight(clearway, body, "key-stale", age="1 hour")
    r = await clearway.post("key-stale", body)
    assert r.status_code == 201
    again = await clearway.post("key-stale", body)
    assert again.json() == r.json() and again.headers["Idempotent-Replayed"] == "true"
    assert await clearway.count("SELECT count(*) FROM transfer.transfers") == 1


async def test_a_stale_in_flight_key_whose_transfer_exists_is_completed_without_a_second_effect(
    clearway, body, eventually
):
    first = await clearway.post("key-crashed", body)
    # as if the process died between the effect and the answer being recorded
    await clearway.db.execute(
        "UPDATE transfer.idempotency_keys SET state='in_flight', response=NULL,"
        " response_bytes=NULL, response_version=NULL, status_code=NULL,"
        " locked_at = now() - interval '1 hour'"
    )
    recovered = await recover_stale_keys(clearway.app.state.core)
    assert recovered == 1
    state = await clearway.db.fetchval("SELECT state FROM transfer.idempotency_keys")
    assert state == "completed"
    r = await clearway.post("key-crashed", body)
    assert r.headers["Idempotent-Replayed"] == "true"
    assert r.json()["id"] == first.json()["id"]
    assert await clearway.count("SELECT count(*) FROM transfer.transfers") == 1
    await eventually(lambda: _settled_count(clearway, 1))
    assert await clearway.count("SELECT count(*) FROM rail.charges") == 1


async def _settled_count(clearway, n):
    return list((await clearway.statuses()).values()).count("settled") == n


async def test_expired_keys_are_purged_and_the_reference_still_blocks_a_second_transfer(
    clearway, body, eventually, published
):
    first = await clearway.post("key-old", body)
    await clearway.post("key-new", {**body, "amount": 2})
    await clearway.db.execute(
        "UPDATE transfer.idempotency_keys SET created_at = now() - interval '7 days 1 second'"
        " WHERE key = 'key-old'"
    )
    assert await purge_records(clearway.app.state.core) == {"idempotency_keys": 1}
    assert await clearway.count("SELECT count(*) FROM transfer.idempotency_keys") == 1
    rule = await clearway.db.fetchrow(
        "SELECT retention, purges, last_purge_count FROM transfer.retention_rules"
        " WHERE record_class = 'idempotency_keys'"
    )
    assert (rule["retention"], rule["purges"], rule["last_purge_count"]) == (
        timedelta(days=7),
        1,
        1,
    )

    async def purge_published():  # what was removed is in the audit trail
        found = [e for e in await published() if e.type == "platform.records_purged"]
        return found or None

    [purged] = await eventually(purge_published)
    assert purged.data["record_class"] == "idempotency_keys" and purged.data["count"] == 1
    assert purged.data["retention_days"] == 7 and purged.data["cutoff"].endswith("Z")
    again = await clearway.post("key-old", body)
    assert again.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    # key-old's and key-new's: the replay after the purge made no second transfer
    assert await clearway.count("SELECT count(*) FROM transfer.transfers") == 2
    other = await clearway.post("key-old", {**body, "amount": 1})
    assert other.status_code == 422


async def test_key_retention_is_configurable(start_services, body):
    async with start_services(key_retention=timedelta(hours=2)) as cw:
        await cw.post("key-ret", body)
        left = await cw.db.fetchval(
            "SELECT extract(epoch FROM expires_at - created_at) FROM transfer.idempotency_keys"
        )
    assert 7100 < float(left) < 7300


async def test_a_pending_transfer_can_be_canceled_and_canceling_again_answers_the_same(
    start_services, body, eventually, published
):
    async with start_services(run_executor=False) as cw:
        created = (await cw.post("key-cancel", body)).json()
        async with cw.client() as c:
            first = await c.post(f"/v1/transfers/{created['id']}/cancel")
            second = await c.post(f"/v1/transfers/{created['id']}/cancel")
        async with cw.client(tenant="ten_b") as other:
            foreign = await other.post(f"/v1/transfers/{created['id']}/cancel")
        assert first.status_code == second.status_code == 200
        assert first.json()["status"] == "canceled" and second.json() == first.json()
        assert foreign.status_code == 404
        # everything written is on the topic once the relay has emptied the outbox
        await eventually(lambda: _outbox_empty(cw))
        events = [e for e in await published() if e.subject == created["id"]]
    assert [e.type for e in events] == ["transfer.created", "transfer.canceled"]
    canceled = events[1]
    assert canceled.data["status"] == "canceled"
    assert canceled.data["actor"] == {
        "subject": "usr_1",
        "client_id": "cli_mobile",
        "delegation": [],
    }
    assert canceled.tenant == "ten_a"
    assert canceled.id == event_id(created["id"], 2, "transfer.canceled")


async def _outbox_empty(cw):
    return await cw.count("SELECT count(*) FROM transfer.outbox") == 0


async def test_a_submitted_transfer_cannot_be_canceled(clearway, body, eventually):
    created = (await clearway.post("key-late", body)).json()
    await eventually(lambda: _settled_count(clearway, 1))
    async with clearway.client() as c:
        r = await c.post(f"/v1/transfers/{created['id']}/cancel")
    assert r.status_code == 409
    assert r.json()["type"].endswith("transfer-not-cancelable")


async def test_a_key_completed_before_a_dated_version_shipped_replays_in_each_callers_shape(
    clearway, body
):
    """A body stored when ``2026-11-01`` was current (minor units) is upgraded on replay,
    so a caller on either version gets its own shape, not the stored one re-labelled."""
    first = await clearway.post("key-before", body)
    old = first.json()  # the test client is on 2026-11-01: minor units and currency
    assert (old["amount"], old["currency"]) == (12500, "EUR")
    await clearway.db.execute(
        "UPDATE transfer.idempotency_keys SET response_bytes = $1, response_version = '2026-11-01'",
        json.dumps(old).encode(),
    )
    again = await clearway.post("key-before", body)
    assert again.headers["Idempotent-Replayed"] == "true" and again.json() == old
    async with clearway.client() as c:
        current = await c.post(
            "/v1/transfers",
            json=body,
            headers={"Idempotency-Key": "key-before", "Clearway-Version": "2026-12-01"},
        )
    assert current.headers["Idempotent-Replayed"] == "true"
    assert current.json()["amount"] == {"value": "125.00", "currency": "EUR"}
    assert "currency" not in current.json()

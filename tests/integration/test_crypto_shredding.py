"""Crypto-shredding a tenant, on SoftHSM2 and Postgres (docs/design.md §9, ADR 0027).

Records of tenants A, A's sandbox twin and B are sealed under their tenant keys;
shredding A makes every record of A and of its twin unreadable, in this process
and in a fresh one, with an error naming the record, while B's records open, new
records of A are refused, the audited events are in the outbox, and KEK rotation,
re-wrap and retirement still work.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from clearway.shared.crypto import Context, DekCache, Envelope, RecordUnreadable
from clearway.shared.crypto.hsm import HsmProvider
from clearway.shared.crypto.rotation import SealedColumn, retire_keks, rewrap, rotate_kek
from clearway.shared.crypto.softhsm import DEFAULT_MODULE, ensure_token
from clearway.shared.crypto.tenant_keys import (
    EVENT,
    TENANT_KEY_COLUMN,
    TenantKeys,
    TenantShredded,
    shred_tenant,
)
from clearway.shared.db import Migration, create_pool, migrate
from clearway.shared.event_writer import EventWriter

pytestmark = pytest.mark.integration

TABLE = Migration(
    "0001_records",
    "CREATE TABLE records (id bigint PRIMARY KEY, tenant text NOT NULL, sealed bytea NOT NULL)",
)
COLUMNS = (SealedColumn("records", "sealed"), TENANT_KEY_COLUMN)


def ctx(row: int, tenant: str) -> Context:
    return Context("shred", "records", "sealed", str(row), tenant)


@pytest.fixture
async def shred(admin_dsn: str, softhsm: Path):
    await migrate(admin_dsn, schema="shred", service="shred", migrations=[TABLE], role_password="x")
    pool = await create_pool(admin_dsn, schema="shred", max_size=4)
    name = f"s{uuid.uuid4().hex[:8]}"
    pin = ensure_token(softhsm, "clearway")

    def envelope() -> tuple[Envelope, TenantKeys]:  # one per "process"
        provider = HsmProvider(name, module=DEFAULT_MODULE, token_label="clearway", pin=pin)
        provider.ensure()
        env = Envelope(provider, DekCache(size=64, ttl_s=30))
        return env, TenantKeys(env, pool)

    yield pool, envelope
    await pool.close()


async def test_shredding_a_tenant_leaves_the_others_readable(shred) -> None:
    pool, envelope = shred
    env, keys = envelope()
    legacy = Envelope(env.provider)  # no tenant keys: format 2, as before ADR 0027
    old_blob = legacy.seal(b"written before tenant keys", ctx(99, "ten_a"))
    rows = []
    for tenant in ("ten_a", "ten_a_test", "ten_b"):
        await keys.ensure(tenant)
        first = len(rows)
        rows += [
            (i, tenant, env.seal(f"{tenant} {i}".encode(), ctx(i, tenant)))
            for i in range(first, first + 50)
        ]
    assert {r[2][:4] for r in rows} == {b"CWE\x03"}
    async with pool.acquire() as conn:
        await conn.copy_records_to_table("records", records=rows, schema_name="shred")
        events = EventWriter("webhooks")
        destroyed = await shred_tenant(
            conn, "shred", events, tenant="ten_a", reason="contract ended", keys=keys
        )
        assert destroyed == 2  # ten_a and its sandbox twin (ADR 0037)
        shredded = [
            json.loads(r["payload"])
            for r in await conn.fetch(
                "SELECT payload FROM outbox WHERE headers::text LIKE $1", f"%{EVENT}%"
            )
        ]
    assert sorted(d["tenant"] for d in shredded) == ["ten_a", "ten_a_test"]
    for data in shredded:
        assert data["keys_destroyed"] == 1
        assert data["reason"] == "contract ended" and data["service"] == "shred"

    fresh, fresh_keys = envelope()  # another replica, or a restart: nothing cached
    for e, k in ((env, keys), (fresh, fresh_keys)):
        for tenant in ("ten_a", "ten_a_test", "ten_b"):
            await k.ensure(tenant)
        for i, tenant, blob in rows:
            if tenant == "ten_b":
                assert e.open(blob, ctx(i, tenant)) == f"{tenant} {i}".encode()
                continue
            with pytest.raises(RecordUnreadable) as err:
                e.open(blob, ctx(i, tenant))
            assert f"row {i}, tenant {tenant}" in str(err.value)
            assert "destroyed (tenant crypto-shredded)" in str(err.value)
        for tenant in ("ten_a", "ten_a_test"):
            with pytest.raises(TenantShredded):
                e.seal(b"new data of an offboarded tenant", ctx(1000, tenant))
        assert e.open(old_blob, ctx(99, "ten_a")) == b"written before tenant keys"
    # the KEK alone (no tenant keys at all) opens none of them either
    with pytest.raises(RecordUnreadable, match="not loaded"):
        legacy.open(rows[-1][2], ctx(rows[-1][0], "ten_b"))

    # KEK rotation: records and tenant keys re-wrap, the old version is destroyed,
    # B still opens in a fresh process and A stays unreadable
    async with pool.acquire() as conn:
        await rotate_kek(conn, env, events, reason="after offboarding")
    for column in COLUMNS:
        await rewrap(pool, env, column, batch=40)
    async with pool.acquire() as conn:
        assert await retire_keks(conn, env, COLUMNS, events, below=2, reason="done") == [1]
        stored = await conn.fetch("SELECT id, tenant, sealed FROM records ORDER BY id")
    after, after_keys = envelope()
    for tenant in ("ten_a", "ten_a_test", "ten_b"):
        await after_keys.ensure(tenant)
    for r in stored:
        if r["tenant"] == "ten_b":
            assert after.open(bytes(r["sealed"]), ctx(r["id"], "ten_b")).startswith(b"ten_b")
        else:
            with pytest.raises(RecordUnreadable):
                after.open(bytes(r["sealed"]), ctx(r["id"], r["tenant"]))


async def test_shredding_a_sandbox_twin_leaves_its_live_tenant_readable(shred) -> None:
    """Naming the twin (a sandbox reset) destroys the twin's keys alone."""
    pool, envelope = shred
    env, keys = envelope()
    for tenant in ("ten_a", "ten_a_test"):
        await keys.ensure(tenant)
    live = env.seal(b"live", ctx(1, "ten_a"))
    test = env.seal(b"test", ctx(2, "ten_a_test"))
    async with pool.acquire() as conn:
        destroyed = await shred_tenant(
            conn, "shred", EventWriter("webhooks"), tenant="ten_a_test", reason="reset", keys=keys
        )
    assert destroyed == 1
    assert env.open(live, ctx(1, "ten_a")) == b"live"
    with pytest.raises(RecordUnreadable, match="destroyed"):
        env.open(test, ctx(2, "ten_a_test"))


async def test_other_replicas_forget_a_shredded_tenant(shred) -> None:
    pool, envelope = shred
    one, one_keys = envelope()
    two, two_keys = envelope()
    await one_keys.ensure("ten_a")
    blob = one.seal(b"card", ctx(1, "ten_a"))
    await two_keys.ensure("ten_a")
    assert two.open(blob, ctx(1, "ten_a")) == b"card"
    async with pool.acquire() as conn:
        await shred_tenant(conn, "shred", EventWriter("webhooks"), tenant="ten_a", reason="gone")
    await two_keys.refresh()
    with pytest.raises(RecordUnreadable, match="destroyed"):
        two.open(blob, ctx(1, "ten_a"))
    with pytest.raises(TenantShredded):
        two.seal(b"more", ctx(2, "ten_a"))

"""KEK rotation and re-wrap while requests flow, on SoftHSM2 and Postgres (docs/design.md §9).

100,000 sealed records are re-wrapped under a new KEK version while other tasks
keep reading (opening) and writing (sealing) records; afterwards every record
opens, the old version is destroyed in the HSM, and no request failed.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
import uuid
from pathlib import Path

import asyncpg
import pytest
from pkcs11 import exceptions as p11

from clearway.shared.crypto import Context, DekCache, Envelope, RecordUnreadable
from clearway.shared.crypto.envelope import kek_version
from clearway.shared.crypto.hsm import HsmProvider
from clearway.shared.crypto.rotation import SealedColumn, retire_keks, rewrap, rotate_kek
from clearway.shared.crypto.softhsm import DEFAULT_MODULE, ensure_token
from clearway.shared.db import Migration, create_pool, migrate
from clearway.shared.event_writer import EventWriter

pytestmark = pytest.mark.integration

N = int(os.environ.get("CLEARWAY_REWRAP_RECORDS", "100000"))
TABLE = Migration(
    "0001_records",
    "CREATE TABLE records (id bigint PRIMARY KEY, tenant text NOT NULL, sealed bytea NOT NULL)",
)
COLUMN = SealedColumn("records", "sealed")


def ctx(row: int, tenant: str) -> Context:
    return Context("keyed", "records", "sealed", str(row), tenant)


def tenant_of(row: int) -> str:
    return f"ten_{row % 7}"


@pytest.fixture
async def keyed(admin_dsn: str, softhsm: Path):
    await migrate(admin_dsn, schema="keyed", service="keyed", migrations=[TABLE], role_password="x")
    pool = await create_pool(admin_dsn, schema="keyed", max_size=6)
    name = f"k{uuid.uuid4().hex[:8]}"
    provider = HsmProvider(
        name, module=DEFAULT_MODULE, token_label="clearway", pin=ensure_token(softhsm, "clearway")
    )
    provider.ensure()
    yield pool, Envelope(provider, DekCache(size=2048, ttl_s=30))
    await pool.close()


async def test_rotation_and_rewrap_under_load(keyed) -> None:
    pool, envelope = keyed
    old = envelope.primary
    rows = [
        (i, tenant_of(i), envelope.seal(f"pii {i}".encode(), ctx(i, tenant_of(i))))
        for i in range(N)
    ]
    async with pool.acquire() as conn:
        await conn.copy_records_to_table("records", records=rows, schema_name="keyed")
    events = EventWriter("webhooks")
    stop = asyncio.Event()
    served, failures = [0], []
    next_id = [N]

    async def requests() -> None:  # readers and writers, as an API would be
        while not stop.is_set():
            try:
                async with pool.acquire() as conn:
                    if random.random() < 0.2:
                        i = next_id[0]
                        next_id[0] += 1
                        blob = envelope.seal(f"pii {i}".encode(), ctx(i, tenant_of(i)))
                        await conn.execute(
                            "INSERT INTO records VALUES ($1, $2, $3)", i, tenant_of(i), blob
                        )
                    else:
                        i = random.randrange(N)
                        blob = await conn.fetchval("SELECT sealed FROM records WHERE id = $1", i)
                        assert (
                            envelope.open(bytes(blob), ctx(i, tenant_of(i))) == f"pii {i}".encode()
                        )
                served[0] += 1
            except Exception as e:
                failures.append(repr(e))
            await asyncio.sleep(0)

    clients = [asyncio.create_task(requests()) for _ in range(4)]
    started = time.monotonic()
    async with pool.acquire() as conn:
        new = await rotate_kek(conn, envelope, events, reason="test rotation")
    assert new == old + 1
    report = await rewrap(pool, envelope, COLUMN, batch=2000)
    took = time.monotonic() - started
    stop.set()
    await asyncio.gather(*clients)
    assert not failures, failures[:5]
    assert served[0] > 0
    assert report.rewrapped >= N - 1  # a row written under the new version needs none
    # a straggler sealed before the switch is picked up by a second pass
    await rewrap(pool, envelope, COLUMN, batch=2000)
    async with pool.acquire() as conn:
        gone = await retire_keks(conn, envelope, [COLUMN], events, below=new, reason="test")
        assert gone == [old]
        assert envelope.provider.versions() == [new]
        types = await conn.fetch("SELECT payload FROM outbox")
        assert len(types) == 2
        rows = await conn.fetch("SELECT id, tenant, sealed FROM records ORDER BY id")
    cold = Envelope(envelope.provider, DekCache(0))
    assert all(kek_version(bytes(r["sealed"])) == new for r in rows)
    for r in rows:
        assert cold.open(bytes(r["sealed"]), ctx(r["id"], r["tenant"])) == f"pii {r['id']}".encode()
    print(f"\nre-wrapped {report.rewrapped:,} records in {took:.1f}s with {served[0]:,} requests")


async def test_rewrap_resumes_from_its_cursor_and_retire_waits_for_it(keyed) -> None:
    pool, envelope = keyed
    rows = [(i, "t", envelope.seal(b"x", ctx(i, "t"))) for i in range(500)]
    async with pool.acquire() as conn:
        await conn.copy_records_to_table("records", records=rows, schema_name="keyed")
        events = EventWriter("webhooks")
        new = await rotate_kek(conn, envelope, events, reason="resume test")

    def crash_after_two(scanned: int, rewrapped: int) -> None:
        if scanned >= 200:
            raise RuntimeError("killed mid-way")

    with pytest.raises(RuntimeError):
        await rewrap(pool, envelope, COLUMN, batch=100, progress=crash_after_two)
    async with pool.acquire() as conn:
        with pytest.raises(RecordUnreadable, match="300 value"):
            await retire_keks(conn, envelope, [COLUMN], events, below=new, reason="too early")
    seen: list[int] = []
    report = await rewrap(pool, envelope, COLUMN, batch=100, progress=lambda s, r: seen.append(s))
    assert report.scanned == 300 and report.rewrapped == 500  # resumed after row 199
    async with pool.acquire() as conn:
        assert await retire_keks(conn, envelope, [COLUMN], events, below=new, reason="ok")


async def test_kek_material_never_reaches_postgres(keyed, softhsm: Path) -> None:
    """The KEK cannot be read out of the token, so nothing in the database can hold it;
    what is stored is wrapped data keys and ciphertext only."""
    pool, envelope = keyed
    key = envelope.provider.kek_object(envelope.primary)
    with pytest.raises(p11.AttributeSensitive):
        key[__import__("pkcs11").Attribute.VALUE]
    async with pool.acquire() as conn:
        blob = envelope.seal(b"secret value", ctx(1, "t"))
        await conn.execute("INSERT INTO records VALUES (1, 't', $1)", blob)
        stored = bytes(await conn.fetchval("SELECT sealed FROM records"))
    assert b"secret value" not in stored
    # the only key bytes in the blob are the wrapped data key, which needs the HSM
    with pytest.raises(RecordUnreadable):
        Envelope(
            HsmProvider(
                envelope.provider.name + "x",
                module=DEFAULT_MODULE,
                token_label="clearway",
                pin=ensure_token(softhsm, "clearway"),
            )
        ).open(stored, ctx(1, "t"))
    _ = asyncpg

"""KEK rotation without downtime (docs/design.md §9).

1. :func:`rotate_kek` creates a new KEK version in the HSM; it is primary at once
   for this process and, after their next :meth:`Envelope.refresh`, for the other
   replicas. Older versions keep unwrapping. An audited ``platform.key_rotated``
   event records who, why and which version.
2. :func:`rewrap` walks one sealed column in id order, in batches, re-wrapping the
   data keys under the primary version (the encrypted data is copied unchanged);
   its cursor is stored after every batch, so a crashed job resumes where it
   stopped. Each row is swapped only if it did not change meanwhile.
3. :func:`retire_keks` raises the minimum version: it refuses while any sealed
   value still needs an older version, then destroys those versions in the HSM.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from clearway.shared.actor import Actor
from clearway.shared.crypto import store_keys
from clearway.shared.crypto.envelope import Envelope, RecordUnreadable
from clearway.shared.event_writer import EventWriter

__all__ = [
    "RewrapReport",
    "SealedColumn",
    "emit_key_rotated",
    "keep_kek_current",
    "retire_keks",
    "rewrap",
    "rotate_if_due",
    "rotate_kek",
]

EVENT = "platform.key_rotated"


@dataclass(frozen=True)
class SealedColumn:
    """A column holding envelope blobs, with the column that orders and names its rows."""

    table: str
    column: str
    id_column: str = "id"


@dataclass(frozen=True)
class RewrapReport:
    column: SealedColumn
    target: int
    rewrapped: int
    scanned: int


async def _emit(
    conn: asyncpg.Connection,
    events: EventWriter,
    envelope: Envelope,
    action: str,
    version: int,
    destroyed: Sequence[int],
    reason: str,
    actor: Actor | None,
) -> None:
    provider = envelope.provider
    await emit_key_rotated(
        conn, events, provider.name, provider.kind, action, version, destroyed, reason, actor
    )


async def emit_key_rotated(
    conn: asyncpg.Connection,
    events: EventWriter,
    name: str,
    provider: str,
    action: str,
    version: int,
    destroyed: Sequence[int],
    reason: str,
    actor: Actor | None,
    *,
    key_use: str = "encryption",
) -> None:
    """The audited ``platform.key_rotated`` event of key ``name`` (``key_use``:
    ``encryption`` for a KEK, ``signing`` for a signing key), in ``conn``'s
    transaction. Never carries key material."""
    await events.emit(
        conn,
        EVENT,
        subject=f"kek:{name}" if key_use == "encryption" else f"signing-key:{name}",
        version=version,
        actor=actor,
        data={
            "kek": name,
            "key_use": key_use,
            "action": action,
            "version": version,
            "destroyed": list(destroyed),
            "provider": provider,
            "reason": reason,
            "at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        },
    )


async def rotate_kek(
    conn: asyncpg.Connection,
    envelope: Envelope,
    events: EventWriter,
    *,
    reason: str,
    actor: Actor | None = None,
) -> int:
    """Make a new KEK version primary; returns it. The event commits with the record
    of the version; the HSM object exists before (an unused version is harmless)."""
    if not reason.strip():
        raise ValueError("a key rotation needs a reason")
    async with conn.transaction():
        await store_keys.lock_kek(conn, envelope.provider.name)
        version = envelope.provider.create_version()
        await store_keys.record_version(conn, envelope.provider.name, version)
        await _emit(conn, events, envelope, "rotated", version, (), reason, actor)
    envelope.refresh()
    return version


async def rotate_if_due(
    conn: asyncpg.Connection, envelope: Envelope, events: EventWriter, interval: timedelta
) -> int | None:
    """The scheduled rotation: a new version when the newest one is older than ``interval``."""
    name = envelope.provider.name
    newest = await store_keys.newest_version_at(conn, name)
    if newest is None:  # first start: record the version the provider created
        await store_keys.record_version(conn, name, envelope.refresh())
        return None
    if datetime.now(UTC) - newest < interval:
        envelope.refresh()  # another replica may have rotated
        return None
    async with conn.transaction():
        await store_keys.lock_kek(conn, name)
        again = await store_keys.newest_version_at(conn, name)
        if again is not None and datetime.now(UTC) - again < interval:
            return None  # another replica rotated first
        version = envelope.provider.create_version()
        await store_keys.record_version(conn, name, version)
        await _emit(conn, events, envelope, "rotated", version, (), "scheduled rotation", None)
    envelope.refresh()
    return version


async def rewrap(
    pool: asyncpg.Pool,
    envelope: Envelope,
    column: SealedColumn,
    *,
    batch: int = 1000,
    progress: Callable[[int, int], None] | None = None,
) -> RewrapReport:
    """Re-wrap every data key of ``column`` under the primary KEK version (resumable).

    ``progress(scanned, rewrapped)`` is called after each batch. A record that
    cannot be unwrapped raises :class:`RecordUnreadable` naming it; the cursor
    stays before its batch.
    """
    target = envelope.refresh()
    t, c, i = column.table, column.column, column.id_column
    async with pool.acquire() as conn:
        kind = await store_keys.id_type(conn, t, i)
        saved = await store_keys.cursor(conn, t, c)
    last, done = None, 0
    if saved is not None and saved["target"] == target and saved["done_at"] is None:
        last, done = saved["last_id"], saved["rewrapped"]  # resume
    scanned = 0
    while True:
        async with pool.acquire() as conn:
            rows = await store_keys.sealed_batch(conn, t, c, i, kind, last, batch)
            # HSM calls block: off the event loop, so requests keep flowing meanwhile
            swaps = await asyncio.to_thread(_rewrap_rows, envelope, f"{t}.{c}", rows)
            scanned += len(rows)
            last = rows[-1]["id"] if rows else last
            async with conn.transaction():
                done += await store_keys.replace_sealed(conn, t, c, i, kind, swaps)
                await store_keys.save_cursor(conn, t, c, target, last, done, len(rows) < batch)
        if progress is not None:
            progress(scanned, done)
        if len(rows) < batch:
            return RewrapReport(column, target, done, scanned)


def _rewrap_rows(
    envelope: Envelope, where: str, rows: Sequence[Any]
) -> list[tuple[str, bytes, bytes]]:
    swaps = []
    for r in rows:
        blob = bytes(r["sealed"])
        new = envelope.rewrap(blob, record=f"{envelope.provider.name}.{where} of row {r['id']}")
        if new is not None:
            swaps.append((r["id"], blob, new))
    return swaps


async def retire_keks(
    conn: asyncpg.Connection,
    envelope: Envelope,
    columns: Sequence[SealedColumn],
    events: EventWriter,
    *,
    below: int,
    reason: str,
    actor: Actor | None = None,
) -> list[int]:
    """Destroy every KEK version below ``below`` in the HSM; refuses while a sealed value
    of ``columns`` still needs one (run :func:`rewrap` first). Returns the destroyed ones."""
    if not reason.strip():
        raise ValueError("retiring key versions needs a reason")
    provider = envelope.provider
    name = provider.name
    if below > envelope.refresh():
        raise ValueError(f"{name}: the minimum version cannot exceed the primary one")
    async with conn.transaction():
        await store_keys.lock_kek(conn, name)
        for col in columns:
            left = await store_keys.count_below(conn, col.table, col.column, name, below)
            if left:
                raise RecordUnreadable(
                    f"{name}.{col.table}.{col.column}",
                    f"{left} value(s) still wrapped under a version below {below}: re-wrap first",
                )
        doomed = [v for v in provider.versions() if v < below]
        await store_keys.mark_destroyed(conn, name, doomed)
        await _emit(conn, events, envelope, "retired", below, doomed, reason, actor)
        for v in doomed:  # last: the transaction only commits once they are gone
            provider.destroy_version(v)
    envelope.forget_keys()
    return doomed


async def keep_kek_current(
    pool: asyncpg.Pool, envelope: Envelope, events: EventWriter, interval: timedelta
) -> None:
    """The periodic job of a service's Supervisor: scheduled rotation, and picking up a
    version another replica or the CLI made primary."""
    async with pool.acquire() as conn:
        await rotate_if_due(conn, envelope, events, interval)

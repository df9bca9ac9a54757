"""asyncpg access to the ``audit`` schema: records, checkpoints, retention cuts."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from clearway.audit.signing import Checkpoint

SCHEMA = "audit"
#: pg_advisory_xact_lock keys: one appender at a time (dense positions), one checkpointer.
APPEND_LOCK = 0x61756469_74000001
CHECKPOINT_LOCK = 0x61756469_74000002


@dataclass(frozen=True)
class Head:
    next_position: int
    last_recorded_at: datetime | None


@dataclass(frozen=True)
class Cut:
    size: int
    frontier: list[bytes]


@dataclass(frozen=True)
class StoredCheckpoint:
    checkpoint: Checkpoint
    frontier: list[bytes]


async def lock_appends(conn: asyncpg.Connection) -> None:
    await conn.execute("SELECT pg_advisory_xact_lock($1)", APPEND_LOCK)


async def lock_checkpoints(conn: asyncpg.Connection) -> None:
    """One checkpoint signer at a time (transaction-scoped advisory lock)."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", CHECKPOINT_LOCK)


async def head(conn: asyncpg.Connection) -> Head:
    row = await conn.fetchrow(
        "SELECT r.position, r.recorded_at,"
        " coalesce((SELECT max(cut_size) FROM retention_cuts), 0) AS cut"
        " FROM (SELECT 1) AS one LEFT JOIN LATERAL"
        " (SELECT position, recorded_at FROM records ORDER BY position DESC LIMIT 1) AS r ON true"
    )
    assert row is not None
    if row["position"] is None:
        return Head(row["cut"], None)
    return Head(max(row["position"] + 1, row["cut"]), row["recorded_at"])


async def ensure_partition(conn: asyncpg.Connection, ts: datetime) -> tuple[datetime, datetime]:
    row = await conn.fetchrow(
        "SELECT lower_bound, upper_bound FROM ensure_record_partition($1)", ts
    )
    assert row is not None
    return row["lower_bound"], row["upper_bound"]


async def insert_records(
    conn: asyncpg.Connection, rows: Sequence[tuple[str, bytes, datetime, datetime]]
) -> None:
    await conn.execute(
        "INSERT INTO records (content, leaf_hash, recorded_at, occurred_at)"
        " SELECT * FROM unnest($1::text[], $2::bytea[], $3::timestamptz[], $4::timestamptz[])",
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
        [r[3] for r in rows],
    )


async def stream_leaves(
    conn: asyncpg.Connection, start: int, stop: int | None = None, chunk: int = 20000
) -> AsyncIterator[list[Any]]:
    """``(position, content bytes, stored leaf hash)`` in position order, in chunks.

    Keyset pages rather than a cursor, so no portal stays open (retention drops a
    partition in the same transaction). The next page is requested before the
    current one is handed out: Postgres reads it while the caller hashes.
    Duplicated positions are found by :func:`duplicate_position`, not here."""
    sql = (
        "SELECT position, convert_to(content, 'UTF8'), leaf_hash FROM records"
        f" WHERE position >= $1 AND position < $2 ORDER BY position LIMIT {int(chunk)}"
    )
    end = stop if stop is not None else 2**62
    pending: asyncio.Task[list[Any]] | None = asyncio.ensure_future(conn.fetch(sql, start, end))
    try:
        while pending is not None:
            rows = await pending
            pending = None
            if not rows:
                return
            if len(rows) == chunk:
                pending = asyncio.ensure_future(conn.fetch(sql, rows[-1][0] + 1, end))
            yield rows
    finally:
        if pending is not None:
            with contextlib.suppress(BaseException):
                await pending


async def duplicate_position(conn: asyncpg.Connection, start: int) -> int | None:
    """The first position held by more than one row (possible only by tampering:
    the primary key includes the partition key)."""
    pos: int | None = await conn.fetchval(
        "SELECT position FROM records WHERE position >= $1 GROUP BY position"
        " HAVING count(*) > 1 ORDER BY position LIMIT 1",
        start,
    )
    return pos


async def leaf_hashes(conn: asyncpg.Connection, start: int, stop: int) -> list[bytes]:
    rows = await conn.fetch(
        "SELECT leaf_hash FROM records WHERE position >= $1 AND position < $2 ORDER BY position",
        start,
        stop,
    )
    return [r[0] for r in rows]


def _checkpoint(row: asyncpg.Record) -> StoredCheckpoint:
    cp = Checkpoint(
        row["tree_size"], row["root_hash"], row["issued_at"], row["key_id"], row["signature"]
    )
    return StoredCheckpoint(cp, list(row["frontier"]))


async def checkpoints(conn: asyncpg.Connection) -> list[StoredCheckpoint]:
    rows = await conn.fetch("SELECT * FROM checkpoints ORDER BY tree_size")
    return [_checkpoint(r) for r in rows]


async def checkpoint_at(conn: asyncpg.Connection, tree_size: int) -> StoredCheckpoint | None:
    row = await conn.fetchrow("SELECT * FROM checkpoints WHERE tree_size = $1", tree_size)
    return _checkpoint(row) if row else None


async def latest_checkpoint(conn: asyncpg.Connection) -> StoredCheckpoint | None:
    row = await conn.fetchrow("SELECT * FROM checkpoints ORDER BY tree_size DESC LIMIT 1")
    return _checkpoint(row) if row else None


async def insert_checkpoint(
    conn: asyncpg.Connection, cp: Checkpoint, frontier: Sequence[bytes]
) -> None:
    await conn.execute(
        "INSERT INTO checkpoints (tree_size, root_hash, issued_at, key_id, signature, frontier)"
        " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tree_size) DO NOTHING",
        cp.tree_size,
        cp.root_hash,
        cp.issued_at,
        cp.key_id,
        cp.signature,
        list(frontier),
    )


async def latest_cut(conn: asyncpg.Connection) -> Cut:
    row = await conn.fetchrow(
        "SELECT cut_size, frontier FROM retention_cuts ORDER BY cut_size DESC LIMIT 1"
    )
    return Cut(row["cut_size"], list(row["frontier"])) if row else Cut(0, [])


async def record_at(conn: asyncpg.Connection, position: int) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT position, content, leaf_hash, tenant FROM records WHERE position = $1", position
    )


@dataclass(frozen=True)
class SearchFilter:
    tenant: str | None
    correlation_id: str | None = None
    actor: str | None = None
    resource: str | None = None
    action: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    after: tuple[datetime, int] | None = None  # cursor: (occurred_at, position)
    limit: int = 100


async def search(conn: asyncpg.Connection, f: SearchFilter) -> list[asyncpg.Record]:
    """Records matching ``f`` in time order (occurred_at, then log position)."""
    where, args = ["tenant IS NOT DISTINCT FROM $1"], [f.tenant]

    def add(cond: str, value: Any) -> None:
        args.append(value)
        where.append(cond.replace("?", f"${len(args)}"))

    for column, value in (
        ("correlation_id", f.correlation_id),
        ("actor_subject", f.actor),
        ("resource", f.resource),
        ("(content::jsonb ->> 'action')", f.action),
    ):
        if value is not None:
            add(f"{column} = ?", value)
    if f.since is not None:
        add("occurred_at >= ?", f.since)
    if f.until is not None:
        add("occurred_at < ?", f.until)
    if f.after is not None:
        args.append(f.after[0])
        args.append(f.after[1])
        where.append(f"(occurred_at, position) > (${len(args) - 1}, ${len(args)})")
    args.append(f.limit)
    sql = (
        "SELECT position, content, leaf_hash, occurred_at FROM records WHERE "
        + " AND ".join(where)
        + f" ORDER BY occurred_at, position LIMIT ${len(args)}"
    )
    return await conn.fetch(sql, *args)

"""asyncpg access to the ``audit`` schema: records, checkpoints, retention cuts."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from clearway.audit.cuts import RetentionCut
from clearway.audit.merkle import Subtree
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


SNAPSHOT_ID = re.compile(r"^[0-9A-F]+-[0-9A-F]+(-[0-9]+)?$")


async def begin_snapshot(conn: asyncpg.Connection) -> str:
    """Export the snapshot of ``conn``'s (repeatable-read) transaction for block readers,
    and keep partitions from being dropped under them (retention waits for the lock)."""
    await conn.execute("LOCK TABLE records IN ACCESS SHARE MODE")
    snap: str = await conn.fetchval("SELECT pg_export_snapshot()")
    return snap


async def log_end(conn: asyncpg.Connection) -> int | None:
    """One past the highest stored position (None: no records)."""
    top = await conn.fetchval("SELECT max(position) FROM records")
    return None if top is None else int(top) + 1


async def copy_block(conn: asyncpg.Connection, start: int, stop: int) -> bytes:
    """``(position, leaf_hash, content)`` of positions ``[start, stop)`` as one binary COPY
    (PostgreSQL binary copy format, in no particular order: the reader sorts if needed)."""
    parts: list[bytes] = []

    async def sink(data: bytes) -> None:
        parts.append(data)

    await conn.copy_from_query(
        "SELECT position, leaf_hash, content FROM records WHERE position >= $1 AND position < $2",
        start,
        stop,
        output=sink,
        format="binary",
    )
    return b"".join(parts)


async def copy_block_in_snapshot(
    conn: asyncpg.Connection, snapshot: str | None, start: int, stop: int
) -> bytes:
    """:func:`copy_block` in its own read-only transaction that imports ``snapshot``."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        if snapshot is not None:
            if not SNAPSHOT_ID.match(snapshot):
                raise ValueError("not a snapshot id")
            await conn.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
        return await copy_block(conn, start, stop)


async def leaf_hashes(conn: asyncpg.Connection, start: int, stop: int) -> list[bytes]:
    rows = await conn.fetch(
        "SELECT leaf_hash FROM records WHERE position >= $1 AND position < $2 ORDER BY position",
        start,
        stop,
    )
    return [r[0] for r in rows]


async def leaf_hashes_in(
    conn: asyncpg.Connection, spans: Sequence[tuple[int, int]]
) -> dict[int, bytes]:
    """Stored leaf hashes of the positions in the spans ``[a, b)`` (one query)."""
    if not spans:
        return {}
    rows = await conn.fetch(
        "SELECT r.position, r.leaf_hash FROM unnest($1::bigint[], $2::bigint[]) AS s(a, b)"
        " JOIN records r ON r.position >= s.a AND r.position < s.b",
        [a for a, _ in spans],
        [b for _, b in spans],
    )
    return {r[0]: r[1] for r in rows}


async def subtrees(
    conn: asyncpg.Connection, nodes: Sequence[tuple[int, int]]
) -> dict[tuple[int, int], bytes]:
    """Stored hashes of the perfect subtrees ``(start, size)`` asked for (one query)."""
    if not nodes:
        return {}
    levels = [n.bit_length() - 1 for _, n in nodes]
    rows = await conn.fetch(
        "SELECT t.level, t.idx, t.hash FROM unnest($1::smallint[], $2::bigint[]) AS q(level, idx)"
        " JOIN subtrees t ON t.level = q.level AND t.idx = q.idx",
        levels,
        [a >> lv for (a, _), lv in zip(nodes, levels, strict=True)],
    )
    return {(r[1] << r[0], 1 << r[0]): r[2] for r in rows}


async def insert_subtrees(conn: asyncpg.Connection, nodes: Sequence[Subtree]) -> None:
    """Keep perfect subtrees a checkpoint completed (recomputed from content)."""
    await conn.execute(
        "INSERT INTO subtrees (level, idx, hash)"
        " SELECT * FROM unnest($1::smallint[], $2::bigint[], $3::bytea[])"
        " ON CONFLICT (level, idx) DO NOTHING",
        [lv for lv, _, _ in nodes],
        [i for _, i, _ in nodes],
        [h for _, _, h in nodes],
    )


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


def _cut(row: asyncpg.Record) -> RetentionCut:
    return RetentionCut(
        size=row["cut_size"],
        frontier=list(row["frontier"]),
        checkpoint_size=row["anchor_size"],
        checkpoint_root=row["anchor_root"] or b"",
        partitions=tuple(row["partitions"] or (row["partition_name"],)),
        operator=row["operator"],
        reason=row["reason"],
        cut_at=row["cut_at"],
        key_id=row["key_id"] or "",
        signature=row["signature"] or b"",
    )


async def latest_cut(conn: asyncpg.Connection) -> RetentionCut | None:
    """The retention cut the remaining log starts from (None: nothing was ever cut)."""
    row = await conn.fetchrow("SELECT * FROM retention_cuts ORDER BY cut_size DESC LIMIT 1")
    return _cut(row) if row else None


async def retention_cuts(conn: asyncpg.Connection) -> list[RetentionCut]:
    rows = await conn.fetch("SELECT * FROM retention_cuts ORDER BY cut_size")
    return [_cut(r) for r in rows]


async def insert_cut(conn: asyncpg.Connection, cut: RetentionCut) -> None:
    await conn.execute(
        "INSERT INTO retention_cuts (cut_size, frontier, partition_name, anchor_size,"
        " anchor_root, partitions, operator, reason, cut_at, key_id, signature)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        cut.size,
        cut.frontier,
        cut.partitions[0],
        cut.checkpoint_size,
        cut.checkpoint_root,
        list(cut.partitions),
        cut.operator,
        cut.reason,
        cut.cut_at,
        cut.key_id,
        cut.signature,
    )


async def records_below(conn: asyncpg.Connection, size: int) -> int | None:
    """The lowest position of a record row below ``size`` (None: there is none)."""
    pos: int | None = await conn.fetchval(
        "SELECT position FROM records WHERE position < $1 ORDER BY position LIMIT 1", size
    )
    return pos


async def partition_dropped_record(
    conn: asyncpg.Connection, partition: str, since: int
) -> int | None:
    """Position of the ``audit.partition_dropped`` record naming ``partition`` at or
    after position ``since`` (None: there is none)."""
    pos: int | None = await conn.fetchval(
        "SELECT position FROM records WHERE resource = $1 AND position >= $2"
        " AND (content::jsonb ->> 'action') = 'audit.partition_dropped'"
        " ORDER BY position LIMIT 1",
        partition,
        since,
    )
    return pos


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
    trace_id: str | None = None
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
        # no column of its own (rare searches, within one tenant's records)
        ("(content::jsonb ->> 'trace_id')", f.trace_id),
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

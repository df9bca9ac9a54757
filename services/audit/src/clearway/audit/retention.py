"""Retention: drop whole expired partitions while the rest stays verifiable (docs/design.md §8, §9).

An operator's job, run as the database owner (``python -m clearway.audit.cli
retain``): the service role cannot drop tables. For the oldest partition whose
time range ended before the cut-off it

1. verifies the whole log and refuses to touch a log that does not verify;
2. makes sure a signed checkpoint covers every record of the partition;
3. keeps the compact range of ``[0, cut)`` (a few hashes) in ``retention_cuts``;
4. drops the partition, and appends a record saying who did it and why,
all in one transaction holding the append lock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from clearway.audit import store
from clearway.audit.domain import AuditEntry
from clearway.audit.handlers import (
    CheckpointOutbox,
    Clock,
    append_entries,
    take_checkpoint,
    utc_now,
)
from clearway.audit.merkle import Frontier
from clearway.audit.signing import Keyring
from clearway.audit.verification import verify_log
from clearway.shared.actor import Actor
from clearway.shared.db import ident

_BOUND = re.compile(r"FROM \('([^']+)'\) TO \('([^']+)'\)")


class RetentionRefused(Exception):
    """The log does not verify, or the partition is not the oldest: nothing is dropped."""


@dataclass(frozen=True)
class Partition:
    name: str
    lower: datetime
    upper: datetime


@dataclass(frozen=True)
class Dropped:
    partition: str
    cut_size: int
    anchor_size: int


async def partitions(conn: asyncpg.Connection) -> list[Partition]:
    rows = await conn.fetch(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bound"
        " FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'records'::regclass"
    )
    out = []
    for r in rows:
        m = _BOUND.search(r["bound"])
        if m:
            lo = await conn.fetchval("SELECT $1::text::timestamptz", m.group(1))
            hi = await conn.fetchval("SELECT $1::text::timestamptz", m.group(2))
            out.append(Partition(r["relname"], lo, hi))
    return sorted(out, key=lambda p: p.lower)


async def apply_retention(
    admin_dsn: str,
    keyring: Keyring,
    *,
    older_than: datetime,
    operator: str,
    reason: str,
    schema: str = store.SCHEMA,
    clock: Clock = utc_now,
    announce: CheckpointOutbox | None = None,
) -> list[Dropped]:
    """Drop every partition whose range ended at or before ``older_than``, oldest first."""
    conn = await asyncpg.connect(admin_dsn, server_settings={"search_path": ident(schema)})
    dropped: list[Dropped] = []
    try:
        for part in await partitions(conn):
            if part.upper > older_than:
                break
            dropped.append(await _drop(conn, keyring, part, operator, reason, clock, announce))
    finally:
        await conn.close()
    return dropped


async def _drop(
    conn: asyncpg.Connection,
    keyring: Keyring,
    part: Partition,
    operator: str,
    reason: str,
    clock: Clock,
    announce: CheckpointOutbox | None,
) -> Dropped:
    table = ident(part.name)
    async with conn.transaction():
        await store.lock_appends(conn)
        report = await verify_log(conn, keyring)
        if not report.ok:
            raise RetentionRefused(f"the log does not verify: {report.failure}")
        last = await conn.fetchval(f"SELECT max(position) FROM {table}")
        cut = await store.latest_cut(conn)
        size = cut.size if last is None else last + 1
        older = await conn.fetchval(
            "SELECT count(*) FROM records WHERE position < $1 AND recorded_at >= $2",
            size,
            part.upper,
        )
        if older:
            raise RetentionRefused(f"{part.name} is not a prefix of the log")
        anchor = await store.latest_checkpoint(conn)
        if anchor is None or anchor.checkpoint.tree_size < size:
            anchor_cp = await take_checkpoint(conn, keyring, clock, announce)
        else:
            anchor_cp = anchor.checkpoint
        frontier = Frontier(cut.size, cut.frontier)
        frontier.extend(await store.leaf_hashes(conn, cut.size, size))
        await conn.execute(
            "INSERT INTO retention_cuts (cut_size, frontier, partition_name, anchor_size,"
            " operator, reason) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            size,
            frontier.hashes,
            part.name,
            anchor_cp.tree_size,
            operator,
            reason,
        )
        await conn.execute(f"DROP TABLE {table}")
        now = clock().astimezone(UTC)
        await append_entries(
            conn,
            [
                AuditEntry(
                    source_event_id=f"retention:{part.name}",
                    event_type="audit.admin_action",
                    action="audit.partition_dropped",
                    resource=part.name,
                    source="/audit/retention",
                    outcome="success",
                    occurred_at=now,
                    actor=Actor(operator, None, ()),
                    reason=reason,
                    approver=None,
                    consent_id=None,
                    correlation_id=None,
                    trace_id=None,
                    tenant=None,
                )
            ],
            clock=clock,
        )
    return Dropped(part.name, size, anchor_cp.tree_size)

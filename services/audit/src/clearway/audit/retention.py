"""Retention: drop whole expired partitions while the rest stays verifiable (docs/design.md §8, §9).

An operator's job, run as the database owner (``python -m clearway.audit.cli
retain``): the service role cannot drop tables. For the oldest partition whose
time range ended before the cut-off it

1. verifies the whole log and refuses to touch a log that does not verify;
2. signs a checkpoint at exactly the cut's size (unless one exists);
3. keeps the compact range of ``[0, cut)`` (a few hashes) in ``retention_cuts`` as a
   cut signed with the audit key (:mod:`clearway.audit.cuts`);
4. drops the partition, and appends a record saying who did it and why,
all in one transaction holding the append lock. Verification later checks all of
it: the signature, the frontier against the checkpoint, no rows below the cut and
the ``audit.partition_dropped`` record.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from clearway.audit import store, store_retention
from clearway.audit.cuts import RetentionCut, sign_cut
from clearway.audit.domain import AuditEntry
from clearway.audit.handlers import (
    CheckpointOutbox,
    Clock,
    append_entries,
    extend_verified,
    keeping_subtrees,
    sign_frontier,
    utc_now,
)
from clearway.audit.merkle import Frontier
from clearway.audit.signing import Keyring
from clearway.audit.store_retention import Partition, partitions
from clearway.audit.verification import verify_log
from clearway.shared.actor import Actor
from clearway.shared.db import ident


class RetentionRefused(Exception):
    """The log does not verify, or the partition is not the oldest: nothing is dropped."""


@dataclass(frozen=True)
class Dropped:
    partition: str
    cut_size: int
    anchor_size: int


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
    async with conn.transaction():
        await store.lock_appends(conn)
        report = await verify_log(conn, keyring)
        if not report.ok:
            raise RetentionRefused(f"the log does not verify: {report.failure}")
        last = await store_retention.last_position(conn, part)
        cut = await store.latest_cut(conn)
        base = Frontier(cut.size, cut.frontier) if cut else Frontier()
        size = base.size if last is None else last + 1
        if await store_retention.recorded_since_before(conn, size, part.upper):
            raise RetentionRefused(f"{part.name} is not a prefix of the log")
        if last is not None:  # an empty partition leaves the log as it is: no cut
            await _cut(conn, keyring, base, size, part, operator, reason, clock, announce)
        await store_retention.drop_partition(conn, part)
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
    return Dropped(part.name, size, size)


async def _cut(
    conn: asyncpg.Connection,
    keyring: Keyring,
    base: Frontier,
    size: int,
    part: Partition,
    operator: str,
    reason: str,
    clock: Clock,
    announce: CheckpointOutbox | None,
) -> None:
    frontier = await extend_verified(conn, keeping_subtrees(base), size)
    # The cut derives from a signed checkpoint at exactly its size: its frontier
    # then reproduces a signed root, which is what verification checks.
    await store.lock_checkpoints(conn)
    anchor = await store.checkpoint_at(conn, size)
    if anchor is None:
        anchor_cp = await sign_frontier(conn, keyring, frontier, clock, announce)
    elif anchor.checkpoint.root_hash != frontier.root():
        raise RetentionRefused(f"the checkpoint at {size} does not match the records")
    else:
        anchor_cp = anchor.checkpoint
    signed = sign_cut(
        keyring,
        RetentionCut(
            size=size,
            frontier=frontier.hashes,
            checkpoint_size=size,
            checkpoint_root=anchor_cp.root_hash,
            partitions=(part.name,),
            operator=operator,
            reason=reason,
            cut_at=clock(),
        ),
    )
    await store.insert_cut(conn, signed)

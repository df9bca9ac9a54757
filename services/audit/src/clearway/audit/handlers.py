"""Use cases of the audit log: append records, sign checkpoints, prove inclusion."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from clearway.audit import store
from clearway.audit.domain import AuditEntry, canonical_leaf, rfc3339
from clearway.audit.merkle import (
    Frontier,
    RangeHasher,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
)
from clearway.audit.signing import Checkpoint, Keyring
from clearway.shared.event_writer import EventWriter

log = logging.getLogger(__name__)
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class LogCorrupted(Exception):
    """Stored records do not hash to what the log says; nothing gets signed over them."""

    def __init__(self, position: int, detail: str) -> None:
        super().__init__(f"position {position}: {detail}")
        self.position = position


class PartitionCache:
    """The time range of the partition the writer last ensured, to skip the DDL call."""

    def __init__(self) -> None:
        self.range: tuple[datetime, datetime] | None = None

    async def ensure(self, conn: asyncpg.Connection, ts: datetime) -> None:
        if self.range is None or not (self.range[0] <= ts < self.range[1]):
            self.range = await store.ensure_partition(conn, ts)


async def append_entries(
    conn: asyncpg.Connection,
    entries: Sequence[AuditEntry],
    *,
    clock: Clock = utc_now,
    partitions: PartitionCache | None = None,
) -> list[int]:
    """Append ``entries`` at the next dense positions; ``conn`` is in the caller's
    transaction (with its inbox rows), which holds the append lock until commit."""
    if not entries:
        return []
    await store.lock_appends(conn)
    h = await store.head(conn)
    # recorded_at never goes backwards, so time partitions hold contiguous positions
    # and dropping the oldest one cuts a prefix of the log.
    now = clock().astimezone(UTC)
    recorded_at = max(now, h.last_recorded_at) if h.last_recorded_at else now
    cache = partitions or PartitionCache()
    await cache.ensure(conn, recorded_at)
    stamp = rfc3339(recorded_at)
    rows = []
    for i, entry in enumerate(entries):
        content = canonical_leaf(entry, h.next_position + i, stamp)
        rows.append((content.decode(), leaf_hash(content), recorded_at, entry.occurred_at))
    try:
        await store.insert_records(conn, rows)
    except asyncpg.CheckViolationError as e:
        if "no partition" in str(e):
            # The partition was created in a transaction that rolled back: forget it,
            # the consumer's retry creates it again.
            cache.range = None
        raise
    return list(range(h.next_position, h.next_position + len(entries)))


async def base_frontier(conn: asyncpg.Connection, keyring: Keyring) -> Frontier:
    """Where the next checkpoint continues from: the latest checkpoint's compact
    range (checked against its signed root) or the retention cut's."""
    last = await store.latest_checkpoint(conn)
    cut = await store.latest_cut(conn)
    if last is None or last.checkpoint.tree_size < cut.size:
        return Frontier(cut.size, cut.frontier)
    f = Frontier(last.checkpoint.tree_size, last.frontier)
    if f.root() != last.checkpoint.root_hash or not keyring.verifies(last.checkpoint):
        raise LogCorrupted(last.checkpoint.tree_size, "latest checkpoint does not verify")
    return f


async def extend_verified(conn: asyncpg.Connection, frontier: Frontier, stop: int) -> Frontier:
    """Extend ``frontier`` to ``stop`` with leaf hashes recomputed from content."""
    expected = frontier.size
    async with contextlib.aclosing(store.stream_leaves(conn, frontier.size, stop)) as chunks:
        async for rows in chunks:
            if [r[0] for r in rows] != list(range(expected, expected + len(rows))):
                first = next(p for p, r in enumerate(rows) if r[0] != expected + p)
                raise LogCorrupted(expected + first, "record missing or out of order")
            leaves = [leaf_hash(r[1]) for r in rows]
            if leaves != [r[2] for r in rows]:
                first = next(p for p, r in enumerate(rows) if leaves[p] != r[2])
                raise LogCorrupted(expected + first, "content does not match its leaf hash")
            frontier.extend(leaves)
            expected += len(rows)
    if expected != stop:
        raise LogCorrupted(expected, "record missing")
    return frontier


CHECKPOINT_EVENT = "audit.checkpoint_signed"


@dataclass(frozen=True)
class CheckpointOutbox:
    """Where signed checkpoints are announced (``clearway.audit.events.v1``), so a
    copy of the latest signed head lives outside the audit database."""

    events: EventWriter

    async def add(self, conn: asyncpg.Connection, cp: Checkpoint) -> None:
        doc = cp.as_json()
        data = {
            "tree_size": cp.tree_size,
            "root_hash": doc["root_hash"],
            "issued_at": int(cp.issued_at.timestamp() * 1000 + 0.5),
            "key_id": cp.key_id,
            "signature": doc["signature"],
            "signed_note": doc["signed_note"],
        }
        # The log is the aggregate and its size the version: one announcement per head.
        await self.events.emit(
            conn,
            CHECKPOINT_EVENT,
            subject="audit_log",
            version=cp.tree_size,
            data=data,
            time=cp.issued_at,
        )


async def take_checkpoint(
    pool_or_conn: asyncpg.Pool | asyncpg.Connection,
    keyring: Keyring,
    clock: Clock = utc_now,
    announce: CheckpointOutbox | None = None,
) -> Checkpoint:
    """Sign the current tree head (returns the latest one when nothing was added)."""
    if isinstance(pool_or_conn, asyncpg.Pool):
        async with pool_or_conn.acquire() as conn:
            return await take_checkpoint(conn, keyring, clock, announce)
    conn = pool_or_conn
    if conn.is_in_transaction():  # e.g. the retention job's, which holds the append lock
        return await _take_checkpoint(conn, keyring, clock, announce)
    async with conn.transaction(isolation="repeatable_read"):
        return await _take_checkpoint(conn, keyring, clock, announce)


async def _take_checkpoint(
    conn: asyncpg.Connection, keyring: Keyring, clock: Clock, announce: CheckpointOutbox | None
) -> Checkpoint:
    await conn.execute("SELECT pg_advisory_xact_lock($1)", store.CHECKPOINT_LOCK)
    size = (await store.head(conn)).next_position
    last = await store.latest_checkpoint(conn)
    if last is not None and last.checkpoint.tree_size == size:
        return last.checkpoint
    frontier = await extend_verified(conn, await base_frontier(conn, keyring), size)
    cp = keyring.sign(size, frontier.root(), clock())
    await store.insert_checkpoint(conn, cp, frontier.hashes)
    if announce is not None:
        await announce.add(conn, cp)
    log.info("audit checkpoint signed: tree_size=%d key=%s", size, cp.key_id)
    return cp


@dataclass(frozen=True)
class InclusionProof:
    position: int
    leaf_hash: bytes
    path: list[bytes]
    checkpoint: Checkpoint


async def _range_hasher(conn: asyncpg.Connection, stop: int) -> RangeHasher:
    cut = await store.latest_cut(conn)
    leaves = await store.leaf_hashes(conn, cut.size, stop)
    known = {(s, n): h for s, n, h in Frontier(cut.size, cut.frontier).nodes()}
    return RangeHasher(leaves, cut.size, known)


async def prove_inclusion(
    conn: asyncpg.Connection, position: int, checkpoint: Checkpoint
) -> InclusionProof:
    """The audit path of ``position`` in the tree ``checkpoint`` signed."""
    mth = await _range_hasher(conn, checkpoint.tree_size)
    path = inclusion_proof(position, checkpoint.tree_size, mth)
    return InclusionProof(position, mth(position, position + 1), path, checkpoint)


async def prove_consistency(conn: asyncpg.Connection, first: int, second: int) -> list[bytes]:
    mth = await _range_hasher(conn, second)
    return consistency_proof(first, second, mth)

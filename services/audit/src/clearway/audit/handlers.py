"""Use cases of the audit log: append records, sign checkpoints, prove inclusion."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from clearway.audit import store
from clearway.audit.blocks import hash_block
from clearway.audit.cuts import cut_verifies
from clearway.audit.domain import AuditEntry, canonical_leaf, rfc3339
from clearway.audit.merkle import (
    Frontier,
    NodeHasher,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    proof_reads,
    ranges_asked,
    verify_consistency,
    verify_inclusion,
)
from clearway.audit.signing import Checkpoint, Keyring
from clearway.shared.event_writer import EventWriter

log = logging.getLogger(__name__)
#: Records read per query when a checkpoint hashes the records added since the last.
BLOCK = 1 << 15
#: Checkpoints keep every perfect subtree of at least 2**SUBTREE_LEVEL leaves they
#: complete, so a proof reads O(log n) of them plus fewer than that many leaf hashes.
SUBTREE_LEVEL = 8
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
    """Where the next checkpoint continues from: the latest checkpoint's compact range,
    checked against its signed root. A retention cut is trusted only when it is signed
    and a signed checkpoint covers it (retention signs one at the cut's size)."""
    last = await store.latest_checkpoint(conn)
    cut = await store.latest_cut(conn)
    if cut is not None and not cut_verifies(keyring, cut):
        raise LogCorrupted(cut.size, "retention cut is not signed by a trusted key")
    if last is None or (cut is not None and last.checkpoint.tree_size < cut.size):
        if cut is None:
            return Frontier()
        raise LogCorrupted(cut.size, "no signed checkpoint covers the retention cut")
    f = Frontier(last.checkpoint.tree_size, last.frontier)
    if f.root() != last.checkpoint.root_hash or not keyring.verifies(last.checkpoint):
        raise LogCorrupted(last.checkpoint.tree_size, "latest checkpoint does not verify")
    return f


async def extend_verified(conn: asyncpg.Connection, frontier: Frontier, stop: int) -> Frontier:
    """Extend ``frontier`` to ``stop`` with leaf hashes recomputed from content."""
    for a in range(frontier.size, stop, BLOCK):
        b = min(stop, a + BLOCK)
        r = hash_block(await store.copy_block(conn, a, b), a, b, want_leaves=True)
        if r.failure is not None:
            raise LogCorrupted(r.failure[0], r.failure[2])
        frontier.extend(r.leaves or [])
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
    await store.lock_checkpoints(conn)
    size = (await store.head(conn)).next_position
    last = await store.latest_checkpoint(conn)
    if last is not None and last.checkpoint.tree_size == size:
        return last.checkpoint
    frontier = keeping_subtrees(await base_frontier(conn, keyring))
    await extend_verified(conn, frontier, size)
    return await sign_frontier(conn, keyring, frontier, clock, announce)


def keeping_subtrees(frontier: Frontier) -> Frontier:
    """``frontier`` collecting the subtrees that :func:`sign_frontier` keeps for proofs."""
    return Frontier(frontier.size, frontier.hashes, sink=[], sink_level=SUBTREE_LEVEL)


async def sign_frontier(
    conn: asyncpg.Connection,
    keyring: Keyring,
    frontier: Frontier,
    clock: Clock = utc_now,
    announce: CheckpointOutbox | None = None,
) -> Checkpoint:
    """Sign the tree head of ``frontier`` (recomputed from content by the caller), keep
    it with its compact range and the subtrees the frontier collected (proofs are built
    from them), and announce it."""
    cp = keyring.sign(frontier.size, frontier.root(), clock())
    await store.insert_checkpoint(conn, cp, frontier.hashes)
    if frontier.sink:
        await store.insert_subtrees(conn, frontier.sink)
        frontier.sink.clear()
    if announce is not None:
        await announce.add(conn, cp)
    log.info("audit checkpoint signed: tree_size=%d key=%s", cp.tree_size, cp.key_id)
    return cp


@dataclass(frozen=True)
class InclusionProof:
    position: int
    leaf_hash: bytes
    path: list[bytes]
    checkpoint: Checkpoint


async def _node_hasher(
    conn: asyncpg.Connection, proof: Callable[[Callable[[int, int], bytes]], object]
) -> NodeHasher:
    """What ``proof`` needs, read in three queries whatever the log's size: the retention
    cut's compact range, the stored subtrees of ``2**SUBTREE_LEVEL`` leaves or more (kept
    by each checkpoint), and the leaf hashes of the few partial spans left."""
    cut = await store.latest_cut(conn)
    known = {(s, n): h for s, n, h in Frontier(cut.size, cut.frontier).nodes()} if cut else {}
    nodes, spans = proof_reads(ranges_asked(proof), 1 << SUBTREE_LEVEL, known)
    stored = await store.subtrees(conn, nodes)
    # A log older than stored subtrees (or a checkpoint that did not keep them) has gaps:
    # those are hashed from their leaf hashes, as before.
    spans += [(a, a + n) for a, n in nodes if (a, n) not in stored]
    leaves = await store.leaf_hashes_in(conn, spans)
    return NodeHasher({**known, **stored}, leaves)


async def prove_inclusion(
    conn: asyncpg.Connection, position: int, checkpoint: Checkpoint
) -> InclusionProof:
    """The audit path of ``position`` in the tree ``checkpoint`` signed, checked against
    its signed root before it is handed out (a wrong stored subtree cannot slip through)."""
    n = checkpoint.tree_size

    def proof(mth: Callable[[int, int], bytes]) -> list[bytes]:
        return [mth(position, position + 1), *inclusion_proof(position, n, mth)]

    leaf, *path = proof(await _node_hasher(conn, proof))
    if not verify_inclusion(position, n, leaf, path, checkpoint.root_hash):
        raise LogCorrupted(position, f"no inclusion proof reproduces the root at tree size {n}")
    return InclusionProof(position, leaf, path, checkpoint)


async def prove_consistency(
    conn: asyncpg.Connection, first: Checkpoint, second: Checkpoint
) -> list[bytes]:
    """RFC 9162 consistency proof between two signed checkpoints, checked before use."""
    m, n = first.tree_size, second.tree_size

    def proof(mth: Callable[[int, int], bytes]) -> list[bytes]:
        return consistency_proof(m, n, mth)

    path = proof(await _node_hasher(conn, proof))
    if not verify_consistency(m, n, first.root_hash, second.root_hash, path):
        raise LogCorrupted(m, f"no consistency proof links tree sizes {m} and {n}")
    return path


# Reads for the HTTP API: entrypoints go through these, never through the store.

SCHEMA = store.SCHEMA  # the Postgres schema the log lives in, for the CLI's own connection


class NotFound(Exception):
    """No such record for this tenant, or no such checkpoint."""


async def search_records(
    conn: asyncpg.Connection,
    tenant: str | None,
    filters: Mapping[str, str | datetime | None],
    *,
    after: tuple[Any, ...] | None,
    limit: int,
) -> list[asyncpg.Record]:
    """Records of ``tenant`` matching ``filters`` (correlation_id, actor, resource, action,
    trace_id, since, until) in ``(occurred_at, position)`` order, after a keyset position."""
    f = store.SearchFilter(
        tenant=tenant,
        **filters,  # type: ignore[arg-type]
        after=None if after is None else (after[0], after[1]),
        limit=limit,
    )
    return await store.search(conn, f)


async def get_record(conn: asyncpg.Connection, tenant: str | None, position: int) -> asyncpg.Record:
    """The record at ``position`` if it is the tenant's; ``NotFound`` otherwise."""
    row = await store.record_at(conn, position)
    if row is None or row["tenant"] != tenant:
        raise NotFound(f"No record at {position}.")
    return row


async def get_checkpoint(
    conn: asyncpg.Connection, tree_size: int | None = None
) -> store.StoredCheckpoint:
    """The signed checkpoint at ``tree_size``, or the latest; ``NotFound`` when there is none."""
    cp = await (
        store.checkpoint_at(conn, tree_size) if tree_size else store.latest_checkpoint(conn)
    )
    if cp is None:
        raise NotFound(
            f"No checkpoint at tree size {tree_size}." if tree_size else "No checkpoint yet."
        )
    return cp

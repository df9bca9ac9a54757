"""Verification of the audit log, full or incremental (docs/design.md §8).

In one repeatable-read snapshot: every checkpoint and retention cut must be signed
by a key of the keyring (never a key found in the database); the latest cut must
derive from the signed checkpoint at its own size (its frontier reproduces that
signed root), no record may lie below it, and an ``audit.partition_dropped``
record must name each partition it dropped. Then the records from the cut (or,
incrementally, from a checkpoint an earlier run verified) are read in blocks
(:mod:`clearway.audit.blocks`), every leaf hash is recomputed from content,
positions must be dense, and the tree rebuilt from the cut's compact range must
reproduce every signed root. Two checkpoints whose roots are both reproduced from
one leaf sequence are consistent by construction (RFC 9162 §2.1.4: the smaller
tree is a prefix). The first failure, in position order, is reported.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from clearway.audit import store
from clearway.audit.blocks import BlockReader, BlockResult
from clearway.audit.cuts import RetentionCut, cut_verifies
from clearway.audit.merkle import Frontier
from clearway.audit.signing import Checkpoint, Keyring

#: Records per block; a power of two so blocks fold into the tree as whole subtrees.
BLOCK = 1 << 15
Progress = Callable[[int, int], Awaitable[None]]


@dataclass(frozen=True)
class Failure:
    position: int
    kind: str
    detail: str

    def as_json(self) -> dict[str, Any]:
        return {"position": self.position, "kind": self.kind, "detail": self.detail}


@dataclass
class Report:
    ok: bool = True
    first_position: int = 0
    hashed_from: int = 0
    tree_size: int = 0
    records_checked: int = 0
    checkpoints_checked: int = 0
    cuts_checked: int = 0
    latest_checkpoint: int | None = None
    verified_size: int | None = None
    verified_root: bytes | None = None  # the root at verified_size (signed in the receipt)
    failure: Failure | None = None
    notes: list[str] = field(default_factory=list)

    def fail(self, position: int, kind: str, detail: str) -> Report:
        self.ok, self.failure = False, Failure(position, kind, detail)
        return self

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "first_position": self.first_position,
            "hashed_from": self.hashed_from,
            "tree_size": self.tree_size,
            "records_checked": self.records_checked,
            "checkpoints_checked": self.checkpoints_checked,
            "cuts_checked": self.cuts_checked,
            "latest_checkpoint": self.latest_checkpoint,
            "verified_size": self.verified_size,
            "unanchored_records": max(0, self.tree_size - (self.latest_checkpoint or 0)),
            "failure": self.failure.as_json() if self.failure else None,
            "notes": self.notes,
        }


async def verify_log(
    conn: asyncpg.Connection,
    keyring: Keyring,
    chunk: int = BLOCK,
    witness: Checkpoint | None = None,
    *,
    since: int | None = None,
    since_root: bytes | None = None,
    reader: BlockReader | None = None,
    progress: Progress | None = None,
) -> Report:
    """Verify the log on ``conn``.

    ``witness`` is a signed checkpoint kept outside the database (e.g. the last
    ``audit.checkpoint_signed`` event): a log cut back behind it, checkpoints and
    all, fails against it. ``since`` is the size of a signed checkpoint an earlier
    run reproduced (its signed receipt names the root, ``since_root``: the start is
    taken only when the signed checkpoint there has that root): records below it are
    not hashed again (an incremental run).
    ``reader`` reads blocks in a process pool; ``progress(done, total)`` is awaited
    after each block. Block size is ``chunk`` rounded down to a power of two."""
    block = 1 << max(0, chunk.bit_length() - 1)
    reader = reader or BlockReader()
    if conn.is_in_transaction():  # the retention job's, which reads inline
        start = (since, since_root)
        return await _verify(conn, keyring, block, witness, start, BlockReader(), None, progress)
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        snapshot = await store.begin_snapshot(conn) if reader.executor is not None else None
        start = (since, since_root)
        return await _verify(conn, keyring, block, witness, start, reader, snapshot, progress)


async def _verify(
    conn: asyncpg.Connection,
    keyring: Keyring,
    block: int,
    witness: Checkpoint | None,
    start_at: tuple[int | None, bytes | None],
    reader: BlockReader,
    snapshot: str | None,
    progress: Progress | None,
) -> Report:
    report = Report()
    cuts = await store.retention_cuts(conn)
    cut = cuts[-1] if cuts else None
    cps = await store.checkpoints(conn)
    if witness is not None:
        cps = sorted(
            [*cps, store.StoredCheckpoint(witness, [])], key=lambda c: c.checkpoint.tree_size
        )
    base = cut.size if cut else 0
    report.first_position = base
    for stored in cps:
        if not keyring.verifies(stored.checkpoint):
            return report.fail(
                min(stored.checkpoint.tree_size, base),
                "bad-signature",
                f"checkpoint at tree size {stored.checkpoint.tree_size} is not signed by a"
                f" trusted key ({stored.checkpoint.key_id})",
            )
        report.checkpoints_checked += 1
    report.latest_checkpoint = cps[-1].checkpoint.tree_size if cps else None
    for c in cuts:
        if not cut_verifies(keyring, c):
            return report.fail(
                c.size,
                "forged-cut",
                f"retention cut at size {c.size} is not signed by a trusted key"
                f" ({c.key_id or 'no signature'})",
            )
        report.cuts_checked += 1
    if cut is not None and (bad := await _check_cut(conn, cut, cps)) is not None:
        return report.fail(bad.position, bad.kind, bad.detail)

    frontier = Frontier(base, cut.frontier if cut else [])
    since, since_root = start_at
    if since is not None and since > base:
        for c in cps:
            if c.checkpoint.tree_size == since and c.frontier:
                if since_root is not None and since_root != c.checkpoint.root_hash:
                    report.notes.append(f"receipt at size {since} disagrees: full run")
                    break
                with contextlib.suppress(ValueError):
                    f = Frontier(since, c.frontier)
                    if f.root() == c.checkpoint.root_hash:
                        frontier = f
                break
    start = report.hashed_from = report.verified_size = frontier.size
    report.verified_root = frontier.root() if frontier.size else None
    end = await store.log_end(conn) or start
    if end < start:
        return report.fail(end, "missing", f"records from position {end} are missing")
    pending = deque(c for c in cps if c.checkpoint.tree_size >= start)

    def check(f: Frontier) -> Failure | None:
        while pending and pending[0].checkpoint.tree_size == f.size:
            nxt = pending.popleft()
            if f.root() != nxt.checkpoint.root_hash:
                return _locate(f, nxt)
            report.verified_size, report.verified_root = f.size, nxt.checkpoint.root_hash
        return None

    if (bad := check(frontier)) is not None:
        return report.fail(bad.position, bad.kind, bad.detail)
    sizes = [c.checkpoint.tree_size for c in pending]
    blocks = _read_blocks(conn, reader, snapshot, start, end, block, sizes)
    async with contextlib.aclosing(blocks) as results:
        bad = await _fold(results, frontier, sizes, check, report, progress, end - start)
    if bad is not None:
        return report.fail(bad.position, bad.kind, bad.detail)
    report.tree_size = end
    if pending:
        return report.fail(
            end,
            "missing",
            f"records from position {end} are missing: checkpoint covers"
            f" {pending[0].checkpoint.tree_size}",
        )
    return report


async def _fold(
    results: Any,
    frontier: Frontier,
    sizes: Sequence[int],
    check: Callable[[Frontier], Failure | None],
    report: Report,
    progress: Progress | None,
    total: int,
) -> Failure | None:
    """Fold block results into ``frontier``, checking each signed root on the way."""
    async for r in results:
        if r.failure is not None:
            return Failure(*r.failure)
        if r.leaves is not None:
            i = 0
            for size in [s for s in sizes if r.start < s < r.stop]:
                frontier.extend(r.leaves[i : size - r.start])
                i = size - r.start
                if (bad := check(frontier)) is not None:
                    return bad
            frontier.extend(r.leaves[i:])
        else:
            for size, hashes in r.inner.items():
                partial = frontier.copy()
                _push(partial, size - r.start, hashes)
                if (bad := check(partial)) is not None:
                    return bad
            _push(frontier, r.stop - r.start, r.compact)
        if (bad := check(frontier)) is not None:
            return bad
        report.records_checked += r.stop - r.start
        if progress is not None:
            await progress(report.records_checked, total)
    return None


async def _check_cut(
    conn: asyncpg.Connection, cut: RetentionCut, cps: Sequence[store.StoredCheckpoint]
) -> Failure | None:
    """What a signed cut claims must also hold in the log (signatures checked before)."""
    where = f"retention cut at size {cut.size}"
    anchor = next((c for c in cps if c.checkpoint.tree_size == cut.size and c.frontier), None)
    if cut.checkpoint_size != cut.size or anchor is None:
        return Failure(cut.size, "unanchored-cut", f"{where}: no signed checkpoint at its size")
    try:
        root = Frontier(cut.size, cut.frontier).root()
    except ValueError:
        root = b""
    if root != anchor.checkpoint.root_hash or cut.checkpoint_root != root:
        return Failure(
            cut.size,
            "forged-cut",
            f"{where}: its frontier does not match the signed checkpoint at that size",
        )
    if (below := await store.records_below(conn, cut.size)) is not None:
        return Failure(
            below, "records-below-cut", f"record at position {below} lies below the {where}"
        )
    for part in cut.partitions:
        if await store.partition_dropped_record(conn, part, cut.size) is None:
            return Failure(
                cut.size,
                "unrecorded-cut",
                f"{where}: no audit.partition_dropped record for {part}",
            )
    return None


async def _read_blocks(
    conn: asyncpg.Connection,
    reader: BlockReader,
    snapshot: str | None,
    start: int,
    end: int,
    block: int,
    sizes: Sequence[int],
) -> Any:
    """Block results in position order, up to ``reader.parallel`` blocks in flight."""
    ranges = iter(_ranges(start, end, block))
    inflight: deque[asyncio.Future[BlockResult]] = deque()

    def submit() -> None:
        for a, b in ranges:
            inner = [s for s in sizes if a < s < b]
            aligned = a % block == 0
            inflight.append(
                asyncio.ensure_future(reader.read(conn, snapshot, a, b, inner, not aligned))
            )
            break

    try:
        for _ in range(reader.parallel):
            submit()
        while inflight:
            r = await inflight.popleft()
            submit()
            yield r
    finally:
        for fut in inflight:
            fut.cancel()
        if inflight:
            # Wait for them without taking their outcome (asyncio.wait does not raise
            # theirs, and does not swallow a cancellation of this task either).
            await asyncio.wait(inflight)


def _ranges(start: int, end: int, block: int) -> Iterator[tuple[int, int]]:
    a = start
    while a < end:
        b = min(end, (a // block + 1) * block)
        yield a, b
        a = b


def _push(frontier: Frontier, n: int, hashes: list[bytes]) -> None:
    """Append the compact range of ``n`` leaves starting at ``frontier.size``."""
    levels = [b for b in range(n.bit_length() - 1, -1, -1) if n >> b & 1]
    for level, h in zip(levels, hashes, strict=True):
        frontier.push(level, h)


def _locate(computed: Frontier, stored: store.StoredCheckpoint) -> Failure:
    """Leaf hashes were rewritten consistently: narrow the damage down to the first
    perfect subtree whose hash differs from the checkpoint's compact range."""
    size = stored.checkpoint.tree_size
    try:
        signed = Frontier(size, stored.frontier)
    except ValueError:
        signed = None
    if signed is not None and signed.root() == stored.checkpoint.root_hash:
        for (start, n, h), (_, _, s) in zip(computed.nodes(), signed.nodes(), strict=False):
            if h != s:
                return Failure(
                    start,
                    "root-mismatch",
                    f"checkpoint at tree size {size} does not match: the first difference"
                    f" lies in positions [{start}, {start + n})",
                )
    return Failure(0, "root-mismatch", f"checkpoint at tree size {size} does not match the records")

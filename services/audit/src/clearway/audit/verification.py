"""Full verification of the audit log (docs/design.md §8).

Recomputes every remaining record's leaf hash from its content, checks that
positions are dense, rebuilds the tree from the retention cut's compact range
and compares it with every signed checkpoint (whose signatures are checked
against the keyring, never against keys found in the database). Two
checkpoints whose roots are both reproduced from one leaf sequence are
consistent by construction (RFC 9162 §2.1.4: the smaller tree is a prefix).
The first failure, in position order, is reported with its position.
"""

from __future__ import annotations

import contextlib
import itertools
from dataclasses import dataclass, field
from hashlib import sha256
from typing import Any

import asyncpg

from clearway.audit import store
from clearway.audit.merkle import Frontier
from clearway.audit.signing import Checkpoint, Keyring

_LEAF = b"\x00"


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
    tree_size: int = 0
    records_checked: int = 0
    checkpoints_checked: int = 0
    latest_checkpoint: int | None = None
    failure: Failure | None = None
    notes: list[str] = field(default_factory=list)

    def fail(self, position: int, kind: str, detail: str) -> Report:
        self.ok, self.failure = False, Failure(position, kind, detail)
        return self

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "first_position": self.first_position,
            "tree_size": self.tree_size,
            "records_checked": self.records_checked,
            "checkpoints_checked": self.checkpoints_checked,
            "latest_checkpoint": self.latest_checkpoint,
            "unanchored_records": max(0, self.tree_size - (self.latest_checkpoint or 0)),
            "failure": self.failure.as_json() if self.failure else None,
            "notes": self.notes,
        }


async def verify_log(
    conn: asyncpg.Connection,
    keyring: Keyring,
    chunk: int = 50000,
    witness: Checkpoint | None = None,
) -> Report:
    """Verify the whole log on ``conn`` (in one repeatable-read snapshot).

    ``witness`` is a signed checkpoint kept outside the database (e.g. the last
    ``audit.checkpoint_signed`` event): a log cut back behind it, checkpoints
    and all, fails against it."""
    if conn.is_in_transaction():
        return await _verify(conn, keyring, chunk, witness)
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        return await _verify(conn, keyring, chunk, witness)


async def _verify(
    conn: asyncpg.Connection, keyring: Keyring, chunk: int, witness: Checkpoint | None
) -> Report:
    report = Report()
    cut = await store.latest_cut(conn)
    report.first_position = cut.size
    cps = await store.checkpoints(conn)
    if witness is not None:
        cps = sorted(
            [*cps, store.StoredCheckpoint(witness, [])], key=lambda c: c.checkpoint.tree_size
        )
    for stored in cps:
        if not keyring.verifies(stored.checkpoint):
            return report.fail(
                min(stored.checkpoint.tree_size, cut.size),
                "bad-signature",
                f"checkpoint at tree size {stored.checkpoint.tree_size} is not signed by a"
                f" trusted key ({stored.checkpoint.key_id})",
            )
        report.checkpoints_checked += 1
    report.latest_checkpoint = cps[-1].checkpoint.tree_size if cps else None
    pending = [c for c in cps if c.checkpoint.tree_size >= cut.size]
    if cut.size and not pending:
        return report.fail(cut.size, "unanchored-cut", "no checkpoint covers the retention cut")
    frontier = Frontier(cut.size, cut.frontier)
    expected = cut.size
    pending_iter = iter(pending)
    nxt = next(pending_iter, None)

    def check_roots() -> Failure | None:
        nonlocal nxt
        while nxt is not None and nxt.checkpoint.tree_size == frontier.size:
            if frontier.root() != nxt.checkpoint.root_hash:
                return _locate(frontier, nxt)
            nxt = next(pending_iter, None)
        return None

    if (bad := check_roots()) is not None:
        return report.fail(bad.position, bad.kind, bad.detail)
    duplicate = await store.duplicate_position(conn, cut.size)
    async with contextlib.aclosing(store.stream_leaves(conn, cut.size, chunk=chunk)) as chunks:
        async for rows in chunks:
            positions = [r[0] for r in rows]
            if positions != list(range(expected, expected + len(rows))):
                return report.fail(*_gap(positions, expected))
            if duplicate is not None and duplicate < expected + len(rows):
                return report.fail(duplicate, "duplicated", f"position {duplicate} appears twice")
            computed = [sha256(_LEAF + r[1]).digest() for r in rows]
            stored_hashes = [r[2] for r in rows]
            if computed != stored_hashes:
                i = next(
                    i
                    for i, (a, b) in enumerate(zip(computed, stored_hashes, strict=True))
                    if a != b
                )
                return report.fail(
                    expected + i, "altered", "record content does not match its leaf hash"
                )
            i = 0
            while i < len(computed):
                stop = len(computed)
                if nxt is not None:
                    stop = min(stop, i + nxt.checkpoint.tree_size - frontier.size)
                frontier.extend(computed[i:stop])
                i = stop
                if (bad := check_roots()) is not None:
                    return report.fail(bad.position, bad.kind, bad.detail)
            expected += len(rows)
            report.records_checked += len(rows)
    report.tree_size = expected
    if nxt is not None:
        return report.fail(
            expected,
            "missing",
            f"records from position {expected} are missing: checkpoint covers"
            f" {nxt.checkpoint.tree_size}",
        )
    return report


def _gap(positions: list[int], expected: int) -> tuple[int, str, str]:
    for pos, want in zip(positions, itertools.count(expected)):
        if pos > want:
            return want, "missing", f"record at position {want} is missing"
        if pos < want:
            return pos, "reordered", f"position {pos} appears twice or out of order"
    return expected + len(positions), "missing", "positions are not dense"


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

"""Verification in blocks: read a range of records as binary COPY, recompute the leaves,
fold them into their compact range (docs/design.md §8, ADR 0015).

A block is ``[start, stop)`` with ``start`` a multiple of the block size (a power
of two), except the first block of a run; so the compact range of a block is a
list of perfect subtrees that the caller pushes straight onto its frontier.
Blocks are independent, so a few reader threads read and hash several at once:
each keeps its own libpq connection and imports the run's exported snapshot, so
every block sees the same log. The per-record work (row parse, leaf hash,
comparison, node hashes) runs in one compiled call per block
(:func:`clearway.audit_native.hash_block`, ADR 0041): ``hashlib``'s fixed cost per
call was most of it. The pure-Python path below gives the same results (a test
compares both), and is the one that names a failure: the compiled loop only says
that the block deviates. Threads, not processes: the COPY is received by libpq
(:mod:`clearway.audit.store_copy`) and hashed by the compiled loop, both with the
GIL released (ADR 0050); asyncpg receiving it, as the inline path does, would hold it.
"""

from __future__ import annotations

import asyncio
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from hashlib import sha256
from typing import Any

import asyncpg

from clearway.audit import store, store_copy
from clearway.audit.merkle import Frontier
from clearway.audit_native import Checked, Connection, PgError
from clearway.audit_native import hash_block as native_hash_block

# Binary COPY (PostgreSQL "COPY ... (FORMAT binary)"): 11-byte signature, int32 flags,
# int32 header extension length; then per row an int16 field count and per field an
# int32 length and the bytes; an int16 -1 ends the data.
_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
# field count, len 8, position, len 32, leaf hash, content length
_ROW = struct.Struct(">hiqi32si")
_LEAF = sha256(b"\x00")  # RFC 6962 leaf prefix, copied per record


@dataclass
class BlockResult:
    start: int
    stop: int
    failure: tuple[int, str, str] | None = None
    compact: list[bytes] = field(default_factory=list)  # compact range of [start, stop)
    inner: dict[int, list[bytes]] = field(default_factory=dict)  # size -> range [start, size)
    leaves: list[bytes] | None = None


def hash_block(
    buf: bytes | memoryview,
    start: int,
    stop: int,
    inner: Sequence[int] = (),
    want_leaves: bool = False,
    *,
    native: bool = True,
) -> BlockResult:
    """Check one block read by :func:`clearway.audit.store.copy_block`: positions dense,
    each stored leaf hash reproduced from content; then its compact range (and that of
    ``[start, size)`` for each ``size`` in ``inner``). ``native=False`` takes the
    pure-Python path all the way (same result, slower)."""
    sizes = sorted(set(inner))
    fast = None
    if native and buf[:11] == _SIGNATURE:
        o = 19 + int.from_bytes(buf[15:19], "big")
        fast = native_hash_block(buf, o, start, stop, sizes)
    return block_result(buf, start, stop, sizes, want_leaves, fast, examined=native)


def block_result(
    buf: bytes | memoryview,
    start: int,
    stop: int,
    sizes: Sequence[int],
    want_leaves: bool,
    fast: Checked,
    *,
    examined: bool = True,
) -> BlockResult:
    """The result of a block the compiled loop examined: ``fast`` is what it returned
    (:func:`clearway.audit_native.hash_block`, or the libpq reader that checks rows as
    they arrive), for ``sizes`` sorted without repeats; None: the data deviates, and
    the pure-Python path names how. ``examined=False``: pure Python all the way."""
    out = BlockResult(start, stop)
    if fast is not None:
        concatenated, out.compact, ranges = fast
        if want_leaves:
            out.compact = []
            out.leaves = [concatenated[i : i + 32] for i in range(0, len(concatenated), 32)]
        else:
            out.inner = dict(zip(sizes, ranges, strict=True))
        return out
    if buf[:11] != _SIGNATURE:
        out.failure = (start, "unreadable", "not PostgreSQL binary COPY data")
        return out
    o = 19 + int.from_bytes(buf[15:19], "big")
    # the compiled loop found a deviation: examine and name it below
    leaves = None if examined else _in_order(buf, o, start, stop)
    if leaves is None:
        leaves = _checked(buf, o, start, stop, out)
        if leaves is None:
            return out
    if want_leaves:
        out.leaves = leaves
        return out
    f, done = Frontier(), 0
    for size in sizes:
        f.extend(leaves[done : size - start])
        done = size - start
        out.inner[size] = f.hashes
    f.extend(leaves[done:])
    out.compact = f.hashes
    return out


def _in_order(buf: bytes | memoryview, o: int, start: int, stop: int) -> list[bytes] | None:
    """The fast path: rows arrive in position order (heap order of append-only
    partitions) and every stored leaf hash is reproduced; the leaves, or None at the
    first deviation, which :func:`_checked` then examines and names. Each row costs one
    unpack, one hash over a memoryview slice and one comparison: no per-row lists."""
    end = len(buf) - 2
    unpack, mv, copy = _ROW.unpack_from, memoryview(buf), _LEAF.copy
    leaves: list[bytes] = []
    append, expect = leaves.append, start
    while o + 54 <= end:  # a shorter remainder is left for the end check
        nf, l1, pos, l2, h, n = unpack(buf, o)
        if pos != expect or nf != 3 or l1 != 8 or l2 != 32 or n < 0:
            return None
        o += 54
        c = copy()
        c.update(mv[o : o + n])
        o += n
        d = c.digest()
        if d != h:
            return None
        append(d)
        expect += 1
    return leaves if expect == stop and o == end and buf[end:] == b"\xff\xff" else None


def _checked(
    buf: bytes | memoryview, o: int, start: int, stop: int, out: BlockResult
) -> list[bytes] | None:
    """Any order: sort by position, then name the first gap, duplicate or altered
    record in ``out.failure`` (None), or return the leaves in position order."""
    end = len(buf) - 2
    unpack, mv = _ROW.unpack_from, memoryview(buf)
    positions: list[int] = []
    stored: list[bytes] = []
    leaves: list[bytes] = []
    copy = _LEAF.copy
    while o < end:
        if o + 54 > end:
            out.failure = (start, "unreadable", "unexpected row layout")
            return None
        nf, l1, pos, l2, h, n = unpack(buf, o)
        if nf != 3 or l1 != 8 or l2 != 32 or n < 0 or o + 54 + n > end:
            out.failure = (start, "unreadable", "unexpected row layout")
            return None
        o += 54
        c = copy()
        c.update(mv[o : o + n])
        o += n
        leaves.append(c.digest())
        stored.append(h)
        positions.append(pos)
    if o != end or buf[end:] != b"\xff\xff":  # the int16 -1 trailer, and nothing after it
        out.failure = (start, "unreadable", "binary COPY data does not end where expected")
        return None
    expected = list(range(start, stop))
    if positions != expected:
        order = sorted(range(len(positions)), key=positions.__getitem__)
        positions = [positions[i] for i in order]
        leaves, stored = [leaves[i] for i in order], [stored[i] for i in order]
        if positions != expected:
            out.failure = _gap(positions, start, stop)
            return None
    if leaves != stored:
        i = next(i for i, (a, b) in enumerate(zip(leaves, stored, strict=True)) if a != b)
        out.failure = (start + i, "altered", "record content does not match its leaf hash")
        return None
    return leaves


def _gap(positions: list[int], start: int, stop: int) -> tuple[int, str, str]:
    want = start
    for pos in positions:
        if pos > want:
            return want, "missing", f"record at position {want} is missing"
        if pos < want:
            return pos, "duplicated", f"position {pos} appears twice"
        want += 1
    return want, "missing", f"record at position {want} is missing"


# Reader threads: one libpq connection per thread, reused across blocks and runs.
_local = threading.local()


def _connection(dsn: str, schema: str) -> tuple[Connection, bool]:
    """This thread's connection for ``dsn``, and whether it was opened just now."""
    held = getattr(_local, "held", None)
    if held is not None and held[0] == (dsn, schema) and held[1].ok:
        return held[1], False
    _drop()  # the login rotated, or the connection broke: one connection at a time
    conn = store_copy.open_reader(dsn, schema)
    _local.held = ((dsn, schema), conn)
    return conn, True


def _drop() -> None:
    held = getattr(_local, "held", None)
    _local.held = None
    if held is not None:
        held[1].close()


def read_block(
    dsn: str,
    schema: str,
    snapshot: str | None,
    start: int,
    stop: int,
    inner: Sequence[int],
    want_leaves: bool,
) -> BlockResult:
    """Reader-thread entry point: receive ``[start, stop)`` of ``snapshot`` through
    libpq, its rows checked as they arrive, with the GIL released (ADR 0050). A kept connection that
    turns out dead (the server restarted, an idle timeout, dropped mid-stream) is
    replaced once and the block read again in the same snapshot; a fresh one that
    fails raises :class:`clearway.audit_native.PgError`."""
    sizes = sorted(set(inner))
    conn, fresh = _connection(dsn, schema)
    try:
        buf, fast = store_copy.copy_block(conn, snapshot, start, stop, sizes)
    except PgError:
        if conn.ok:  # the server refused the query: not a connection problem
            raise
        _drop()
        if fresh:
            raise
        conn, _ = _connection(dsn, schema)
        buf, fast = store_copy.copy_block(conn, snapshot, start, stop, sizes)
    data = b"" if buf is None else memoryview(buf)  # None: checked, nothing to name
    return block_result(data, start, stop, sizes, want_leaves, fast)


class BlockReader:
    """Where a verification run's blocks are read and hashed: inline on the run's own
    connection, or by a pool of reader threads (``executor``, a ThreadPoolExecutor)
    that connect with ``dsn`` through libpq."""

    def __init__(
        self, executor: Any = None, dsn: str | None = None, schema: str = "audit", workers: int = 1
    ) -> None:
        self.executor, self.dsn, self.schema = executor, dsn, schema
        #: blocks in flight at once: two per thread, so none waits between blocks
        self.parallel = 1 if executor is None else 2 * workers

    async def read(
        self,
        conn: asyncpg.Connection,
        snapshot: str | None,
        start: int,
        stop: int,
        inner: Sequence[int],
        want_leaves: bool,
    ) -> BlockResult:
        if self.executor is None or snapshot is None or self.dsn is None:
            buf = await store.copy_block(conn, start, stop)
            return hash_block(buf, start, stop, inner, want_leaves)
        return await asyncio.get_running_loop().run_in_executor(
            self.executor,
            read_block,
            self.dsn,
            self.schema,
            snapshot,
            start,
            stop,
            list(inner),
            want_leaves,
        )

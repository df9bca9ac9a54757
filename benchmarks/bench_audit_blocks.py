"""Where a verified record's CPU goes, block by block (docs/audit.md, ADR 0041).

    uv run python -m benchmarks.bench_audit_blocks [--records N]

CPU time per record (best of several passes; ``time.process_time`` for this process,
``/proc/<pid>/stat`` for the Postgres backend, so it holds on a loaded host where
wall time does not):
- plain SHA-256 over the same bytes in a Python loop (bench_audit's baseline);
- the block check through the compiled loop and through the pure-Python path;
- reading blocks as binary COPY from a table of N records of the bench's size
  (position, leaf hash, ~489 bytes of content): the backend producing it, asyncpg
  receiving it, and libpq receiving it with the rows checked as they arrive (the
  reader threads' path, ADR 0050: receive and block check together).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import struct
import time
from hashlib import sha256

import asyncpg

from benchmarks.bench_audit import drop_database
from benchmarks.common import emit, fresh_database, stack
from clearway.audit import store, store_copy
from clearway.audit.blocks import hash_block

BLOCK = 1 << 15


def synthetic_block(n: int) -> tuple[bytes, list[bytes]]:
    """A binary COPY block of ``n`` records of ~489 bytes, and their contents."""
    out, blobs = [b"PGCOPY\n\xff\r\n\x00", struct.pack(">ii", 0, 0)], []
    for p in range(n):
        content = (b'{"seq":%d,"pad":"' % p + os.urandom(240).hex().encode())[:487] + b'"}'
        blobs.append(content)
        leaf = sha256(b"\x00" + content).digest()
        out.append(struct.pack(">hiqi", 3, 8, p, 32) + leaf + struct.pack(">i", len(content)))
        out.append(content)
    out.append(b"\xff\xff")
    return b"".join(out), blobs


def cpu_per_record(fn, n: int, passes: int) -> float:
    best = float("inf")
    for _ in range(passes):
        t = time.process_time()
        fn()
        best = min(best, time.process_time() - t)
    return best / n * 1e6


def backend_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def copy_costs(n: int) -> tuple[float, float, float]:
    """(backend, asyncpg receive, libpq receive and check) CPU µs per record reading
    ``n`` records in blocks, best pass."""
    with stack() as (db, _):
        url = await fresh_database(db)
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(
                "CREATE TABLE records (content text, leaf_hash bytea, position bigint"
                " GENERATED ALWAYS AS (((content::jsonb) ->> 'seq')::bigint) STORED,"
                " PRIMARY KEY (position))"
            )
            await conn.execute(
                "INSERT INTO records (content, leaf_hash) SELECT c, sha256('\\x00'::bytea"
                " || convert_to(c, 'UTF8')) FROM (SELECT '{\"seq\":' || g || ',\"pad\":\"'"
                " || left(repeat(md5(g::text), 16), 468) || '\"}' AS c"
                " FROM generate_series(0, $1 - 1) g) s",
                n,
            )
            await conn.execute("VACUUM ANALYZE records")
            pid, best = conn.get_server_pid(), (float("inf"), float("inf"))
            for _ in range(3):
                server = client = 0.0
                for start in range(0, n, BLOCK):
                    b0, c0 = backend_cpu(pid), time.process_time()
                    await store.copy_block(conn, start, min(n, start + BLOCK))
                    server += backend_cpu(pid) - b0
                    client += time.process_time() - c0
                best = min(best, (server / n * 1e6, client / n * 1e6))
            reader, libpq = store_copy.open_reader(url, "public"), float("inf")
            try:
                for _ in range(3):
                    c0 = time.process_time()
                    for start in range(0, n, BLOCK):
                        stop = min(n, start + BLOCK)
                        _, checked = store_copy.copy_block(reader, None, start, stop)
                        assert checked is not None
                    libpq = min(libpq, (time.process_time() - c0) / n * 1e6)
            finally:
                reader.close()
            return (*best, libpq)
        finally:
            await conn.close()
            await drop_database(db, url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=200_000, help="records read as COPY")
    args = parser.parse_args()
    buf, blobs = synthetic_block(BLOCK)

    def baseline() -> None:
        for b in blobs:
            sha256(b).digest()

    base_us = cpu_per_record(baseline, BLOCK, 9)
    print(f"plain SHA-256 loop:        {base_us:.3f} µs/record")
    native = cpu_per_record(lambda: hash_block(buf, 0, BLOCK), BLOCK, 9)
    print(f"block check, compiled:     {native:.3f} µs/record (leaf, compare, nodes)")
    pure = cpu_per_record(lambda: hash_block(buf, 0, BLOCK, native=False), BLOCK, 3)
    print(f"block check, pure Python:  {pure:.3f} µs/record")
    server, client, libpq = asyncio.run(copy_costs(args.records))
    print(f"binary COPY, Postgres:     {server:.3f} µs/record")
    print(f"binary COPY, asyncpg:      {client:.3f} µs/record")
    print(f"binary COPY, libpq + check: {libpq:.3f} µs/record (received and checked in C)")
    emit(
        "audit_blocks",
        {
            "sha256_us": base_us,
            "block_native_us": native,
            "block_python_us": pure,
            "copy_postgres_us": server,
            "copy_asyncpg_us": client,
            "copy_libpq_checked_us": libpq,
        },
    )


if __name__ == "__main__":
    main()

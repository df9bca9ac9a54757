"""The libpq COPY reader of verification runs (``clearway.audit.store_copy``, ADR 0050):
the DSN maps to libpq keywords without leaking the password, it receives exactly the
bytes asyncpg receives, a stream cut short or dropped mid-way is an error and never a
shorter block, a dead kept connection is replaced, wrong credentials say so."""

from __future__ import annotations

import asyncio
import random
import shutil
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from hashlib import sha256
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest

from clearway.audit import store, store_copy
from clearway.audit.blocks import BlockReader, block_result, hash_block, read_block
from clearway.audit.verification import verify_log
from clearway.audit_native import PgError
from clearway.shared.db import service_dsn
from clearway.shared.testing.fixtures import _localstack

from .test_audit_tamper_evidence import as_superuser

SECRET = "pa:ss/w@rd%?&"


def _block_sql(start: int, stop: int) -> str:
    return (
        "COPY (SELECT position, leaf_hash, content FROM records"
        f" WHERE position >= {start} AND position < {stop}) TO STDOUT (FORMAT binary)"
    )


def test_a_dsn_maps_to_libpq_keywords():
    dsn = (
        "postgresql://clearway_audit_a:pa%3Ass%2Fw%40rd%25%3F%26@db.example:6432/clear%20way"
        "?sslmode=verify-full&sslrootcert=/etc/ca.pem&connect_timeout=5"
    )
    assert store_copy.libpq_params(dsn, "audit") == {
        "user": "clearway_audit_a",
        "password": SECRET,
        "host": "db.example",
        "port": "6432",
        "dbname": "clear way",
        "sslmode": "verify-full",
        "sslrootcert": "/etc/ca.pem",
        "connect_timeout": "5",
        "options": "-c search_path=audit",
        "application_name": "clearway-audit-verification",
    }
    several = store_copy.libpq_params("postgres://u@h1:1,[::1]:2,h3/db", "audit")
    assert (several["host"], several["port"], "password" in several) == ("h1,::1,h3", "1,2,", False)
    assert "user" not in store_copy.libpq_params("postgresql:///db?host=/run/pg", "audit")


@pytest.mark.parametrize(
    "dsn, schema",
    [
        ("mysql://u:x@h/db", "audit"),
        ("postgresql://u:x@h/db", "audit; DROP"),
        (f"postgresql://u:x@h/db?server_settings={SECRET}", "audit"),
    ],
)
def test_what_libpq_would_read_differently_is_refused_without_the_secret(dsn, schema):
    with pytest.raises(ValueError) as refused:
        store_copy.libpq_params(dsn, schema)
    assert SECRET not in str(refused.value) and "x@" not in str(refused.value)


async def _log_of_random_sizes(log, n: int, seed: int) -> None:
    """``n`` records of reasons 0 to 3,000 characters (some TOASTed), a few then altered
    as a superuser could (their stored leaf hashes no longer match)."""
    rng = random.Random(seed)
    for start in range(0, n, 10):
        await log.append(min(10, n - start), start=start, reason="r" * rng.randrange(3000))
    for pos in rng.sample(range(n), 3):
        await as_superuser(
            log.admin,
            "UPDATE records SET content = replace(content, 'user_alice', 'user_eve')"
            " WHERE position = $1",
            pos,
        )


async def test_libpq_receives_the_bytes_asyncpg_receives_and_both_paths_agree(audit_log):
    await _log_of_random_sizes(audit_log, 300, seed=4)
    conn = store_copy.open_reader(audit_log.settings.service_dsn, "audit")
    try:
        async with audit_log.pool.acquire() as pooled:
            for start, stop in ((0, 300), (0, 1), (7, 200), (256, 300), (300, 300)):
                want = await store.copy_block(pooled, start, stop)
                sizes = [s for s in (100, 150) if start < s < stop]
                sql = _block_sql(start, stop)
                got = conn.copy_out(sql, store_copy.COPY_LIMIT)
                assert bytes(memoryview(got)) == want and len(got) == len(want)
                # rows checked as they arrived == the compiled loop == the pure path
                data, checked = store_copy.copy_block(conn, None, start, stop, sizes)
                assert (data is None) == (checked is not None)  # bytes only to name a fault
                r = block_result(memoryview(data or b""), start, stop, sizes, False, checked)
                assert r == hash_block(want, start, stop, sizes)
                assert r == hash_block(want, start, stop, sizes, native=False)
                assert checked is None or r.failure is None  # None: also rows out of order
        kept = conn.copy_out(_block_sql(0, 50), store_copy.COPY_LIMIT)  # a freed block's
        for _ in range(3):  # memory is reused: one still held keeps its own
            conn.copy_hash(_block_sql(50, 300), store_copy.COPY_LIMIT, 50, 300, [])
            conn.copy_out(_block_sql(50, 300), store_copy.COPY_LIMIT)
        async with audit_log.pool.acquire() as pooled:
            assert bytes(memoryview(kept)) == await store.copy_block(pooled, 0, 50)
    finally:
        conn.close()
        conn.close()  # idempotent
    with pytest.raises(PgError, match="closed"):
        store_copy.copy_block(conn, None, 0, 1)


def _hostile_copy(rng: random.Random, n: int) -> tuple[str, int]:
    """A COPY whose rows Postgres sends as given: dense and valid, or damaged the ways
    a writer of the database could (gaps, repeats, swaps, altered content, wrong hash
    or its length, NULL content, another column type or count); and its row count."""
    rows = []
    for p in range(n):
        content = "".join(rng.choice('ab{}":, é') for _ in range(rng.randrange(0, 700)))
        rows.append([p, sha256(b"\x00" + content.encode()).digest(), content])
    damage = rng.choice(["none", "none", "gap", "repeat", "swap", "alter", "hash", "short", "null"])
    if n and damage != "none":
        k = rng.randrange(n)
        if damage == "gap":
            rows[k][0] += 1
        elif damage == "repeat":
            rows[k][0] = max(0, k - 1)
        elif damage == "swap" and n > 1:
            j = (k + 1) % n
            rows[k][0], rows[j][0] = rows[j][0], rows[k][0]
        elif damage == "alter":
            rows[k][2] += "!"
        elif damage == "hash":
            rows[k][1] = bytes(32)
        elif damage == "short":
            rows[k][1] = rows[k][1][:31]
        elif damage == "null":
            rows[k][2] = None
    shape = rng.choice(["p, h, c", "p, h, c", "p, h, c", "p::int, h, c", "p, h, c, 1", "p, h"])

    def text(c: str | None) -> str:
        return "NULL" if c is None else "'" + c.replace("'", "''") + "'"

    values = ", ".join(f"({p}, '\\x{h.hex()}'::bytea, {text(c)})" for p, h, c in rows)
    source = f"(VALUES {values}) AS v(p, h, c)" if rows else "(SELECT 1 WHERE false) AS v"
    if not rows:
        shape = "1::bigint, ''::bytea, ''::text"
    return f"COPY (SELECT {shape} FROM {source}) TO STDOUT (FORMAT binary)", n


async def test_rows_checked_as_they_arrive_agree_with_both_paths_on_hostile_streams(audit_log):
    rng = random.Random(50)
    conn = store_copy.open_reader(audit_log.settings.service_dsn, "audit")
    try:
        for _ in range(120):
            n = rng.choice((0, 1, 2, 3, 7, 8, 33, 64))
            sql, n = _hostile_copy(rng, n)
            sizes = sorted(rng.sample(range(1, n), min(2, max(0, n - 1)))) if n > 1 else []
            data = bytes(memoryview(conn.copy_out(sql, store_copy.COPY_LIMIT)))
            for stop in (n, n + 1):  # the right count, and one the data cannot meet
                checked = conn.copy_hash(sql, store_copy.COPY_LIMIT, 0, stop, sizes)
                got = data if checked is None else b""
                r = block_result(memoryview(got), 0, stop, sizes, False, checked)
                assert r == hash_block(data, 0, stop, sizes), sql[:200]
                assert r == hash_block(data, 0, stop, sizes, native=False), sql[:200]
        with pytest.raises(ValueError):  # no allocation beyond what the limit could hold
            conn.copy_hash("COPY (SELECT 1) TO STDOUT", 1 << 10, 0, 1 << 40, [])
    finally:
        conn.close()


async def test_a_stream_cut_short_or_too_long_is_an_error_not_a_shorter_block(audit_log):
    conn = store_copy.open_reader(audit_log.settings.service_dsn, "audit")
    try:
        # the backend terminates itself after ~20,000 rows: FATAL mid-stream
        with pytest.raises(PgError, match=r"COPY failed: .*terminat"):
            conn.copy_out(
                "COPY (SELECT g, repeat('x', 500), CASE WHEN g = 20000 THEN"
                " pg_terminate_backend(pg_backend_pid()) END"
                " FROM generate_series(1, 200000) g) TO STDOUT (FORMAT binary)",
                store_copy.COPY_LIMIT,
            )
        assert not conn.ok
    finally:
        conn.close()
    conn = store_copy.open_reader(audit_log.settings.service_dsn, "audit")
    try:
        sql = "COPY (SELECT repeat('x', 1000) FROM generate_series(1, 100)) TO STDOUT"
        with pytest.raises(PgError, match="more than 4096 bytes"):
            conn.copy_out(sql, 4096)
        assert conn.ok and len(conn.copy_out(sql, 1 << 20)) == 100 * 1001  # still usable
        with pytest.raises(PgError, match=r"query failed: .*syntax"):
            conn.execute("SELEC 1")
        with pytest.raises(PgError, match=r"COPY failed: .*does not exist"):
            conn.copy_out("COPY nowhere TO STDOUT", 4096)
    finally:
        conn.close()


async def test_a_dead_kept_connection_is_replaced_and_the_block_read_again(audit_log):
    await audit_log.append(40)
    dsn = audit_log.settings.service_dsn
    with ThreadPoolExecutor(1) as thread:
        first = thread.submit(read_block, dsn, "audit", None, 0, 40, [], False).result()
        killed = await audit_log.admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = 'clearway-audit-verification' AND datname = $1",
            urlsplit(dsn).path.lstrip("/"),
        )
        assert killed == 1
        again = thread.submit(read_block, dsn, "audit", None, 0, 40, [], False).result()
    assert first == again and first.failure is None


HBA = """\
local all all trust
host all postgres 127.0.0.1/32 trust
host all all 127.0.0.1/32 scram-sha-256
"""


@pytest.fixture(scope="module")
def scram_pg() -> Iterator[str]:
    """A private Postgres that checks passwords (the shared one trusts loopback)."""
    ls = _localstack()
    base = Path(tempfile.mkdtemp(prefix="clearway-copy-scram-"))
    port = ls.free_port()
    try:
        ls.start_postgres(base, port, tuned_for_tests=True)
        (base / "pg" / "data" / "pg_hba.conf").write_text(HBA)
        admin = f"postgresql://postgres@127.0.0.1:{port}/clearway"

        async def setup() -> None:
            conn = await asyncpg.connect(admin)
            try:
                await conn.execute("SELECT pg_reload_conf()")
                await conn.execute(f"CREATE ROLE reader LOGIN PASSWORD '{SECRET}'")
            finally:
                await conn.close()

        asyncio.run(setup())
        yield admin
    finally:
        ls.stop_postgres(base)
        shutil.rmtree(base, ignore_errors=True)


def test_a_rotated_login_dsn_connects_and_wrong_credentials_say_so_without_the_password(
    scram_pg,
):
    right = service_dsn(scram_pg, "audit", SECRET, login="reader")  # as rotated logins do
    conn = store_copy.open_reader(right, "audit")
    try:
        assert conn.ok and len(conn.copy_out("COPY (SELECT 1) TO STDOUT", 64)) == 2
    finally:
        conn.close()
    wrong = service_dsn(scram_pg, "audit", "Wr0ngS3cret", login="reader")
    with ThreadPoolExecutor(1) as thread, pytest.raises(PgError) as refused:
        thread.submit(read_block, wrong, "audit", None, 0, 1, [], False).result()
    message = str(refused.value)
    assert "password authentication failed" in message and "reader" in message, message
    assert "Wr0ngS3cret" not in message and SECRET not in message


async def test_reader_threads_verify_with_checkpoints_inside_blocks(audit_log):
    await audit_log.append(100)
    await audit_log.checkpoint()
    await audit_log.append(29, start=100)
    await audit_log.checkpoint()
    reader = BlockReader(ThreadPoolExecutor(3), audit_log.settings.service_dsn, "audit", 3)
    try:
        async with audit_log.pool.acquire() as conn:
            for chunk in (8, 64, 1024):
                report = await verify_log(conn, audit_log.keyring, chunk=chunk, reader=reader)
                assert report.ok and report.records_checked == 129, report.as_json()
                assert report.checkpoints_checked == 2
    finally:
        reader.executor.shutdown()

"""Nobody, not even a superuser, changes the past without verification naming where."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import asyncpg
import pytest

from clearway.audit.blocks import BlockReader
from clearway.audit.domain import canonical
from clearway.audit.verification import verify_log

pytestmark = pytest.mark.integration


async def verify(log):
    """Verify inline (asyncpg) and with reader threads (libpq, ADR 0050): the same report."""
    async with log.pool.acquire() as conn:
        inline = await verify_log(conn, log.keyring, chunk=7)
    with ThreadPoolExecutor(2) as threads:
        reader = BlockReader(threads, log.settings.service_dsn, "audit", 2)
        async with log.pool.acquire() as conn:
            pooled = await verify_log(conn, log.keyring, chunk=7, reader=reader)
    assert pooled.as_json() == inline.as_json()
    return inline


async def as_superuser(admin: asyncpg.Connection, sql: str, *args) -> None:
    """Bypass the append-only trigger the way a superuser could."""
    async with admin.transaction():
        await admin.execute("SET LOCAL session_replication_role = replica")
        await admin.execute(sql, *args)


async def test_an_untouched_log_verifies_against_every_checkpoint(audit_log):
    await audit_log.append(10)
    await audit_log.checkpoint()
    await audit_log.append(15, start=10)
    cp = await audit_log.checkpoint()
    await audit_log.append(3, start=25)
    report = await verify(audit_log)
    assert report.ok, report.failure
    assert (report.tree_size, report.records_checked, report.checkpoints_checked) == (28, 28, 2)
    assert cp.tree_size == 25 and report.as_json()["unanchored_records"] == 3


async def test_the_service_role_may_only_insert_and_select(audit_log):
    await audit_log.append(2)
    async with audit_log.pool.acquire() as conn:
        for sql in (
            "UPDATE records SET occurred_at = now()",
            "DELETE FROM records",
            "UPDATE checkpoints SET tree_size = 0",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
                await conn.execute(sql)


async def test_a_trigger_refuses_update_delete_and_truncate_even_for_the_owner(audit_log):
    await audit_log.append(2)
    await audit_log.checkpoint()
    for sql in (
        "UPDATE records SET occurred_at = now()",
        "DELETE FROM records WHERE position = 0",
        "TRUNCATE records",
        "DELETE FROM checkpoints",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await audit_log.admin.execute(sql)
    assert await audit_log.admin.fetchval("SELECT count(*) FROM records") == 2


async def test_altering_one_records_content_as_superuser_is_detected_at_its_position(audit_log):
    await audit_log.append(20)
    await audit_log.checkpoint()
    await as_superuser(
        audit_log.admin,
        "UPDATE records SET content = replace(content, 'user_alice', 'user_mallory')"
        " WHERE position = 13",
    )
    report = await verify(audit_log)
    assert not report.ok
    assert (report.failure.position, report.failure.kind) == (13, "altered")


async def test_deleting_one_record_is_detected_at_its_position(audit_log):
    await audit_log.append(20)
    await audit_log.checkpoint()
    await as_superuser(audit_log.admin, "DELETE FROM records WHERE position = 6")
    report = await verify(audit_log)
    assert (report.ok, report.failure.position, report.failure.kind) == (False, 6, "missing")


async def test_deleting_the_newest_records_is_detected_by_the_checkpoint(audit_log):
    await audit_log.append(20)
    await audit_log.checkpoint()
    await as_superuser(audit_log.admin, "DELETE FROM records WHERE position >= 18")
    report = await verify(audit_log)
    assert (report.ok, report.failure.position, report.failure.kind) == (False, 18, "missing")


async def test_swapping_two_records_is_detected_at_the_first_of_them(audit_log):
    await audit_log.append(20)
    await audit_log.checkpoint()
    # Records 4 and 9 trade places: each row takes the other's content (a row's
    # position is generated from its content), the leaf hashes stay where they were.
    get = "SELECT content, occurred_at FROM records WHERE position = $1"
    a, b = await audit_log.admin.fetchrow(get, 4), await audit_log.admin.fetchrow(get, 9)
    move = "UPDATE records SET content = $1, occurred_at = $2 WHERE position = $3"
    parked = json.loads(a["content"])
    parked["seq"] = -1
    await as_superuser(audit_log.admin, move, canonical(parked).decode(), a["occurred_at"], 4)
    await as_superuser(audit_log.admin, move, a["content"], a["occurred_at"], 9)
    await as_superuser(audit_log.admin, move, b["content"], b["occurred_at"], -1)
    assert await audit_log.admin.fetchval("SELECT count(*) FROM records") == 20
    report = await verify(audit_log)
    assert (report.ok, report.failure.position, report.failure.kind) == (False, 4, "altered")


async def test_rewriting_records_with_fresh_leaf_hashes_is_caught_by_the_signed_root(audit_log):
    await audit_log.append(20)
    await audit_log.checkpoint()
    # A careful attacker renumbers two records and recomputes their leaf hashes.
    rows = await audit_log.admin.fetch(
        "SELECT position, content FROM records WHERE position IN (16, 17) ORDER BY position"
    )
    from clearway.audit.merkle import leaf_hash

    def renumbered(content: str, seq: int) -> tuple[str, bytes]:
        doc = json.loads(content)
        doc["seq"] = seq
        raw = canonical(doc)
        return raw.decode(), leaf_hash(raw)

    rewrite = "UPDATE records SET content = $1, leaf_hash = $2 WHERE position = $3"
    first, second = rows[0]["content"], rows[1]["content"]
    await as_superuser(audit_log.admin, rewrite, *renumbered(first, -1), 16)
    await as_superuser(audit_log.admin, rewrite, *renumbered(second, 16), 17)
    await as_superuser(audit_log.admin, rewrite, *renumbered(first, 17), -1)
    report = await verify(audit_log)
    assert not report.ok and report.failure.kind == "root-mismatch"
    assert report.failure.position == 16  # the compact range narrows it to [16, 20)
    assert "[16, 20)" in report.failure.detail


async def test_a_forged_checkpoint_is_refused(audit_log):
    await audit_log.append(5)
    await audit_log.checkpoint()
    await audit_log.admin.execute(
        "INSERT INTO checkpoints SELECT tree_size + 1, root_hash, issued_at, key_id, signature,"
        " frontier FROM checkpoints"
    )
    report = await verify(audit_log)
    assert not report.ok and report.failure.kind == "bad-signature"


async def test_no_checkpoint_is_signed_over_a_tampered_log(audit_log):
    from clearway.audit.handlers import LogCorrupted

    await audit_log.append(5)
    await as_superuser(
        audit_log.admin, "UPDATE records SET content = content || ' ' WHERE position = 2"
    )
    with pytest.raises(LogCorrupted) as err:
        await audit_log.checkpoint()
    assert err.value.position == 2


async def test_the_cli_verifies_and_exits_non_zero_naming_the_position(audit_log, tmp_path):
    await audit_log.append(8)
    audit_log.keyring.provider.save(tmp_path / "audit-checkpoint.sig.json")
    env = {
        **os.environ,
        "CLEARWAY_DATABASE_URL": audit_log.settings.platform.database_url,
        "CLEARWAY_AUDIT_KEY_PROVIDER": "keyring",
        "CLEARWAY_AUDIT_KEYRING_DIR": str(tmp_path),
    }

    async def cli(*args: str) -> subprocess.CompletedProcess:
        return await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "clearway.audit.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    done = await cli("checkpoint")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["tree_size"] == 8
    witness = tmp_path / "cp.json"
    witness.write_text(done.stdout)
    ok = await cli("verify", "--witness", str(witness))
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["ok"] is True
    assert "verifying [" in ok.stderr and "100.0%" in ok.stderr  # the progress bar
    await as_superuser(audit_log.admin, "DELETE FROM records WHERE position = 3")
    bad = await cli("verify")
    assert bad.returncode == 1
    assert "FAILED at position 3" in bad.stderr


async def test_cutting_the_log_back_with_its_checkpoints_fails_against_a_kept_witness(audit_log):
    await audit_log.append(10)
    await audit_log.checkpoint()
    await audit_log.append(10, start=10)
    witness = await audit_log.checkpoint()  # published on Kafka, kept by a regulator
    await as_superuser(audit_log.admin, "DELETE FROM records WHERE position >= 12")
    await as_superuser(audit_log.admin, "DELETE FROM checkpoints WHERE tree_size > 10")
    assert (await verify(audit_log)).ok  # the database alone cannot tell
    async with audit_log.pool.acquire() as conn:
        report = await verify_log(conn, audit_log.keyring, witness=witness)
    assert (report.ok, report.failure.position, report.failure.kind) == (False, 12, "missing")

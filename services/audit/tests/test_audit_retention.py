"""Retention drops whole expired partitions; what remains still verifies."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import pytest

from clearway.audit import handlers, store
from clearway.audit.cuts import RetentionCut, sign_cut
from clearway.audit.merkle import Frontier, Pruned, verify_inclusion
from clearway.audit.retention import RetentionRefused, apply_retention, partitions
from clearway.audit.verification import verify_log

from .test_audit_tamper_evidence import as_superuser

pytestmark = pytest.mark.integration


async def three_months_of_records(log) -> None:
    for month, n, start in ((8, 10, 0), (9, 10, 10), (11, 5, 20)):
        log.clock.now = datetime(2026, month, 15, tzinfo=UTC)
        await log.append(n, start=start)
        await log.checkpoint()


async def verify(log):
    async with log.pool.acquire() as conn:
        return await verify_log(conn, log.keyring, chunk=4)


async def test_records_land_in_monthly_partitions(audit_log):
    await three_months_of_records(audit_log)
    names = [p.name for p in await partitions(audit_log.admin)]
    assert {"records_20260801t00", "records_20260901t00", "records_20261101t00"} <= set(names)
    in_august = await audit_log.admin.fetchval("SELECT count(*) FROM records_20260801t00")
    assert in_august == 10


async def test_dropping_expired_partitions_keeps_the_rest_verifiable(audit_log):
    log = audit_log
    await three_months_of_records(log)
    dropped = await apply_retention(
        log.settings.platform.database_url,
        log.keyring,
        older_than=datetime(2026, 10, 1, tzinfo=UTC),
        operator="ops_kim",
        reason="retention schedule: 60 days",
        clock=log.clock,
    )
    assert [(d.partition, d.cut_size) for d in dropped] == [
        ("records_20260801t00", 10),
        ("records_20260901t00", 20),
    ]
    assert await log.admin.fetchval("SELECT min(position) FROM records") == 20
    report = await verify(log)
    assert report.ok, report.failure
    assert (report.first_position, report.tree_size) == (20, 27)  # + 2 retention records
    # The operator's action is itself on the record.
    docs = await log.admin.fetch(
        "SELECT content::jsonb AS d FROM records"
        " WHERE content::jsonb ->> 'action' = 'audit.partition_dropped'"
    )
    assert {r["d"]["actor"]["subject"] for r in docs} == {"ops_kim"}
    assert {r["d"]["reason"] for r in docs} == {"retention schedule: 60 days"}

    # New checkpoints continue from the kept compact range, proofs still work.
    cp = await log.checkpoint()
    assert cp.tree_size == 27
    async with log.pool.acquire() as conn:
        proof = await handlers.prove_inclusion(conn, 23, cp)
        assert verify_inclusion(23, 27, proof.leaf_hash, proof.path, cp.root_hash)
        with pytest.raises(Pruned):
            await handlers.prove_inclusion(conn, 4, cp)
    assert (await verify(log)).ok

    # Tampering with what remains is still caught.
    await as_superuser(log.admin, "DELETE FROM records WHERE position = 21")
    bad = await verify(log)
    assert (bad.ok, bad.failure.position) == (False, 21)


async def test_retention_refuses_to_drop_anything_from_a_log_that_does_not_verify(audit_log):
    log = audit_log
    await three_months_of_records(log)
    await as_superuser(log.admin, "UPDATE records SET content = content || ' ' WHERE position = 3")
    with pytest.raises(RetentionRefused, match="position=3"):
        await apply_retention(
            log.settings.platform.database_url,
            log.keyring,
            older_than=datetime(2026, 10, 1, tzinfo=UTC),
            operator="ops_kim",
            reason="schedule",
            clock=log.clock,
        )
    assert await log.admin.fetchval("SELECT count(*) FROM records_20260801t00") == 10


def cut_of(log, size: int, frontier: list[bytes], partition: str, sign: bool) -> RetentionCut:
    try:
        root = Frontier(size, frontier).root()
    except ValueError:
        root = b"\x00" * 32
    cut = RetentionCut(
        size=size,
        frontier=frontier,
        checkpoint_size=size,
        checkpoint_root=root,
        partitions=(partition,),
        operator="ops_kim",
        reason="retention schedule",
        cut_at=log.clock(),
    )
    return sign_cut(log.keyring, cut) if sign else cut


async def forge_cut(log, size: int, frontier: list[bytes], partition: str, sign=False) -> None:
    """Insert a retention cut the way someone with the owner's rights could; ``sign``
    with the real audit key too (a stolen key, or a signer bug): what the signature
    does not catch, the cut's other checks must."""
    await store.insert_cut(log.admin, cut_of(log, size, frontier, partition, sign))


async def zero_hashes(log) -> tuple[int, str]:
    await forge_cut(log, 20, [b"\x00" * 32] * 2, "records_20260901t00")
    return 20, "forged-cut"


async def a_checkpoints_frontier_at_another_size(log) -> tuple[int, str]:
    # The compact range signed at 20 ([0,16) and [16,20)), passed off as the one of
    # 24 (same number of hashes): would hide 20..23 and claim [16,24) is [16,20).
    signed = await store.checkpoint_at(log.admin, 20)
    await forge_cut(log, 24, signed.frontier, "records_20260901t00")
    return 24, "forged-cut"


async def a_frontier_over_rewritten_records(log) -> tuple[int, str]:
    # Rewrite position 12 (content and leaf hash, consistently), then cut the log
    # above it with the compact range of what is now below: the kept cut at 10
    # extended with the rewritten leaves.
    await as_superuser(
        log.admin,
        "UPDATE records SET content = replace(content, 'user_alice', 'user_mallory'),"
        " leaf_hash = sha256('\\x00'::bytea"
        " || convert_to(replace(content, 'user_alice', 'user_mallory'), 'UTF8'))"
        " WHERE position = 12",
    )
    kept = await store.latest_cut(log.admin)
    frontier = Frontier(kept.size, kept.frontier)
    frontier.extend(await store.leaf_hashes(log.admin, kept.size, 20))
    await forge_cut(log, 20, frontier.hashes, "records_20260901t00")
    return 20, "forged-cut"


async def a_cut_past_the_last_checkpoint(log) -> tuple[int, str]:
    # A correct compact range over every record, 25 (the partition_dropped record)
    # included, which no signed checkpoint covers; no partition was dropped either.
    kept = await store.latest_cut(log.admin)
    frontier = Frontier(kept.size, kept.frontier)
    frontier.extend(await store.leaf_hashes(log.admin, kept.size, 26))
    await forge_cut(log, 26, frontier.hashes, "records_20261101t00")
    return 26, "forged-cut"


async def a_copied_checkpoint_over_altered_records(log) -> tuple[int, str]:
    # The realistic forgery: a cut copying a real checkpoint's size and stored
    # frontier, and records below it altered. Without signed cuts verification
    # started at 20, never read 10..19, and the frontier reproduced every signed root.
    signed = await store.checkpoint_at(log.admin, 20)
    await as_superuser(
        log.admin,
        "UPDATE records SET content = replace(content, 'user_alice', 'user_mallory')"
        " WHERE position = 14",
    )
    await forge_cut(log, 20, signed.frontier, "records_20260901t00")
    return 20, "forged-cut"


async def signed_copy_with_the_records_still_there(log) -> tuple[int, str]:
    signed = await store.checkpoint_at(log.admin, 20)
    await forge_cut(log, 20, signed.frontier, "records_20260901t00", sign=True)
    return 10, "records-below-cut"


async def signed_copy_with_the_records_deleted(log) -> tuple[int, str]:
    # Even a superuser with the key who also deletes the rows below the cut is caught:
    # the partition was never dropped, so the log holds no partition_dropped record.
    signed = await store.checkpoint_at(log.admin, 20)
    await as_superuser(log.admin, "DELETE FROM records WHERE position < 20")
    await forge_cut(log, 20, signed.frontier, "records_20260901t00", sign=True)
    return 20, "unrecorded-cut"


async def signed_frontier_of_another_size(log) -> tuple[int, str]:
    signed = await store.checkpoint_at(log.admin, 20)
    await forge_cut(log, 24, signed.frontier, "records_20260901t00", sign=True)
    return 24, "unanchored-cut"


async def signed_zero_hashes_at_a_checkpoint_size(log) -> tuple[int, str]:
    await forge_cut(log, 20, [b"\x00" * 32] * 2, "records_20260901t00", sign=True)
    return 20, "forged-cut"


@pytest.mark.parametrize(
    "forge",
    [
        zero_hashes,
        a_checkpoints_frontier_at_another_size,
        a_frontier_over_rewritten_records,
        a_cut_past_the_last_checkpoint,
        a_copied_checkpoint_over_altered_records,
        signed_copy_with_the_records_still_there,
        signed_copy_with_the_records_deleted,
        signed_frontier_of_another_size,
        signed_zero_hashes_at_a_checkpoint_size,
    ],
    ids=lambda f: f.__name__,
)
async def test_a_forged_retention_cut_does_not_verify(audit_log, forge):
    log = audit_log
    await three_months_of_records(log)
    await apply_retention(
        log.settings.platform.database_url,
        log.keyring,
        older_than=datetime(2026, 9, 1, tzinfo=UTC),
        operator="ops_kim",
        reason="schedule",
        clock=log.clock,
    )
    genuine = await verify(log)
    assert genuine.ok, genuine.failure
    assert (genuine.first_position, genuine.tree_size) == (10, 26)
    assert [c.checkpoint.tree_size for c in await store.checkpoints(log.admin)] == [10, 20, 25]

    position, kind = await forge(log)
    report = await verify(log)
    assert not report.ok
    assert (report.failure.position, report.failure.kind) == (position, kind), report.failure
    if kind != "records-below-cut":
        assert f"retention cut at size {position}" in report.failure.detail
    if not forge.__name__.startswith("signed_"):
        # Nothing is signed over an unsigned cut either (a signed one does not move
        # the next checkpoint: that continues from the latest signed compact range).
        with pytest.raises(handlers.LogCorrupted):
            await log.checkpoint()


async def test_the_service_role_cannot_insert_a_cut_or_a_checkpoint(audit_log):
    log = audit_log
    await log.append(4)
    cp = await log.checkpoint()
    stored = await store.checkpoint_at(log.admin, 4)
    cut = cut_of(log, 4, stored.frontier, "records_20260801t00", sign=True)
    forged = log.keyring.sign(5, cp.root_hash, log.clock())
    async with log.pool.acquire() as conn:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
            await store.insert_cut(conn, cut)
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
            await store.insert_checkpoint(conn, forged, stored.frontier)
        # Not even between the kit's blanket grant and its narrowing: the trigger.
        await log.admin.execute("GRANT INSERT ON checkpoints, retention_cuts TO clearway_audit")
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="only the audit signer"):
            await store.insert_cut(conn, cut)
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="only the audit signer"):
            await store.insert_checkpoint(conn, forged, stored.frontier)
    # The signer role may, and may not append records.
    async with log.signer.acquire() as conn:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
            await conn.execute("DELETE FROM checkpoints")
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
            await conn.execute(
                "INSERT INTO records (content, leaf_hash, recorded_at, occurred_at)"
                " SELECT content, leaf_hash, recorded_at, occurred_at FROM records LIMIT 1"
            )
    assert await log.admin.fetchval("SELECT count(*) FROM checkpoints") == 1

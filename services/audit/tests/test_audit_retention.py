"""Retention drops whole expired partitions; what remains still verifies."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from clearway.audit import handlers, store
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


async def forge_cut(log, size: int, frontier: list[bytes], partition: str) -> None:
    """Insert a retention cut the way someone with the owner's rights could."""
    await log.admin.execute(
        "INSERT INTO retention_cuts (cut_size, frontier, partition_name, anchor_size, operator,"
        " reason) VALUES ($1, $2, $3, 25, 'ops_kim', 'retention schedule')",
        size,
        frontier,
        partition,
    )


async def zero_hashes(log) -> tuple[int, str]:
    await forge_cut(log, 20, [b"\x00" * 32] * 2, "records_20260901t00")
    return 0, "root-mismatch"


async def a_checkpoints_frontier_at_another_size(log) -> tuple[int, str]:
    # The compact range signed at 20 ([0,16) and [16,20)), passed off as the one of
    # 24 (same number of hashes): hides 20..23 and claims [16,24) is [16,20).
    signed = await store.checkpoint_at(log.admin, 20)
    await forge_cut(log, 24, signed.frontier, "records_20260901t00")
    return 16, "root-mismatch"


async def a_frontier_over_rewritten_records(log) -> tuple[int, str]:
    # Rewrite position 12 (content and leaf hash, consistently), then cut the log
    # above it with the compact range of what is now below: the kept cut at 10
    # extended with the rewritten leaves. The frontier no longer matches the records
    # the checkpoint at 20 signed.
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
    return 0, "root-mismatch"


async def a_cut_past_the_last_checkpoint(log) -> tuple[int, str]:
    # A correct compact range over every record, 25 (the partition_dropped record)
    # included, which no signed checkpoint covers; no partition was dropped either.
    kept = await store.latest_cut(log.admin)
    frontier = Frontier(kept.size, kept.frontier)
    frontier.extend(await store.leaf_hashes(log.admin, kept.size, 26))
    await forge_cut(log, 26, frontier.hashes, "records_20261101t00")
    return 26, "unanchored-cut"


@pytest.mark.parametrize(
    "forge",
    [
        zero_hashes,
        a_checkpoints_frontier_at_another_size,
        a_frontier_over_rewritten_records,
        a_cut_past_the_last_checkpoint,
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

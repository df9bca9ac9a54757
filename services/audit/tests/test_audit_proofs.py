"""Proofs are built from the subtrees each checkpoint keeps, not from every leaf hash,
and still check out with a verifier written from RFC 9162; the search columns come
from one parse of the content (docs/design.md §8, ADR 0030)."""

from __future__ import annotations

import asyncpg
import pytest

from clearway.audit import handlers
from clearway.audit.merkle import verify_consistency, verify_inclusion

from .test_audit_api import _mth_path_root

pytestmark = pytest.mark.integration


async def test_checkpoints_keep_the_subtrees_proofs_are_built_from(audit_log):
    log = audit_log
    assert handlers.SUBTREE_LEVEL == 8
    sizes = []
    for start, n in ((0, 300), (300, 500), (800, 37)):
        await log.append(n, start)
        sizes.append(await log.checkpoint())
    rows = await log.admin.fetch("SELECT level, idx FROM subtrees ORDER BY level, idx")
    # Every perfect subtree of 256 leaves or more inside [0, 837), and nothing else.
    assert [tuple(r) for r in rows] == [(8, 0), (8, 1), (8, 2), (9, 0)]
    first, _, last = sizes
    async with log.pool.acquire() as conn:
        for cp in sizes:
            for position in (0, 255, 256, 299, 511, 512, 767, 768, cp.tree_size - 1):
                if position >= cp.tree_size:
                    continue
                p = await handlers.prove_inclusion(conn, position, cp)
                stored = await conn.fetchval(
                    "SELECT leaf_hash FROM records WHERE position = $1", position
                )
                assert p.leaf_hash == stored
                root = _mth_path_root(position, cp.tree_size, stored, p.path)
                assert root == cp.root_hash
                assert verify_inclusion(position, cp.tree_size, stored, p.path, cp.root_hash)
        path = await handlers.prove_consistency(conn, first, last)
        assert verify_consistency(
            first.tree_size, last.tree_size, first.root_hash, last.root_hash, path
        )
        # The ingest role cannot write subtrees; only the signer (or the owner) can.
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(
                "INSERT INTO subtrees (level, idx, hash) VALUES (8, 9, $1)", b"\x00" * 32
            )


async def test_a_wrong_stored_subtree_yields_an_error_never_a_wrong_proof(audit_log):
    log = audit_log
    # Planted before a checkpoint computes it: the checkpoint keeps the planted row.
    await log.admin.execute(
        "INSERT INTO subtrees (level, idx, hash) VALUES (8, 3, $1)", b"\x07" * 32
    )
    await log.append(1100)
    cp = await log.checkpoint()
    async with log.pool.acquire() as conn:
        with pytest.raises(handlers.LogCorrupted, match="inclusion proof"):
            await handlers.prove_inclusion(conn, 600, cp)  # needs [768, 1024)
        p = await handlers.prove_inclusion(conn, 100, cp)  # does not
        assert verify_inclusion(100, 1100, p.leaf_hash, p.path, cp.root_hash)


async def test_search_columns_say_what_the_content_says_whatever_the_writer_sends(audit_log):
    log = audit_log
    await log.append(3, tenant="tn_1", correlation_id="corr_1")
    row = await log.admin.fetchrow("SELECT * FROM records WHERE position = 2")
    assert (row["tenant"], row["correlation_id"]) == ("tn_1", "corr_1")
    assert (row["resource"], row["actor_subject"]) == ("tr_2", "user_alice")
    async with log.pool.acquire() as conn, conn.transaction():
        # The ingest role names another tenant beside the content: the content wins.
        content = row["content"].replace('"seq":2', '"seq":3')
        await conn.execute(
            "INSERT INTO records (content, leaf_hash, recorded_at, occurred_at, tenant,"
            " resource, correlation_id, actor_subject)"
            " VALUES ($1, $2, $3, $4, 'tn_2', 'x', 'y', 'z')",
            content,
            b"\x00" * 32,
            row["recorded_at"],
            row["occurred_at"],
        )
    got = await log.admin.fetchrow(
        "SELECT position, tenant, resource, correlation_id, actor_subject FROM records"
        " WHERE position = 3"
    )
    assert tuple(got) == (3, "tn_1", "tr_2", "corr_1", "user_alice")

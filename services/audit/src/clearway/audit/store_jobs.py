"""Repository of verification jobs (see :mod:`clearway.audit.jobs`)."""

from __future__ import annotations

from typing import Any

import asyncpg

ACTIVE = ("queued", "running")


async def lock_tenant(conn: asyncpg.Connection, tenant: str) -> None:
    """Serialise job requests of one tenant (transaction-scoped advisory lock)."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"audit.verify:{tenant}")


async def abandon_stale(conn: asyncpg.Connection, tenant: str, running_s: float) -> None:
    """Jobs whose runner stopped reporting (process gone), or that no runner took up
    within an hour, are closed as errors."""
    await conn.execute(
        "UPDATE verification_jobs SET state = 'error', finished_at = now(), updated_at = now(),"
        ' report = \'{"error": "abandoned: no runner finished it"}\'::jsonb'
        " WHERE tenant = $1 AND ((state = 'running'"
        " AND updated_at < now() - make_interval(secs => $2))"
        " OR (state = 'queued' AND updated_at < now() - interval '1 hour'))",
        tenant,
        running_s,
    )


async def active_job(conn: asyncpg.Connection, tenant: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT * FROM verification_jobs WHERE tenant = $1 AND state = ANY($2::text[])",
        tenant,
        list(ACTIVE),
    )


async def seconds_since_last_request(conn: asyncpg.Connection, tenant: str) -> float | None:
    value = await conn.fetchval(
        "SELECT extract(epoch FROM now() - max(created_at)) FROM verification_jobs"
        " WHERE tenant = $1",
        tenant,
    )
    return None if value is None else float(value)


async def insert_job(
    conn: asyncpg.Connection, job_id: str, tenant: str, requested_by: str, full: bool
) -> asyncpg.Record:
    row = await conn.fetchrow(
        "INSERT INTO verification_jobs (id, tenant, requested_by, full_run, state)"
        " VALUES ($1, $2, $3, $4, 'queued') RETURNING *",
        job_id,
        tenant,
        requested_by,
        full,
    )
    assert row is not None
    return row


async def claim_next(conn: asyncpg.Connection) -> asyncpg.Record | None:
    """Take the oldest queued job (any replica may; ``SKIP LOCKED`` keeps them apart)."""
    return await conn.fetchrow(
        "UPDATE verification_jobs SET state = 'running', updated_at = now()"
        " WHERE id = (SELECT id FROM verification_jobs WHERE state = 'queued'"
        " ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING *"
    )


async def pending(conn: asyncpg.Connection) -> int:
    """Jobs queued or running (any tenant)."""
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM verification_jobs WHERE state = ANY($1::text[])", list(ACTIVE)
        )
    )


async def record_progress(conn: asyncpg.Connection, job_id: str, total: int, done: int) -> None:
    await conn.execute(
        "UPDATE verification_jobs SET records_total = $2, records_checked = $3,"
        " updated_at = now() WHERE id = $1",
        job_id,
        total,
        done,
    )


async def finish(
    conn: asyncpg.Connection,
    job_id: str,
    *,
    state: str,
    ok: bool | None,
    report: dict[str, Any],
    verified_size: int | None,
    receipt: tuple[bytes, str, bytes] | None = None,
) -> None:
    """Record a job's outcome; ``receipt`` is ``(root, key id, signature)`` of a
    successful run's signed receipt."""
    root, key_id, signature = receipt or (None, None, None)
    await conn.execute(
        "UPDATE verification_jobs SET state = $2, ok = $3, report = $4,"
        " verified_size = $5, receipt_root = $6, receipt_key_id = $7,"
        " receipt_signature = $8, finished_at = now(), updated_at = now() WHERE id = $1",
        job_id,
        state,
        ok,
        report,  # jsonb: the pool's codec encodes it
        verified_size,
        root,
        key_id,
        signature,
    )


async def job(conn: asyncpg.Connection, job_id: str, tenant: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT * FROM verification_jobs WHERE id = $1 AND tenant = $2", job_id, tenant
    )


async def latest_finished(conn: asyncpg.Connection, tenant: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT * FROM verification_jobs WHERE tenant = $1 AND state = 'done'"
        " ORDER BY created_at DESC LIMIT 1",
        tenant,
    )


async def receipts(conn: asyncpg.Connection, limit: int = 16) -> list[asyncpg.Record]:
    """Receipts of successful runs (any tenant's: the log is one), largest size first;
    the caller checks their signatures."""
    return list(
        await conn.fetch(
            "SELECT DISTINCT ON (verified_size) verified_size, receipt_root, receipt_key_id,"
            " receipt_signature FROM verification_jobs"
            " WHERE ok AND state = 'done' AND receipt_signature IS NOT NULL"
            " ORDER BY verified_size DESC, finished_at DESC LIMIT $1",
            limit,
        )
    )

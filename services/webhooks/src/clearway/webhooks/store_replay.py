"""Repository of replay jobs (see :mod:`clearway.webhooks.replay` for the walk itself)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg

JOB_COLUMNS = (
    "id, endpoint_id, status_filter, since, until, dry_run, state, total, processed, queued,"
    " skipped, runs, started_at, finished_at, created_at"
)
_FILTER = {"failed": "AND status = 'failed'", "skipped": "AND status = 'skipped'", "all": ""}


async def count_messages(
    conn: asyncpg.Connection, endpoint_id: str, since: datetime, until: datetime, status: str
) -> int:
    """How many of an endpoint's messages in ``[since, until)`` match a replay's status filter."""
    total = await conn.fetchval(
        "SELECT count(*) FROM messages WHERE endpoint_id = $1 AND created_at >= $2"
        f" AND created_at < $3 {_FILTER[status]}",
        endpoint_id,
        since,
        until,
    )
    return int(total)


async def insert_job(
    conn: asyncpg.Connection,
    *,
    id: str,
    tenant: str,
    endpoint_id: str,
    status: str,
    since: datetime,
    until: datetime,
    dry_run: bool,
    total: int,
) -> asyncpg.Record:
    row = await conn.fetchrow(
        "INSERT INTO replay_jobs (id, tenant, endpoint_id, status_filter, since, until,"
        " dry_run, state, total) VALUES ($1, $2, $3, $4, $5, $6, $7, 'running', $8)"
        f" RETURNING {JOB_COLUMNS}",
        id,
        tenant,
        endpoint_id,
        status,
        since,
        until,
        dry_run,
        total,
    )
    assert row is not None
    return row


async def get_job(conn: asyncpg.Connection, tenant: str, job_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {JOB_COLUMNS} FROM replay_jobs WHERE tenant = $1 AND id = $2", tenant, job_id
    )


async def restart_job(conn: asyncpg.Connection, tenant: str, job_id: str) -> asyncpg.Record | None:
    """Reset a job's cursor and counters; its ``started_at`` stays the first run's."""
    return await conn.fetchrow(
        "UPDATE replay_jobs SET state = 'running', cursor_at = NULL, cursor_id = NULL,"
        " processed = 0, queued = 0, skipped = 0, runs = runs + 1, finished_at = NULL"
        f" WHERE tenant = $1 AND id = $2 RETURNING {JOB_COLUMNS}",
        tenant,
        job_id,
    )


async def lock_job(conn: asyncpg.Connection, job_id: str) -> asyncpg.Record | None:
    """The whole job row, locked for this transaction."""
    return await conn.fetchrow("SELECT * FROM replay_jobs WHERE id = $1 FOR UPDATE", job_id)


async def next_batch(
    conn: asyncpg.Connection, job: asyncpg.Record, batch: int
) -> list[asyncpg.Record]:
    """The next messages of a locked job after its cursor, locked too."""
    args: list[object] = [job["endpoint_id"], job["since"], job["until"], batch]
    after = ""
    if job["cursor_at"] is not None:
        args += [job["cursor_at"], job["cursor_id"]]
        after = "AND (created_at, id) > ($5, $6)"
    return await conn.fetch(
        "SELECT id, status, delivered_at, created_at, payload IS NULL AS purged FROM messages"
        " WHERE endpoint_id = $1"
        f" AND created_at >= $2 AND created_at < $3 {_FILTER[job['status_filter']]} {after}"
        " ORDER BY created_at, id LIMIT $4 FOR UPDATE",
        *args,
    )


async def finish_job(conn: asyncpg.Connection, job_id: str) -> None:
    await conn.execute(
        "UPDATE replay_jobs SET state = 'done', finished_at = now() WHERE id = $1", job_id
    )


async def advance_job(
    conn: asyncpg.Connection,
    job_id: str,
    last: asyncpg.Record,
    processed: int,
    queued: int,
) -> None:
    """Move the job's cursor past ``last`` and add to its counters."""
    await conn.execute(
        "UPDATE replay_jobs SET cursor_at = $2, cursor_id = $3, processed = processed + $4,"
        " queued = queued + $5, skipped = skipped + $6 WHERE id = $1",
        job_id,
        last["created_at"],
        last["id"],
        processed,
        queued,
        processed - queued,
    )


async def running_jobs(pool: asyncpg.Pool) -> Sequence[str]:
    """Ids of the jobs a process left running."""
    return [r["id"] for r in await pool.fetch("SELECT id FROM replay_jobs WHERE state = 'running'")]

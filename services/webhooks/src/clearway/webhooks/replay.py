"""Replay jobs: re-queue an endpoint's messages by time range and status.

A job walks its messages in ``(created_at, id)`` order and stores its cursor in
the same transaction as each batch it re-queues, so a crash resumes where it
stopped (the service resumes running jobs at start). Running a job again is
safe: a message delivered after the job started, or already pending, is left
alone, so no message is sent twice because a job ran twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime
from typing import Any

import asyncpg

from clearway.shared.auth import Principal
from clearway.shared.backoff import Backoff, retry
from clearway.webhooks import store
from clearway.webhooks.domain import new_replay_id
from clearway.webhooks.handlers import Context, NotFound

log = logging.getLogger(__name__)
#: A replay step waits out database trouble: never gives up, at most 30 s apart.
REPLAY_RETRY = Backoff(base=0.5, cap=30.0, jitter=0.2)
JOB_COLUMNS = (
    "id, endpoint_id, status_filter, since, until, dry_run, state, total, processed, queued,"
    " skipped, runs, started_at, finished_at, created_at"
)
_FILTER = {"failed": "AND status = 'failed'", "skipped": "AND status = 'skipped'", "all": ""}


async def create_job(
    ctx: Context,
    conn: asyncpg.Connection,
    principal: Principal,
    tenant: str,
    *,
    endpoint_id: str,
    since: datetime,
    until: datetime,
    status: str,
    dry_run: bool,
) -> asyncpg.Record:
    async with conn.transaction():
        if await store.get_endpoint(conn, tenant, endpoint_id) is None:
            raise NotFound("endpoint", endpoint_id)
        total = await conn.fetchval(
            "SELECT count(*) FROM messages WHERE endpoint_id = $1 AND created_at >= $2"
            f" AND created_at < $3 {_FILTER[status]}",
            endpoint_id,
            since,
            until,
        )
        row = await conn.fetchrow(
            "INSERT INTO replay_jobs (id, tenant, endpoint_id, status_filter, since, until,"
            " dry_run, state, total) VALUES ($1, $2, $3, $4, $5, $6, $7, 'running', $8)"
            f" RETURNING {JOB_COLUMNS}",
            new_replay_id(),
            tenant,
            endpoint_id,
            status,
            since,
            until,
            dry_run,
            total,
        )
        assert row is not None
        if not dry_run:
            await ctx.audit(conn, principal, "replay.started", row["id"])
    return row


async def get_job(conn: asyncpg.Connection, tenant: str, job_id: str) -> asyncpg.Record:
    row = await conn.fetchrow(
        f"SELECT {JOB_COLUMNS} FROM replay_jobs WHERE tenant = $1 AND id = $2", tenant, job_id
    )
    if row is None:
        raise NotFound("replay", job_id)
    return row


async def restart_job(conn: asyncpg.Connection, tenant: str, job_id: str) -> asyncpg.Record:
    """Run a job again from its beginning; its start time (what 'already delivered' means)
    stays the one of its first run."""
    row = await conn.fetchrow(
        "UPDATE replay_jobs SET state = 'running', cursor_at = NULL, cursor_id = NULL,"
        " processed = 0, queued = 0, skipped = 0, runs = runs + 1, finished_at = NULL"
        f" WHERE tenant = $1 AND id = $2 RETURNING {JOB_COLUMNS}",
        tenant,
        job_id,
    )
    if row is None:
        raise NotFound("replay", job_id)
    return row


async def step(conn: asyncpg.Connection, job_id: str, batch: int = 500) -> bool:
    """Handle one batch of a job; returns False once the job is done."""
    async with conn.transaction():
        job = await conn.fetchrow("SELECT * FROM replay_jobs WHERE id = $1 FOR UPDATE", job_id)
        if job is None or job["state"] == "done":
            return False
        args: list[Any] = [job["endpoint_id"], job["since"], job["until"], batch]
        after = ""
        if job["cursor_at"] is not None:
            args += [job["cursor_at"], job["cursor_id"]]
            after = "AND (created_at, id) > ($5, $6)"
        rows = await conn.fetch(
            "SELECT id, status, delivered_at, created_at FROM messages WHERE endpoint_id = $1"
            f" AND created_at >= $2 AND created_at < $3 {_FILTER[job['status_filter']]} {after}"
            " ORDER BY created_at, id LIMIT $4 FOR UPDATE",
            *args,
        )
        if not rows:
            await conn.execute(
                "UPDATE replay_jobs SET state = 'done', finished_at = now() WHERE id = $1", job_id
            )
            return False
        eligible = [
            r["id"]
            for r in rows
            if r["status"] != "pending"
            and not (r["status"] == "delivered" and r["delivered_at"] >= job["started_at"])
        ]
        if eligible and not job["dry_run"]:
            await store.requeue(conn, eligible, f"replay:{job_id}")
        await conn.execute(
            "UPDATE replay_jobs SET cursor_at = $2, cursor_id = $3, processed = processed + $4,"
            " queued = queued + $5, skipped = skipped + $6 WHERE id = $1",
            job_id,
            rows[-1]["created_at"],
            rows[-1]["id"],
            len(rows),
            len(eligible),
            len(rows) - len(eligible),
        )
    return True


class ReplayRunner:
    """Runs jobs in the background of the service process."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._tasks: dict[str, asyncio.Task[None]] = {}

    async def resume(self) -> None:
        """Pick up the jobs a previous process left running."""
        for row in await self.pool.fetch("SELECT id FROM replay_jobs WHERE state = 'running'"):
            self.spawn(row["id"])

    def spawn(self, job_id: str) -> None:
        if job_id in self._tasks and not self._tasks[job_id].done():
            return
        self._tasks[job_id] = asyncio.create_task(self._run(job_id), name=f"replay-{job_id}")

    async def _run(self, job_id: str) -> None:
        async def one_step() -> bool:
            async with self.pool.acquire() as conn:
                return await step(conn, job_id)

        # Each step is retried until the database lets it through (the job is durable
        # and resumable, so waiting is always right); the backoff restarts per step.
        while await retry(
            one_step,
            REPLAY_RETRY,
            what=f"replay {job_id}",
            retry_on=(OSError, asyncpg.PostgresError, asyncpg.InterfaceError),
            logger=log,
        ):
            pass

    async def stop(self) -> None:
        for t in self._tasks.values():
            t.cancel()
        for t in self._tasks.values():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t

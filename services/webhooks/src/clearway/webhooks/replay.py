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

import asyncpg

from clearway.shared.auth import Principal
from clearway.shared.backoff import Backoff, retry
from clearway.webhooks import store, store_replay
from clearway.webhooks.domain import new_replay_id
from clearway.webhooks.handlers import Context, NotFound

log = logging.getLogger(__name__)
#: A replay step waits out database trouble: never gives up, at most 30 s apart.
REPLAY_RETRY = Backoff(base=0.5, cap=30.0, jitter=0.2)


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
        total = await store_replay.count_messages(conn, endpoint_id, since, until, status)
        row = await store_replay.insert_job(
            conn,
            id=new_replay_id(),
            tenant=tenant,
            endpoint_id=endpoint_id,
            status=status,
            since=since,
            until=until,
            dry_run=dry_run,
            total=total,
        )
        if not dry_run:
            await ctx.audit(
                conn, principal, tenant, "replay.started", row["id"], 1
            )  # a job starts once
    return row


async def get_job(conn: asyncpg.Connection, tenant: str, job_id: str) -> asyncpg.Record:
    row = await store_replay.get_job(conn, tenant, job_id)
    if row is None:
        raise NotFound("replay", job_id)
    return row


async def restart_job(conn: asyncpg.Connection, tenant: str, job_id: str) -> asyncpg.Record:
    """Run a job again from its beginning; its start time (what 'already delivered' means)
    stays the one of its first run."""
    row = await store_replay.restart_job(conn, tenant, job_id)
    if row is None:
        raise NotFound("replay", job_id)
    return row


async def step(conn: asyncpg.Connection, job_id: str, batch: int = 500) -> bool:
    """Handle one batch of a job; returns False once the job is done."""
    async with conn.transaction():
        job = await store_replay.lock_job(conn, job_id)
        if job is None or job["state"] == "done":
            return False
        rows = await store_replay.next_batch(conn, job, batch)
        if not rows:
            await store_replay.finish_job(conn, job_id)
            return False
        eligible = [
            r["id"]
            for r in rows
            if r["status"] != "pending"
            and not (r["status"] == "delivered" and r["delivered_at"] >= job["started_at"])
            and not r["purged"]  # its payload is past retention: skipped
        ]
        if eligible and not job["dry_run"]:
            await store.requeue(conn, eligible, f"replay:{job_id}")
        await store_replay.advance_job(conn, job_id, rows[-1], len(rows), len(eligible))
    return True


class ReplayRunner:
    """Runs jobs in the background of the service process."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._tasks: dict[str, asyncio.Task[None]] = {}

    async def resume(self) -> None:
        """Pick up the jobs a previous process left running."""
        for job_id in await store_replay.running_jobs(self.pool):
            self.spawn(job_id)

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

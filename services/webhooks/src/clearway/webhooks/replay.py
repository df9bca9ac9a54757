"""Replay jobs: re-queue an endpoint's messages by time range and status.

A job walks its messages in ``(created_at, id)`` order and stores its cursor in
the same transaction as each batch it re-queues, so a crash resumes where it
stopped (the service resumes running jobs at start). Running a job again is
safe: a message delivered after the job started, or already pending, is left
alone, so no message is sent twice because a job ran twice.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

from clearway.shared.auth import Principal
from clearway.shared.supervisor import Supervisor
from clearway.webhooks import store, store_replay
from clearway.webhooks.domain import new_replay_id
from clearway.webhooks.handlers import Context, NotFound


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
    reason: str | None = None,
) -> asyncpg.Record:
    """A replay job of ``endpoint_id``'s messages in ``[since, until)``; a real one (not a
    dry run) is audited with the person's ``reason``."""
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
            await ctx.audit(  # a job starts once
                conn, principal, tenant, "replay.started", row["id"], 1, reason
            )
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
    """Runs each job as a one-off task of the service's :class:`Supervisor`
    (``replay-<job id>``): a step that fails (the database away) crashes the task,
    which the supervisor restarts with backoff from the job's stored cursor, and
    ``/readyz`` names it meanwhile (docs/design.md §6, §11)."""

    def __init__(self, pool: asyncpg.Pool, tasks: Supervisor) -> None:
        self.pool = pool
        self.tasks = tasks

    async def resume(self) -> None:
        """Pick up the jobs a previous process left running."""
        for job_id in await store_replay.running_jobs(self.pool):
            self.spawn(job_id)

    def spawn(self, job_id: str) -> None:
        """Run job ``job_id`` unless it already runs in this process."""
        self.tasks.once(f"replay-{job_id}", lambda: self._run(job_id))

    async def _run(self, job_id: str) -> None:
        more = True
        while more:  # a connection per step: a long job does not hold one
            async with self.pool.acquire() as conn:
                more = await step(conn, job_id)

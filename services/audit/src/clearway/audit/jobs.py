"""Verification as a job (docs/design.md §8, ADR 0015).

``POST /v1/audit/verifications`` asks for a run; this module decides whether it may
start (one active job per tenant, at most one request per tenant every
``verification_min_interval_s``) and queues it. ``verification_concurrency``
supervised loops per process claim queued jobs and run them, each on its own
connection (never one of the ingest pool's), with its blocks read (libpq) and hashed
by ``verification_workers`` threads at low CPU priority, off the GIL (ADR 0050). A run is
incremental: it starts from the largest signed checkpoint an earlier run
reproduced, as named by that run's receipt (signed with the checkpoint key),
unless a full run was asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import secrets
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from clearway.audit import store, store_jobs
from clearway.audit.blocks import BlockReader
from clearway.audit.signing import Keyring, receipt_body
from clearway.audit.verification import Report, verify_log
from clearway.shared.metrics import AUDIT_VERIFICATIONS_TOTAL

log = logging.getLogger(__name__)
#: A running job writes its progress at least this often; silent for STALE_AFTER_S,
#: it is taken for abandoned (its process died) and no longer blocks the tenant.
PROGRESS_EVERY_S = 1.0
STALE_AFTER_S = 120.0


class VerificationBusy(Exception):
    """The tenant already has a verification queued or running."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"verification {job_id} is still running")
        self.job_id = job_id


class VerificationThrottled(Exception):
    """The tenant asked again too soon."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"retry in {retry_after} s")
        self.retry_after = retry_after


class JobNotFound(LookupError):
    """No such verification for this tenant."""


def job_json(row: Any) -> dict[str, Any]:
    """The API's view of a job: state, progress and, once done, the report."""
    done, total = row["records_checked"], row["records_total"]
    return {
        "id": row["id"],
        "state": row["state"],
        "full": row["full_run"],
        "created_at": row["created_at"].isoformat(),
        "finished_at": row["finished_at"].isoformat() if row["finished_at"] else None,
        "progress": {
            "records_checked": done,
            "records_total": total,
            "fraction": round(done / total, 4) if total else (1.0 if row["finished_at"] else 0.0),
        },
        "ok": row["ok"],
        "result": row["report"],
    }


def _lower_priority() -> None:
    # Verification yields the CPU to ingestion on a busy host: nice(2) on Linux sets the
    # calling thread's priority only, so this lowers the reader thread, not the service.
    os.nice(10)


@dataclass
class VerificationRunner:
    """Records verification jobs and runs them: :meth:`work` is a supervised loop
    (one per allowed concurrent run) that claims queued jobs from the table, so a
    job asked of one replica may run on another."""

    pool: asyncpg.Pool
    #: the DSN of the ingest role, or a callable giving the current rotated login's
    dsn: str | Callable[[], str]
    keyring: Keyring
    workers: int = 2
    concurrency: int = 1
    min_interval_s: float = 60.0
    poll_s: float = 2.0
    schema: str = store.SCHEMA
    _wake: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    _executor: ThreadPoolExecutor | None = field(default=None, init=False)

    async def start(self, tenant: str, requested_by: str, *, full: bool) -> dict[str, Any]:
        """Record a new queued job, or raise ``VerificationBusy``/``VerificationThrottled``."""
        async with self.pool.acquire() as conn, conn.transaction():
            await store_jobs.lock_tenant(conn, tenant)
            await store_jobs.abandon_stale(conn, tenant, STALE_AFTER_S)
            active = await store_jobs.active_job(conn, tenant)
            if active is not None:
                raise VerificationBusy(active["id"])
            age = await store_jobs.seconds_since_last_request(conn, tenant)
            if age is not None and age < self.min_interval_s:
                raise VerificationThrottled(max(1, math.ceil(self.min_interval_s - age)))
            job_id = "vrf_" + secrets.token_hex(12)
            row = await store_jobs.insert_job(conn, job_id, tenant, requested_by, full)
        self._wake.set()
        return job_json(row)

    async def get(self, tenant: str, job_id: str) -> dict[str, Any]:
        async with self.pool.acquire() as conn:
            row = await store_jobs.job(conn, job_id, tenant)
        if row is None:
            raise JobNotFound(job_id)
        return job_json(row)

    async def latest(self, tenant: str) -> dict[str, Any]:
        """The tenant's latest finished job (``JobNotFound`` when there is none)."""
        async with self.pool.acquire() as conn:
            row = await store_jobs.latest_finished(conn, tenant)
        if row is None:
            raise JobNotFound("no finished verification")
        return job_json(row)

    async def work(self) -> None:
        """Run queued jobs one at a time, for ever (a supervised task)."""
        while True:
            async with self.pool.acquire() as conn:
                job = await store_jobs.claim_next(conn)
            if job is not None:
                await self._run(job["id"], job["full_run"])
                continue
            self._wake.clear()
            # asyncio.timeout, not wait_for: wait_for of Python 3.11 can swallow the
            # cancellation that stops this loop when it coincides with the timeout.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_s):
                    await self._wake.wait()

    async def idle(self) -> bool:
        """No job queued or running (tests, benchmarks)."""
        async with self.pool.acquire() as conn:
            return await store_jobs.pending(conn) == 0

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    def _reader(self) -> BlockReader:
        if self.workers <= 0:
            return BlockReader()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                self.workers, "audit-verify", initializer=_lower_priority
            )
        return BlockReader(self._executor, self._dsn(), self.schema, self.workers)

    def _dsn(self) -> str:
        return self.dsn() if callable(self.dsn) else self.dsn

    async def _start(self) -> tuple[int | None, bytes | None]:
        """Where an incremental run starts: the largest receipt signed by a trusted
        checkpoint key. A job row without one (written by whoever holds the ingest
        role) moves nothing."""
        async with self.pool.acquire() as conn:
            rows = await store_jobs.receipts(conn)
        for r in rows:
            size, root = int(r["verified_size"]), bytes(r["receipt_root"])
            signature = bytes(r["receipt_signature"])
            if self.keyring.verifies_note(r["receipt_key_id"], receipt_body(size, root), signature):
                return size, root
        return None, None

    def _receipt(self, report: Report) -> tuple[bytes, str, bytes] | None:
        if not report.ok or not report.verified_size or report.verified_root is None:
            return None
        body = receipt_body(report.verified_size, report.verified_root)
        key_id, signature = self.keyring.sign_note(body)
        return report.verified_root, key_id, signature

    async def _run(self, job_id: str, full: bool) -> None:
        since, since_root = (None, None) if full else await self._start()
        receipt = None
        try:
            own = await asyncpg.connect(self._dsn(), server_settings={"search_path": self.schema})
            try:
                report = await verify_log(
                    own,
                    self.keyring,
                    since=since,
                    since_root=since_root,
                    reader=self._reader(),
                    progress=self._progress(job_id),
                )
            finally:
                await own.close()
            result, state, ok = report.as_json(), "done", report.ok
            AUDIT_VERIFICATIONS_TOTAL.labels("verified" if ok else "failed").inc()
            verified = report.verified_size if report.ok else None
            receipt = self._receipt(report)
        except Exception:
            log.exception("audit verification %s failed to run", job_id)
            result, state = {"error": "the verification could not run"}, "error"
            AUDIT_VERIFICATIONS_TOTAL.labels("error").inc()
            ok, verified = None, None
        async with self.pool.acquire() as conn:
            await store_jobs.finish(
                conn,
                job_id,
                state=state,
                ok=ok,
                report=result,
                verified_size=verified,
                receipt=receipt,
            )

    def _progress(self, job_id: str) -> Any:
        last = time.monotonic()

        async def report(done: int, total: int) -> None:
            nonlocal last
            now = time.monotonic()
            if now - last < PROGRESS_EVERY_S and done < total:
                return
            last = now
            async with self.pool.acquire() as conn:
                await store_jobs.record_progress(conn, job_id, total, done)

        return report

"""Verification runs as a job: limited per tenant, incremental, off the ingest pool."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from clearway.audit import jobs
from clearway.audit.bootstrap import verification_runner
from clearway.shared.testing.helpers import eventually

from .test_audit_tamper_evidence import as_superuser

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def runner(log, loops: int = 1, **over):
    """A runner with ``loops`` work loops, as the service's lifespan runs them."""
    settings = log.settings.replace(
        verification_min_interval_s=over.pop("min_interval_s", 0.0), **over
    )
    r = verification_runner(settings, log.pool, log.keyring)
    tasks = [asyncio.create_task(r.work()) for _ in range(loops)]
    try:
        yield r
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        r.close()


async def done(r, tenant: str, job: dict) -> dict:
    async def finished():
        j = await r.get(tenant, job["id"])
        return j if j["state"] in ("done", "error") else None

    return await eventually(finished, timeout=120)


async def test_one_job_at_a_time_per_tenant_and_requests_are_rate_limited(audit_log):
    await audit_log.append(40)
    await audit_log.checkpoint()
    async with runner(audit_log, min_interval_s=3600) as r:
        first = await r.start("tn_1", "auditor_ann", full=False)
        assert first["state"] == "queued"
        with pytest.raises(jobs.VerificationBusy) as busy:
            await r.start("tn_1", "auditor_ann", full=False)
        assert busy.value.job_id == first["id"]
        other = await r.start("tn_2", "auditor_bob", full=False)  # another tenant may
        result = await done(r, "tn_1", first)
        assert (result["state"], result["ok"]) == ("done", True), result
        assert result["result"]["tree_size"] == 40
        with pytest.raises(jobs.VerificationThrottled) as slow:
            await r.start("tn_1", "auditor_ann", full=False)
        assert 3000 < slow.value.retry_after <= 3600
        # A tenant sees only its own jobs.
        with pytest.raises(jobs.JobNotFound):
            await r.get("tn_1", other["id"])
        await done(r, "tn_2", other)


async def test_an_abandoned_job_does_not_block_its_tenant(audit_log):
    await audit_log.admin.execute(
        "INSERT INTO verification_jobs (id, tenant, requested_by, full_run, state, updated_at)"
        " VALUES ('vrf_gone', 'tn_1', 'x', false, 'running', now() - interval '1 hour')"
    )
    async with runner(audit_log) as r:
        job = await r.start("tn_1", "auditor_ann", full=False)
        assert (await done(r, "tn_1", job))["ok"] is True
        assert (await r.get("tn_1", "vrf_gone"))["state"] == "error"


async def test_a_verified_prefix_is_not_hashed_again_unless_a_full_run_is_asked(audit_log):
    log = audit_log
    await log.append(30)
    await log.checkpoint()
    await log.append(12, start=30)
    async with runner(log) as r:
        first = await done(r, "tn_1", await r.start("tn_1", "a", full=False))
        assert first["result"]["verified_size"] == 30 and first["result"]["hashed_from"] == 0
        await log.checkpoint()  # 42
        # Tampering inside the verified prefix: an incremental run does not look there.
        await as_superuser(
            log.admin,
            "UPDATE records SET content = replace(content, 'user_alice', 'user_eve')"
            " WHERE position = 3",
        )
        second = await done(r, "tn_1", await r.start("tn_1", "a", full=False))
        assert second["ok"] and second["result"]["hashed_from"] == 30
        assert second["progress"]["records_checked"] == 12
        full = await done(r, "tn_1", await r.start("tn_1", "a", full=True))
        assert full["ok"] is False
        assert (full["result"]["failure"]["position"], full["result"]["failure"]["kind"]) == (
            3,
            "altered",
        )


async def test_eight_verifications_do_not_stall_ingestion(audit_log):
    log = audit_log
    for start in range(0, 20_000, 2_000):
        await log.append(2_000, start=start)
    await log.checkpoint()

    async def ingest(seconds: float, start: int, until=None) -> list[float]:
        lat, n, deadline = [], start, time.monotonic() + seconds
        while time.monotonic() < deadline or (until is not None and not until()):
            t = time.perf_counter()
            await log.append(20, start=n)
            lat.append(time.perf_counter() - t)
            n += 20
            await asyncio.sleep(0.005)
        return lat

    def p99(xs: list[float]) -> float:
        return sorted(xs)[int(0.99 * (len(xs) - 1))]

    quiet = await ingest(2.0, 100_000)
    # Eight tenants ask at once; as many runs as the service would allow at most.
    async with runner(log, loops=8) as r:
        started = [await r.start(f"tn_{i}", "auditor", full=True) for i in range(8)]
        idle = False

        async def watch() -> None:
            nonlocal idle
            idle = await eventually(r.idle, timeout=120, interval=0.2)

        watcher = asyncio.create_task(watch())
        busy = await ingest(2.0, 200_000, until=lambda: idle)
        await watcher
        results = [await done(r, f"tn_{i}", j) for i, j in enumerate(started)]
    assert all(j["ok"] for j in results), [j["result"] for j in results]
    assert min(j["result"]["records_checked"] for j in results) >= 20_000
    print(f"ingest p99: {p99(quiet) * 1000:.1f} ms quiet, {p99(busy) * 1000:.1f} ms verifying")
    # Ingestion never waits for a verification (own connections, hashing in worker
    # processes): a generous bound, the machine is shared.
    assert p99(busy) < max(5 * p99(quiet), 0.5)
    assert len(busy) >= 10


async def test_a_forged_job_row_does_not_move_where_the_next_run_starts(audit_log):
    """Whoever holds the ingest role can insert a 'successful' job row; without a
    receipt signed by the checkpoint key it moves nothing (ADR 0015)."""
    log = audit_log
    await log.append(20)
    await log.checkpoint()  # 20
    await log.append(20, start=20)
    await log.checkpoint()  # 40
    async with runner(log) as r:
        first = await done(r, "tn_1", await r.start("tn_1", "a", full=True))
        assert first["ok"] and first["result"]["verified_size"] == 40
        row = await log.admin.fetchrow(
            "SELECT receipt_root, receipt_key_id, receipt_signature FROM verification_jobs"
            " WHERE id = $1",
            first["id"],
        )
        assert row["receipt_signature"] and row["receipt_key_id"] == log.keyring.active
        # Forgeries: a bigger size without a receipt, and a real receipt moved to a size
        # it does not sign. Neither may become the start of an incremental run.
        await log.admin.execute(
            "INSERT INTO verification_jobs (id, tenant, requested_by, full_run, state, ok,"
            " verified_size, finished_at) VALUES ('vrf_fake1', 'tn_9', 'x', false, 'done',"
            " true, 1000000, now())"
        )
        await log.admin.execute(
            "INSERT INTO verification_jobs (id, tenant, requested_by, full_run, state, ok,"
            " verified_size, receipt_root, receipt_key_id, receipt_signature, finished_at)"
            " VALUES ('vrf_fake2', 'tn_9', 'x', false, 'done', true, 20, $1, $2, $3, now())",
            row["receipt_root"],
            row["receipt_key_id"],
            row["receipt_signature"],
        )
        # Tampering below 40 stays invisible to an incremental run started at 40 ...
        await as_superuser(
            log.admin,
            "UPDATE records SET content = replace(content, 'user_alice', 'user_eve')"
            " WHERE position = 25",
        )
        second = await done(r, "tn_1", await r.start("tn_1", "a", full=False))
        assert second["ok"] and second["result"]["hashed_from"] == 40
        # ... but once the genuine receipt is gone, the forged rows are ignored: the run
        # starts from the beginning and finds the tampering.
        await log.admin.execute("DELETE FROM verification_jobs WHERE id NOT LIKE 'vrf_fake%'")
        third = await done(r, "tn_1", await r.start("tn_1", "a", full=False))
        assert third["result"]["hashed_from"] == 0
        assert third["ok"] is False and third["result"]["failure"]["position"] == 25

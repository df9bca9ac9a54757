"""A verification that finds the log altered fires ClearwayAuditVerificationFailures
(deploy/prometheus/alerts.yaml, docs/runbooks/audit-verification.md)."""

from __future__ import annotations

import pytest

from clearway.shared.http import create_app
from clearway.shared.testing.alerts import Series, assert_fires, samples, scrape

from .test_audit_tamper_evidence import as_superuser
from .test_audit_verification_jobs import done, runner

pytestmark = pytest.mark.integration

JOB = {"job": "audit", "instance": "127.0.0.1:8004"}


async def test_an_altered_record_fires_the_audit_verification_alert(audit_log):
    app = create_app("audit", title="metrics")  # serves the process's metrics
    log = audit_log
    await log.append(5)
    await log.checkpoint()
    [before] = samples(await scrape(app), "clearway_audit_verifications_total", outcome="failed")
    await as_superuser(
        log.admin,
        "UPDATE records SET content = replace(content, 'user_alice', 'user_eve')"
        " WHERE position = 2",
    )
    async with runner(log) as r:
        job = await done(r, "tn_1", await r.start("tn_1", "a", full=True))
    assert job["ok"] is False
    [after] = samples(await scrape(app), "clearway_audit_verifications_total", outcome="failed")
    assert after.value == before.value + 1
    assert_fires(
        "ClearwayAuditVerificationFailures",
        [Series(before, after, scrape_labels=JOB)],
        {"job": "audit", "outcome": "failed"},
    )

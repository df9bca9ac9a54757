"""Retention of ended consents (docs/design.md §9): the evidence of a consent that
ended goes after ``consent_evidence``, the consent itself after ``consents``, both
rules in ``consent.retention_rules``; active consents are never purged, an operator's
override (``clearway-retention consent set``) is applied and kept, and each purge is
an audited ``platform.records_purged`` event."""

from __future__ import annotations

import asyncio

import pytest

from clearway.consent import handlers
from clearway.shared.actor import Actor
from clearway.shared.retention_cli import main as retention_cli

from .conftest import authorised_token, read_events

pytestmark = pytest.mark.integration


async def _ended(consent, days: float) -> str:
    """A consent approved (with evidence), revoked, and ended ``days`` ago."""
    consent_id, _ = await authorised_token(consent, consent.client(0, "partner"))
    await handlers.revoke_consent(
        consent.svc, "tnt_demo_alpha", consent_id, Actor("usr_alice"), "done"
    )
    await _ended_ago(consent, consent_id, days)
    return consent_id


async def _ended_ago(consent, consent_id: str, days: float) -> None:
    async with consent.svc.pool.acquire() as conn:
        await conn.execute(
            "UPDATE consents SET ended_at = now() - make_interval(days => $2) WHERE id = $1",
            consent_id,
            days,
        )


async def _state(consent) -> dict[str, bool]:
    """Consent id → whether it still holds evidence."""
    async with consent.svc.pool.acquire() as conn:
        rows = await conn.fetch("SELECT id, evidence IS NOT NULL AS kept FROM consents")
    return {r["id"]: r["kept"] for r in rows}


async def test_ended_consents_lose_their_evidence_then_go_and_active_ones_stay(consent):
    svc, records = consent.svc, consent.app.state.records
    partner = consent.client(0, "partner")
    gone = await _ended(consent, 731)  # past both rules (395 and 730 days)
    stripped = await _ended(consent, 400)  # past the evidence's rule only
    recent = await _ended(consent, 1)
    rejected = (await consent.create_consent(partner, subject="usr_alice"))["id"]
    par = {"consent_id": rejected, "client_id": partner["client_id"]}
    assert await handlers.decide(svc, par, "usr_alice", "tnt_demo_alpha", False, "t") is None
    await _ended_ago(consent, rejected, 800)
    active, token = await authorised_token(consent, partner)
    waiting = (await consent.create_consent(partner, subject="usr_bob"))["id"]
    async with svc.pool.acquire() as conn:
        # old active consents; even a stray end time does not make them purgeable
        await conn.execute(
            "UPDATE consents SET created_at = now() - interval '900 days',"
            " ended_at = now() - interval '900 days' WHERE id = ANY($1::text[])",
            [active, waiting],
        )
        assert await conn.fetchval(
            "SELECT count(*) FROM authorization_codes WHERE consent_id = $1", gone
        )

    assert await records.purge(svc.pool) == {"consent_evidence": 2, "consents": 2}
    assert await records.purge(svc.pool) == {"consent_evidence": 0, "consents": 0}
    assert await _state(consent) == {stripped: False, recent: True, active: True, waiting: False}
    async with svc.pool.acquire() as conn:
        assert not await conn.fetchval(
            "SELECT count(*) FROM authorization_codes WHERE consent_id = ANY($1::text[])",
            [gone, rejected],
        )
    admin = await consent.token(partner, "consents:read")
    read = await consent.http.get(
        f"{consent.url}/v1/consents/{stripped}", headers={"Authorization": f"Bearer {admin}"}
    )
    assert read.status_code == 200
    assert read.json()["status"] == "Revoked" and read.json()["evidence"] is None
    missing = await consent.http.get(
        f"{consent.url}/v1/consents/{gone}", headers={"Authorization": f"Bearer {admin}"}
    )
    assert missing.status_code == 404
    # the active consent's token is untouched
    introspected = await consent.http.post(
        f"{consent.url}/oauth/introspect",
        data={"token": token},
        auth=(partner["client_id"], partner["client_secret"]),
    )
    assert introspected.json()["active"] is True

    def purged(events) -> bool:
        return sum(e.type == "platform.records_purged" for e in events) >= 2

    seen = await read_events(consent.settings.platform.kafka, consent.settings.topic, purged)
    found = sorted(
        (e.data["record_class"], e.data["count"], e.data["retention_days"], e.subject)
        for e in seen
        if e.type == "platform.records_purged"
    )
    assert found == [
        ("consent_evidence", 2, 395, "retention:consent:consent_evidence"),
        ("consents", 2, 730, "retention:consent:consents"),
    ]


async def test_an_operator_override_through_the_cli_is_applied_and_kept(
    consent, monkeypatch, capsys
):
    svc, records = consent.svc, consent.app.state.records
    monkeypatch.setenv("CLEARWAY_DATABASE_URL", consent.settings.platform.database_url)
    month = await _ended(consent, 40)
    week = await _ended(consent, 7)
    args = ["consent", "set", "--class", "consent_evidence", "--days", "30"]
    args += ["--reason", "shorter by contract", "--operator", "alice"]
    assert await asyncio.to_thread(retention_cli, args) == 0
    assert "consent_evidence: 30 days (overridden by alice: shorter by contract)" in (
        capsys.readouterr().out
    )
    async with svc.pool.acquire() as conn:
        await records.seed(conn)  # a restart: the override stays
    assert await records.purge(svc.pool) == {"consent_evidence": 1, "consents": 0}
    assert await _state(consent) == {month: False, week: True}
    unknown = ["consent", "set", "--class", "vault_cards", "--days", "1"]
    unknown += ["--reason", "r", "--operator", "alice"]
    assert await asyncio.to_thread(retention_cli, unknown) == 2
    assert await asyncio.to_thread(retention_cli, ["consent", "list"]) == 0
    listed = capsys.readouterr().out
    assert "consents: 730 days\n" in listed and "last purge" in listed

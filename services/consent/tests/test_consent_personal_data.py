"""Consent evidence and user PII are sealed at rest, bound to their row (docs/design.md §9).

A sealed value copied onto another consent does not open, and the error names the
record; rows written in clear before the values were sealed are sealed at start,
in batches, and the API answers with the same values afterwards.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from clearway.consent import handlers
from clearway.consent.bootstrap import key_ring
from clearway.consent.service import Service
from clearway.consent.settings import ConsentSettings
from clearway.shared.crypto import RecordUnreadable
from clearway.shared.crypto.rotation import rewrap, rotate_kek
from clearway.shared.crypto.store_keys import count_below
from clearway.shared.crypto.tenant_keys import TENANT_KEY_COLUMN
from clearway.shared.db import create_pool

pytestmark = pytest.mark.integration

TENANT = "tnt_demo_alpha"


async def _headers(consent, partner) -> dict[str, str]:
    return {"Authorization": f"Bearer {await consent.token(partner, 'consents:read')}"}


async def _approve(consent, consent_id: str, partner, subject: str, user_agent: str) -> None:
    par = {
        "consent_id": consent_id,
        "client_id": partner["client_id"],
        "redirect_uri": "http://127.0.0.1:8765/callback",
        "code_challenge": "x" * 43,
        "scopes": ["payments:initiate"],
    }
    assert await handlers.decide(consent.svc, par, subject, TENANT, True, user_agent)


async def test_evidence_moved_to_another_consent_fails_to_open_naming_the_record(consent):
    partner = consent.client(0, "partner")
    first = await consent.create_consent(partner, subject="usr_alice")
    second = await consent.create_consent(partner, subject="usr_alice")
    await _approve(consent, first["id"], partner, "usr_alice", "AgentOne/1.0")
    await _approve(consent, second["id"], partner, "usr_alice", "AgentTwo/2.0")

    # the API opens what it sealed
    got = await consent.http.get(
        f"{consent.url}/v1/consents/{first['id']}", headers=await _headers(consent, partner)
    )
    assert got.status_code == 200, got.text
    assert got.json()["evidence"]["user_agent"] == "AgentOne/1.0"
    assert got.json()["authorization_details"] == first["authorization_details"]

    db = await asyncpg.connect(consent.settings.platform.database_url)
    try:
        await db.execute(
            "UPDATE consent.consents SET evidence ="
            " (SELECT evidence FROM consent.consents WHERE id = $1) WHERE id = $2",
            first["id"],
            second["id"],
        )
    finally:
        await db.close()
    with pytest.raises(RecordUnreadable) as unreadable:
        await handlers.get_consent(consent.svc, TENANT, second["id"])
    assert (
        unreadable.value.record
        == f"consent.consents.evidence of row {second['id']}, tenant {TENANT}"
    )
    assert "AgentOne" not in str(unreadable.value)
    answer = await consent.http.get(
        f"{consent.url}/v1/consents/{second['id']}", headers=await _headers(consent, partner)
    )
    assert answer.status_code == 500
    assert answer.headers["content-type"] == "application/problem+json"
    assert "AgentOne" not in answer.text and "Traceback" not in answer.text


async def test_rows_written_in_clear_are_sealed_at_start_and_read_the_same(consent):
    partner = consent.client(0, "partner")
    now = datetime.now(UTC)
    details = [
        {
            "type": "payment_initiation",
            "instructedAmount": {"amount": 700, "currency": "EUR"},
            "creditorName": "Legacy Creditor",
            "creditorAccount": {"iban": "FR1420041010050500013M02606"},
        }
    ]
    history = [
        {"status": "AwaitingAuthorisation", "at": now.isoformat(), "actor": {"subject": "x"}},
        {"status": "Authorised", "at": now.isoformat(), "actor": {"subject": "usr_legacy"}},
    ]
    evidence = {"subject": "usr_legacy", "user_agent": "LegacyAgent/0.1", "hash": "00"}
    db = await asyncpg.connect(consent.settings.platform.database_url)
    try:
        ids = [f"cns_legacy{i}" for i in range(3)]
        for i, cid in enumerate(ids):
            await db.execute(
                "INSERT INTO consent.consents (id, tenant, client_id, legacy_subject,"
                " legacy_purpose, legacy_authorization_details, scopes, terms_version,"
                " reference, status, version, legacy_history, legacy_evidence, created_at,"
                " expires_at) VALUES ($1, $2, $3, 'usr_legacy', 'Legacy purpose',"
                " $4::jsonb, '{payments:initiate}', 'v1', $5, 'Authorised', 2, $6::jsonb,"
                " $7::jsonb, $8, $9)",
                cid,
                TENANT,
                partner["client_id"],
                json.dumps(details),
                f"CW-LEGA-CY0{i}",
                json.dumps(history),
                json.dumps(evidence),
                now - timedelta(seconds=10 - i),
                now + timedelta(hours=1),
            )
        await db.execute(
            "INSERT INTO consent.users (subject, tenant, legacy_username, legacy_display_name,"
            " password_hash) VALUES ('usr_legacy', $1, 'legacy.login', 'Legacy Person', 'x')",
            TENANT,
        )
        # batches of one: every row is its own committed step (an interrupted start resumes)
        assert await handlers.open_personal_data(consent.svc, batch=1) == 4
        assert await handlers.open_personal_data(consent.svc, batch=1) == 0
        left = await db.fetchval(
            "SELECT count(*) FROM consent.consents WHERE legacy_history IS NOT NULL"
            " OR legacy_subject IS NOT NULL OR legacy_purpose IS NOT NULL"
        )
        assert left == 0
        clear = await db.fetchval(
            "SELECT count(*) FROM consent.users WHERE legacy_username IS NOT NULL"
            " OR legacy_display_name IS NOT NULL"
        )
        assert clear == 0
    finally:
        await db.close()

    user = await handlers.find_user(consent.svc, "legacy.login")
    assert user is not None and user["subject"] == "usr_legacy"
    listed = await consent.http.get(
        f"{consent.url}/v1/consents",
        params={"subject": "usr_legacy"},
        headers=await _headers(consent, partner),
    )
    assert listed.status_code == 200, listed.text
    data = listed.json()["data"]
    assert [c["id"] for c in data] == ids[::-1]
    assert data[0]["purpose"] == "Legacy purpose"
    assert data[0]["authorization_details"] == details
    assert data[0]["evidence"] == evidence
    assert [h["status"] for h in data[0]["status_history"]] == [
        "AwaitingAuthorisation",
        "Authorised",
    ]


async def test_kek_rotation_rewraps_every_sealed_personal_column(consent):
    partner = consent.client(0, "partner")
    created = await consent.create_consent(partner, subject="usr_alice")
    await _approve(consent, created["id"], partner, "usr_alice", "RotatingAgent/1.0")
    svc, envelope = consent.svc, consent.svc.pii.envelope
    async with svc.pool.acquire() as conn:
        new = await rotate_kek(conn, envelope, svc.events, reason="test: personal columns")
    # the tenant keys the values are bound to re-wrap with them (as clearway-keys does)
    columns = (*ConsentSettings.sealed_columns, TENANT_KEY_COLUMN)
    for column in columns:
        await rewrap(svc.pool, envelope, column, batch=2)
    async with svc.pool.acquire() as conn:
        for c in columns:
            # nothing left that retiring the older versions would strand
            assert await count_below(conn, c.table, c.column, envelope.provider.name, new) == 0, c
    envelope.cache.clear()  # open through the re-wrapped keys, not the cached ones
    again = await handlers.get_consent(svc, TENANT, created["id"])
    assert again.evidence is not None and again.evidence["user_agent"] == "RotatingAgent/1.0"
    assert (await handlers.find_user(svc, "alice"))["subject"] == "usr_alice"
    # a fresh process unwraps the tenant keys under the new KEK version
    pool = await create_pool(consent.settings.platform.database_url, schema="consent")
    try:
        fresh = Service(consent.settings, pool, pool, key_ring(consent.settings))
        reread = await handlers.get_consent(fresh, TENANT, created["id"])
        assert reread.purpose == created["purpose"]
    finally:
        await pool.close()

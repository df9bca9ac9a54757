"""Crypto-shredding reaches the consent store (docs/design.md §9, ADR 0027, ADR 0039).

Consents, evidence and users of two tenants are sealed under their tenant keys (a
consent sealed under the KEK alone before is re-sealed at start); shredding one tenant
as ``clearway-keys consent shred-tenant`` does (another process: this one drops its keys
on its ``tenant-keys`` job) makes every personal value of that tenant unreadable, here
and in a fresh process, and its API answers 403 ``tenant-offboarded`` (a token bound to
one of its consents introspects inactive), while the other tenant's consents read as
before and its requests for the shredded tenant's consent stay 404.
"""

from __future__ import annotations

import asyncpg
import pytest

from clearway.consent import handlers, store
from clearway.consent.bootstrap import key_ring
from clearway.consent.personal import PersonalData
from clearway.consent.service import Service
from clearway.shared.crypto import Envelope, RecordUnreadable
from clearway.shared.crypto.envelope import MAGIC, MAGIC_TENANT
from clearway.shared.crypto.tenant_keys import EVENT, TenantShredded, shred_tenant
from clearway.shared.db import create_pool

from .conftest import authorised_token, payment_details

pytestmark = pytest.mark.integration

ALPHA, BETA = "tnt_demo_alpha", "tnt_demo_beta"
COLUMNS = ("subject", "purpose", "authorization_details", "history", "evidence")


async def _approve(consent, consent_id: str, partner, subject: str, tenant: str) -> None:
    par = {
        "consent_id": consent_id,
        "client_id": partner["client_id"],
        "redirect_uri": "http://127.0.0.1:8765/callback",
        "code_challenge": "x" * 43,
        "scopes": ["payments:initiate"],
    }
    assert await handlers.decide(consent.svc, par, subject, tenant, True, "ShredAgent/1.0")


async def _kek_only_consent(consent, template: str) -> str:
    """A copy of consent ``template`` with every value sealed under the KEK alone, as
    the service wrote them before its personal data was bound to tenant keys."""
    svc, cid = consent.svc, "cns_kekonly0"
    legacy = Envelope(svc.pii.envelope.provider)  # no tenant keys: format 2
    async with svc.pool.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM consents WHERE id = $1", template)
        clear = store.opened_values(svc.pii, row)
        old = PersonalData(legacy, svc.pii.tenant_keys)
        await old.load(conn)
        sealed = store.sealed_values(old, cid, row["tenant"], clear)
        assert sealed["purpose"] is not None and sealed["purpose"][:4] == MAGIC
        await conn.execute(
            "INSERT INTO consents (id, tenant, client_id, subject, subject_index, purpose,"
            " authorization_details, scopes, terms_version, reference, status, version,"
            " history, evidence, created_at, expires_at) SELECT $1, tenant, client_id, $2,"
            " $3, $4, $5, scopes, terms_version, 'CW-KEKO-NLY0', status, version, $6, $7,"
            " created_at, expires_at FROM consents WHERE id = $8",
            cid,
            sealed["subject"],
            sealed["subject_index"],
            sealed["purpose"],
            sealed["authorization_details"],
            sealed["history"],
            sealed["evidence"],
            template,
        )
    return cid


async def test_shredding_a_tenant_makes_its_consents_and_users_unreadable(consent):
    svc = consent.svc
    alpha, beta = consent.client(0, "partner"), consent.client(1, "partner")
    mine = await consent.create_consent(alpha, subject="usr_alice")
    await _approve(consent, mine["id"], alpha, "usr_alice", ALPHA)
    theirs = await consent.create_consent(beta, purpose="Beta's rent")
    await _approve(consent, theirs["id"], beta, "usr_bob", BETA)

    bound_id, bound = await authorised_token(consent, alpha)  # a consent-bound token

    async def introspect(token: str):
        return await consent.http.post(
            f"{consent.url}/oauth/introspect",
            data={"token": token},
            auth=(alpha["client_id"], alpha["client_secret"]),
        )

    assert (await introspect(bound)).json()["active"] is True

    # a row sealed under the KEK alone before is re-sealed under its tenant key at start
    old = await _kek_only_consent(consent, mine["id"])
    assert await handlers.open_personal_data(svc) == 1
    assert await handlers.open_personal_data(svc) == 0
    async with svc.pool.acquire() as conn:
        formats = {
            bytes(v)[:4]
            for r in await conn.fetch(f"SELECT {', '.join(COLUMNS)} FROM consents")
            for v in r.values()
            if v is not None
        } | {
            bytes(v)[:4]
            for r in await conn.fetch("SELECT username, display_name FROM users")
            for v in r.values()
        }
    assert formats == {MAGIC_TENANT}, formats
    assert (await handlers.get_consent(svc, ALPHA, old)).purpose == mine["purpose"]

    # clearway-keys consent shred-tenant: another process, the service drops the keys
    # on its next tenant-keys job
    async with svc.pool.acquire() as conn:
        destroyed = await shred_tenant(
            conn, "consent", svc.events, tenant=ALPHA, reason="contract ended"
        )
        assert destroyed >= 1  # the tenant's key (and its sandbox twin's, if it had one)
        shredded = await conn.fetchval(
            "SELECT count(*) FROM outbox WHERE headers::text LIKE $1", f"%{EVENT}%"
        )
        assert shredded == 2  # one event for the tenant, one for its twin
    await svc.pii.tenant_keys.refresh()

    async def get(partner, consent_id: str):
        token = await consent.token(partner, "consents:read")
        return await consent.http.get(
            f"{consent.url}/v1/consents/{consent_id}",
            headers={"Authorization": f"Bearer {token}"},
        )

    for consent_id in (mine["id"], old):
        answer = await get(alpha, consent_id)
        assert answer.status_code == 403, answer.text
        assert answer.json()["type"].endswith("tenant-offboarded")
        assert "Pay your electricity bill" not in answer.text
        # another tenant asking for it: not found, as before
        assert (await get(beta, consent_id)).status_code == 404
    token = await consent.token(alpha, "consents:read")
    listed = await consent.http.get(
        f"{consent.url}/v1/consents", headers={"Authorization": f"Bearer {token}"}
    )
    assert listed.status_code == 403 and listed.json()["type"].endswith("tenant-offboarded")
    token = await consent.token(alpha, "consents:write")
    created = await consent.http.post(
        f"{consent.url}/v1/consents",
        json={"purpose": "after offboarding", "authorization_details": [payment_details()]},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert created.status_code == 403 and created.json()["type"].endswith("tenant-offboarded")
    assert await handlers.find_user(svc, "alice") is None  # alpha's user: gone with it
    # the token bound to a consent that is gone: inactive (RFC 7662), not an error
    answer = await introspect(bound)
    assert answer.status_code == 200 and answer.json() == {"active": False}, answer.text

    # the other tenant reads as before
    kept = await get(beta, theirs["id"])
    assert kept.status_code == 200, kept.text
    assert kept.json()["purpose"] == "Beta's rent"
    assert kept.json()["evidence"]["user_agent"] == "ShredAgent/1.0"

    # a fresh process (a restart, another replica): nothing of alpha opens, beta's does
    pool = await create_pool(consent.settings.platform.database_url, schema="consent")
    try:
        fresh = Service(consent.settings, pool, pool, key_ring(consent.settings))
        await handlers.open_personal_data(fresh)  # nothing to re-seal, nothing deleted
        assert (await handlers.get_consent(fresh, BETA, theirs["id"])).purpose == "Beta's rent"
        with pytest.raises(TenantShredded):
            await handlers.get_consent(fresh, ALPHA, mine["id"])
        async with pool.acquire() as conn:
            rows = await conn.fetch("SELECT * FROM consents WHERE tenant = $1", ALPHA)
            users = await conn.fetch("SELECT * FROM users WHERE tenant = $1", ALPHA)
            assert await store.get_consent(conn, mine["id"], fresh.pii) is None
        assert {r["id"] for r in rows} == {mine["id"], old, bound_id} and users
        for row in rows:
            for column in COLUMNS:
                if row[column] is None:
                    continue
                with pytest.raises(RecordUnreadable, match="destroyed"):
                    fresh.pii.open("consents", column, row["id"], ALPHA, row[column])
        for user in users:
            for column in ("username", "display_name"):
                with pytest.raises(RecordUnreadable, match="destroyed"):
                    fresh.pii.open("users", column, user["subject"], ALPHA, user[column])
    finally:
        await pool.close()
    # the raw rows hold no clear personal value of the shredded tenant
    db = await asyncpg.connect(consent.settings.platform.database_url)
    try:
        dump = await db.fetchval(
            "SELECT string_agg(encode(purpose, 'escape'), '') FROM consent.consents"
        )
    finally:
        await db.close()
    assert "electricity" not in dump and "Beta's rent" not in dump

"""A ``pg_dump`` after the services ran holds no secret in clear (docs/design.md §9).

Webhooks created an endpoint (its ``whsec_`` secret), consent started (signing
key generated in the HSM, session/CSRF key generated), rotated its signing keys and its KEK, and
went through a consent flow (a user registered, a payment consent created,
approved at the page with its evidence, then revoked with a reason). The dump and
the logs must contain no ``whsec_``, no PEM or JWK private key, no session key,
whatever the encoding Postgres uses for bytea (hex) or the services for keys
(base64url); the dump holds none of the consent's evidence or the user's personal
data either, while the API still answers with them. The consent outbox is relayed
before the dump: the events on the topic carry their own data (see ADR 0016).
"""

from __future__ import annotations

import base64
import logging
import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from clearway.consent import clients
from clearway.consent import handlers as consent_handlers
from clearway.consent.bootstrap import build_app
from clearway.consent.settings import ConsentSettings
from clearway.shared.actor import Actor
from clearway.shared.auth import Principal
from clearway.shared.crypto.rotation import rotate_kek
from clearway.shared.db import create_pool
from clearway.shared.testing.helpers import eventually, free_port, serve
from clearway.webhooks import handlers
from clearway.webhooks.bootstrap import make_context, prepare_database
from clearway.webhooks.domain import secret_key
from clearway.webhooks.settings import WebhooksSettings

pytestmark = pytest.mark.integration


def _pg_dump() -> str:
    found = shutil.which("pg_dump") or next(
        iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_dump"))), None
    )
    assert found, "pg_dump not found"
    return str(found)


#: what the consent flow below writes that identifies a person or records the consent
PERSONAL = {
    "username": "zoe.unique-login",
    "display name": "Zoë Uniquename-Person",
    "purpose": "Pay invoice PURPOSE-7Q3",
    "creditor name": "Creditor Uniquename GmbH",
    "creditor IBAN": "DE89370400440532013000",
    "remittance information": "REMIT-7Q3",
    "user agent": "PiiAgent/9.9 (unique-ua)",
    "revocation reason": "REASON-7Q3 moved banks",
}
SUBJECT, TENANT, PARTNER = "usr_zoe7q3", "ten_acme", "ten_acme-pii-shop"


async def _consent_flow(svc, url: str, http: httpx.AsyncClient) -> dict:
    """A user, a payment consent, its approval at the page and a revocation; returns the
    consent as the API answers it."""
    secret = await clients.register_client(
        svc,
        client_id=PARTNER,
        tenant=TENANT,
        name="PII shop",
        scopes=["consents:write", "consents:read", "payments:initiate"],
        redirect_uris=["https://shop.example/cb"],
    )
    await consent_handlers.register_users(
        svc,
        [(SUBJECT, TENANT, PERSONAL["username"], PERSONAL["display name"])],
        svc.hash_secret("pw"),
    )
    assert (await consent_handlers.find_user(svc, PERSONAL["username"]))["subject"] == SUBJECT
    details = {
        "type": "payment_initiation",
        "instructedAmount": {"amount": 4200, "currency": "EUR"},
        "creditorName": PERSONAL["creditor name"],
        "creditorAccount": {"iban": PERSONAL["creditor IBAN"]},
        "remittanceInformation": PERSONAL["remittance information"],
    }
    consent = await consent_handlers.create_consent(
        svc,
        consent_handlers.CreateConsent(
            tenant=TENANT,
            client_id=PARTNER,
            subject=SUBJECT,
            purpose=PERSONAL["purpose"],
            authorization_details=[details],
            scopes=["payments:initiate"],
            terms_version="v1",
            ttl_s=600,
            actor=Actor("cli", client_id=PARTNER),
        ),
    )
    par = {
        "consent_id": consent.id,
        "client_id": PARTNER,
        "redirect_uri": "https://shop.example/cb",
        "code_challenge": "x" * 43,
        "scopes": ["payments:initiate"],
    }
    code = await consent_handlers.decide(svc, par, SUBJECT, TENANT, True, PERSONAL["user agent"])
    assert code
    await consent_handlers.revoke_consent(
        svc, TENANT, consent.id, Actor(SUBJECT), PERSONAL["revocation reason"], subject=SUBJECT
    )
    token = await http.post(
        f"{url}/oauth/token",
        data={"grant_type": "client_credentials", "scope": "consents:read"},
        auth=(PARTNER, secret),
    )
    assert token.status_code == 200, token.text
    auth = {"Authorization": f"Bearer {token.json()['access_token']}"}
    listed = await http.get(f"{url}/v1/consents", params={"subject": SUBJECT}, headers=auth)
    assert [c["id"] for c in listed.json()["data"]] == [consent.id], listed.text
    got = await http.get(f"{url}/v1/consents/{consent.id}", headers=auth)
    assert got.status_code == 200, got.text
    return dict(got.json())


def _encodings(raw: bytes) -> list[str]:
    return [
        raw.hex(),
        base64.b64encode(raw).decode().rstrip("="),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
    ]


async def test_pg_dump_and_logs_hold_no_secret(platform, tmp_path, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    port = free_port()
    consent_settings = ConsentSettings(
        platform=platform.replace(oauth_issuer=f"http://127.0.0.1:{port}", local_dir=tmp_path),
        port=port,
        argon2_time_cost=1,
        argon2_memory_kib=1024,
    )
    app = build_app(consent_settings)
    async with serve(app, port) as url, httpx.AsyncClient() as http:
        svc = app.state.consent
        async with svc.pool.acquire() as conn:
            await svc.keys.rotate(conn, svc.events, reason="test", immediately=True)
            await rotate_kek(conn, svc.keys.envelope, svc.events, reason="test")
        assert (await http.get(f"{url}/.well-known/jwks.json")).status_code == 200
        session_key = svc.session_key
        # the token-signing private keys are in the HSM (ADR 0019): Postgres holds their
        # public JWKs only, and the public halves must be what it holds
        published = [k.public_jwk for k in svc.keys._keys]
        shown = await _consent_flow(svc, url, http)

        async def relayed() -> bool:  # the events leave with their own data (ADR 0016)
            return await svc.pool.fetchval("SELECT count(*) FROM outbox") == 0

        await eventually(relayed, timeout=30)
    # the API answers with the values the database holds only sealed
    assert shown["subject"] == SUBJECT and shown["purpose"] == PERSONAL["purpose"]
    assert shown["authorization_details"][0]["creditorAccount"]["iban"] == PERSONAL["creditor IBAN"]
    assert shown["evidence"]["user_agent"] == PERSONAL["user agent"]
    assert shown["status_history"][-1]["reason"] == PERSONAL["revocation reason"]

    webhooks = WebhooksSettings(platform=platform)
    dsn = await prepare_database(webhooks)
    pool = await create_pool(dsn, schema="webhooks")
    now = datetime.now(UTC)
    principal = Principal("usr_t", "cli_t", "ten_acme", frozenset(), None, "at_1", now, now)
    async with pool.acquire() as conn:
        _, secret = await handlers.create_endpoint(
            make_context(webhooks),
            conn,
            principal,
            "ten_acme",
            url="https://partner.example/hook",
            description="",
            event_types=["platform.*"],
            rate_limit_per_s=None,
        )
    await pool.close()

    dump = subprocess.run(
        [_pg_dump(), "--no-owner", platform.database_url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "CREATE TABLE consent.session_keys" in dump and "webhooks.endpoint_secrets" in dump
    logs = caplog.text
    forbidden = {
        "whsec_": "whsec_",
        "webhook secret": secret.removeprefix("whsec_"),
        "PEM private key": "PRIVATE KEY",
    }
    for i, raw in enumerate(_encodings(session_key)):
        forbidden[f"session key ({i})"] = raw
    for i, raw in enumerate(_encodings(secret_key(secret))):
        forbidden[f"webhook signing key ({i})"] = raw
    for what, text in forbidden.items():
        assert text not in dump, f"{what} found in pg_dump"
        assert text not in logs, f"{what} found in the logs"
    for what, text in PERSONAL.items():
        assert text not in dump, f"the consent's {what} found in pg_dump"
        assert text.encode().hex() not in dump, f"the consent's {what} found in pg_dump (hex)"
    # the subject is a pseudonymous reference that tokens and events carry (ADR 0016),
    # but the consents table does not link it to a consent in clear
    consents = dump.split("COPY consent.consents ")[1].split("\n\\.\n")[0]
    assert consents.count("\n") >= 1 and SUBJECT not in consents.split("\n", 1)[1]
    assert not re.search(r'"d"\s*:\s*"', dump), "a JWK private parameter in pg_dump"
    assert "private_ciphertext" not in dump, "a column for sealed private keys in pg_dump"
    keys = dump.split("COPY consent.signing_keys ")[1].split("\n\\.\n")[0]
    assert len(published) >= 2 and all(jwk["x"] in keys for jwk in published)

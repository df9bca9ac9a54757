"""A ``pg_dump`` after the services ran holds no secret in clear (docs/design.md §9).

Webhooks created an endpoint (its ``whsec_`` secret), consent started (signing
key and session/CSRF key generated), rotated its signing keys and its KEK; the
outbox rows (what goes to the topics) are in the dump too. The dump and the logs
must contain no ``whsec_``, no PEM or JWK private key, no session key, whatever
the encoding Postgres uses for bytea (hex) or the services for keys (base64url).
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

from clearway.consent.bootstrap import build_app
from clearway.consent.settings import ConsentSettings
from clearway.shared.auth import Principal
from clearway.shared.crypto.rotation import rotate_kek
from clearway.shared.db import create_pool
from clearway.shared.testing.helpers import free_port, serve
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
            await svc.keys.rotate(conn, immediately=True)
            await rotate_kek(conn, svc.keys.encryption.envelope, svc.events, reason="test")
        assert (await http.get(f"{url}/.well-known/jwks.json")).status_code == 200
        session_key = svc.session_key
        private = [k.key.as_dict(private=True) for k in svc.keys._keys]

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
    for jwk in private:
        forbidden[f"JWK private d of {jwk['kid']}"] = jwk["d"]
        forbidden[f"raw private key of {jwk['kid']}"] = base64.urlsafe_b64decode(
            jwk["d"] + "=" * (-len(jwk["d"]) % 4)
        ).hex()
    for what, text in forbidden.items():
        assert text not in dump, f"{what} found in pg_dump"
        assert text not in logs, f"{what} found in the logs"
    assert not re.search(r'"d"\s*:\s*"', dump), "a JWK private parameter in pg_dump"

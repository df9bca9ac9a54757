"""Each service's FastAPI app built by its own bootstrap for in-process e2e tests.

Resource services verify tokens of a ``TestIssuer`` (issuer ``ISSUER``, its JWK Set
given as the services' own tests do); the consent service is the issuer itself,
so its app signs with its own keys (see ``consent_token``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from clearway.shared.testing.helpers import free_port
from clearway.shared.testing.issuer import TestIssuer

ISSUER = "https://auth.test.clearway"


def transfer_app(platform, issuer: TestIssuer, tmp: Path) -> FastAPI:
    from clearway.transfer.bootstrap import build_app
    from clearway.transfer.settings import TransferSettings

    return build_app(
        TransferSettings(
            platform=platform.replace(oauth_issuer=ISSUER),
            jwks=issuer.jwks(),
            run_executor=False,
            revocation_feed=False,
            rail_url="http://127.0.0.1:9",
        )
    )


def webhooks_app(platform, issuer: TestIssuer, tmp: Path) -> FastAPI:
    from clearway.webhooks.bootstrap import build_app
    from clearway.webhooks.settings import WebhooksSettings

    platform = platform.replace(oauth_issuer=ISSUER)
    return build_app(WebhooksSettings(platform=platform, jwks=issuer.jwks()))


def audit_app(platform, issuer: TestIssuer, tmp: Path) -> FastAPI:
    from clearway.audit.bootstrap import build_app
    from clearway.audit.settings import AuditSettings

    return build_app(
        AuditSettings(
            platform=platform.replace(oauth_issuer=ISSUER),
            jwks=issuer.jwks(),
            key_provider="keyring",
            keyring_dir=tmp,
        )
    )


def rail_app(platform, issuer: TestIssuer, tmp: Path) -> FastAPI:
    from clearway.rail.bootstrap import build_app
    from clearway.rail.settings import RailSettings

    return build_app(
        RailSettings(platform=platform.replace(oauth_issuer=ISSUER), jwks=issuer.jwks())
    )


def vault_app(platform, issuer: TestIssuer, tmp: Path) -> FastAPI:
    from clearway.vault.bootstrap import build_app
    from clearway.vault.settings import VaultSettings

    return build_app(
        VaultSettings(platform=platform.replace(oauth_issuer=ISSUER), jwks=issuer.jwks())
    )


def consent_app(platform, issuer: TestIssuer, tmp: Path) -> FastAPI:
    """The consent service (its own issuer: ``issuer`` is not used), seeded with the
    demo tenants and clients; cheap password hashes as in its own tests."""
    from clearway.consent.bootstrap import build_app
    from clearway.consent.settings import ConsentSettings

    port = free_port()
    return build_app(
        ConsentSettings(
            platform=platform.replace(oauth_issuer=f"http://127.0.0.1:{port}", local_dir=tmp),
            port=port,
            seed_demo=True,
            argon2_time_cost=1,
            argon2_memory_kib=1024,
        )
    )


def consent_token(
    app: FastAPI,
    scopes: set[str],
    tenant: str,
    ttl_s: int = 600,
    client_id: str = "cli_contract_check",
) -> str:
    """An access token signed by the running consent app's current key, as it signs its own;
    ``client_id`` must be a registered client where the token creates records for it
    (a consent references its client)."""
    svc = app.state.consent
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": svc.settings.issuer,
        "sub": "usr_contract_check",
        "aud": "clearway-consent",
        "client_id": client_id,
        "scope": " ".join(sorted(scopes)),
        "tenant": tenant,
        "iat": now,
        "nbf": now,
        "exp": now + ttl_s,
        "jti": f"at_{uuid.uuid4().hex}",
    }
    return str(svc.keys.sign(claims, typ="at+jwt"))


#: Resource services (they trust a ``TestIssuer``), by the name their audience uses.
RESOURCE_SERVICES: dict[str, Callable[..., FastAPI]] = {
    "transfer": transfer_app,
    "webhooks": webhooks_app,
    "audit": audit_app,
    "rail": rail_app,
    "vault": vault_app,
}

"""Demo data for the embedded stack (development only): two tenants and their
sandbox twins (``<tenant>_test``, test mode), each with a client per role, the
platform's own service clients, and demo users for the consent page's development
identity.

Idempotent: a client that exists keeps its secret when ``dev-clients.json`` still
holds a working one; otherwise (or with ``rotate=True``) its secret is rotated.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

from clearway.consent import clients, handlers
from clearway.consent.clientauth import _verify
from clearway.consent.domain import ClientStatus
from clearway.consent.scopes import OPERATOR_SIGN_IN, PARTNER_SIGN_IN, PLATFORM_TENANT
from clearway.consent.service import Service
from clearway.shared.actor import Actor
from clearway.shared.mode import sandbox_twin

TENANTS = ("tnt_demo_alpha", "tnt_demo_beta")
REDIRECT_URIS = ["http://127.0.0.1:8765/callback", "http://localhost:8765/callback"]
#: role → scopes; client ids are ``<tenant>-<role>``.
ROLES: dict[str, list[str]] = {
    "partner": [
        "payments:initiate",
        "payments:read",
        "payments:cancel",
        "consents:read",
        "consents:write",
        "consents:revoke",
        "cards:tokenize",
    ],
    "webhooks": ["webhooks:endpoints:manage", "webhooks:read", "webhooks:replay"],
    "auditor": ["audit:read"],
    "admin": ["admin:clients", "admin:consents"],
}
#: The platform's own clients (client credentials for internal calls,
#: docs/design.md §7, and the platform operator's): client id → scopes. Their
#: tenant is the platform's own.
SERVICE_CLIENTS: dict[str, list[str]] = {
    # the executor alone may read card numbers (docs/design.md §9)
    "clearway-transfer": ["rail:charges", "rail:settlements", "cards:verify", "cards:detokenize"],
    "clearway-sandbox": ["rail:sandbox"],
    "clearway-operator": [
        "platform:keys",
        "platform:clients",
        "platform:webhooks",
        "platform:audit",
    ],
}
#: Demo users of the development identity (username, display name, tenant).
USERS = [
    ("alice", "Alice Demo", TENANTS[0]),
    ("bob", "Bob Demo", TENANTS[1]),
    # the console's operator role (docs/design.md §7): a user of the operator tenant
    ("olga", "Olga Operator", PLATFORM_TENANT),
]
#: The console (first-party, confidential, PKCE): it may ask for either role's scopes;
#: each user's token is narrowed to their own role's.
CONSOLE_CLIENT = "clearway-console"
CONSOLE_SCOPES = sorted(OPERATOR_SIGN_IN | PARTNER_SIGN_IN)
DEMO_PASSWORD = "demo-password"  # noqa: S105 (documented development-only credential)


def _existing(path: Path) -> dict[str, str]:
    try:
        return {c["client_id"]: c["client_secret"] for c in json.loads(path.read_text())}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


async def seed(svc: Service, local_dir: Path, *, rotate: bool = False) -> Path:
    path = Path(local_dir) / "dev-clients.json"
    known = _existing(path)
    out: list[dict[str, Any]] = []
    system = Actor.system("seed")
    wanted = [
        (
            tenant,
            f"{tenant}-{role}",
            f"Demo {role} ({tenant})",
            scopes,
            REDIRECT_URIS if role == "partner" else [],
        )
        for tenant in TENANTS + tuple(sandbox_twin(t) for t in TENANTS)
        for role, scopes in ROLES.items()
    ] + [
        (PLATFORM_TENANT, client_id, f"Service {client_id}", scopes, [])
        for client_id, scopes in SERVICE_CLIENTS.items()
    ] + [
        (
            PLATFORM_TENANT,
            CONSOLE_CLIENT,
            "Clearway Console",
            CONSOLE_SCOPES,
            list(svc.settings.console_redirect_uris),
        )
    ]
    for tenant, client_id, name, scopes, redirects in wanted:
        row = await handlers.find_client(svc, client_id)
        if row is None:
            secret = await clients.register_client(
                svc,
                client_id=client_id,
                tenant=tenant,
                name=name,
                scopes=scopes,
                redirect_uris=redirects,
            )
        else:
            secret = known.get(client_id)
            works = secret is not None and await asyncio.to_thread(
                _verify, row["secret_hash"], secret
            )
            if rotate or not works or row["status"] != ClientStatus.ACTIVE:
                secret = await clients.rotate_client_secret(
                    svc, tenant, client_id, system, "demo seed", None, 0, admin=False
                )
        out.append(
            {"tenant": tenant, "client_id": client_id, "client_secret": secret, "scopes": scopes}
        )
    password_hash = svc.hash_secret(DEMO_PASSWORD)
    await handlers.register_users(
        svc,
        # users are personal data: only those of the tenants this region serves (§9)
        [
            (f"usr_{username}", tenant, username, name)
            for username, name, tenant in USERS
            if svc.residency.serves(tenant)
        ],
        password_hash,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(out, indent=2) + "\n")
    os.chmod(tmp, 0o600)
    tmp.replace(path)
    return path

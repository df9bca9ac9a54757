"""Client and key administration: every change is an event, admin ones also an
``consent.admin_action`` with the operator's reason."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from clearway.consent import events, store
from clearway.consent.handlers import NotFound
from clearway.consent.service import Service
from clearway.shared.actor import Actor


def new_secret() -> str:
    # The kit's redaction layer recognises this prefix and masks what follows.
    return f"clearway_secret_{secrets.token_urlsafe(32)}"


async def register_client(
    svc: Service,
    *,
    client_id: str,
    tenant: str,
    name: str,
    scopes: list[str],
    redirect_uris: list[str] = (),
    jwks: dict[str, Any] | None = None,
) -> str | None:
    """Register a client; returns its secret (``None`` for ``private_key_jwt`` clients)."""
    secret = None if jwks else new_secret()
    async with svc.pool.acquire() as conn:
        await store.insert_client(
            conn,
            client_id=client_id,
            tenant=tenant,
            name=name,
            scopes=sorted(scopes),
            auth_method="private_key_jwt" if jwks else "client_secret_basic",
            secret_hash=svc.hash_secret(secret) if secret else None,
            jwks=jwks,
            redirect_uris=list(redirect_uris),
        )
    return secret


async def _client_for_update(conn: Any, tenant: str | None, client_id: str) -> Any:
    client = await store.get_client(conn, client_id, lock=True)
    if client is None or (tenant is not None and client["tenant"] != tenant):
        raise NotFound(client_id)
    return client


async def disable_client(
    svc: Service,
    tenant: str | None,
    client_id: str,
    actor: Actor,
    reason: str,
    approver: str | None,
) -> None:
    now = datetime.now(UTC)
    async with svc.pool.acquire() as conn, conn.transaction():
        client = await _client_for_update(conn, tenant, client_id)
        version = client["version"] + 1
        await conn.execute(
            "UPDATE clients SET status = 'disabled', revoked_before = $2, version = $3"
            " WHERE client_id = $1",
            client_id,
            now,
            version,
        )
        data = {
            "client_id": client_id,
            "tenant": client["tenant"],
            "at": events.rfc3339(now),
            "reason": reason,
        }
        await svc.events.write(
            conn,
            svc.events.event(
                "client.disabled",
                subject=client_id,
                version=version,
                data=data,
                actor=actor,
                tenant=client["tenant"],
            ),
            events.admin_action(
                svc.events, actor, "disable_client", client_id, version, reason, approver, tenant
            ),
        )


async def rotate_client_secret(
    svc: Service,
    tenant: str | None,
    client_id: str,
    actor: Actor,
    reason: str,
    approver: str | None,
    overlap_s: int | None = None,
    *,
    admin: bool = True,
) -> str:
    """A new secret; the old one keeps working for ``overlap_s`` (0 when the client was
    locked: a possibly guessed secret must stop at once). Tokens issued before are refused
    (``client.credentials_rotated``); a locked client is active again."""
    now = datetime.now(UTC)
    secret = new_secret()
    async with svc.pool.acquire() as conn, conn.transaction():
        client = await _client_for_update(conn, tenant, client_id)
        if client["status"] == "disabled":
            raise NotFound(client_id)
        overlap = svc.settings.secret_overlap_s if overlap_s is None else overlap_s
        if client["status"] == "locked":
            overlap = 0
        until = now + timedelta(seconds=overlap) if overlap > 0 else None
        version = client["version"] + 1
        await conn.execute(
            "UPDATE clients SET secret_hash = $2, previous_secret_hash = $3,"
            " previous_secret_valid_until = $4, status = 'active', failed_attempts = 0,"
            " revoked_before = $5, version = $6 WHERE client_id = $1",
            client_id,
            svc.hash_secret(secret),
            client["secret_hash"] if until else None,
            until,
            now,
            version,
        )
        data = {
            "client_id": client_id,
            "tenant": client["tenant"],
            "at": events.rfc3339(now),
            "previous_secret_valid_until": events.rfc3339(until) if until else None,
            "reason": reason,
        }
        out = [
            svc.events.event(
                "client.credentials_rotated",
                subject=client_id,
                version=version,
                data=data,
                actor=actor,
                tenant=client["tenant"],
            )
        ]
        if admin:
            out.append(
                events.admin_action(
                    svc.events,
                    actor,
                    "rotate_client_secret",
                    client_id,
                    version,
                    reason,
                    approver,
                    tenant,
                )
            )
        await svc.events.write(conn, *out)
    return secret


async def rotate_keys(
    svc: Service, actor: Actor | None, reason: str, approver: str | None, tenant: str | None
) -> dict[str, Any]:
    """Publish a new signing key now; it signs after the activation delay."""
    async with svc.pool.acquire() as conn:
        key = await svc.keys.rotate(conn)
        assert key is not None
        data = {
            "kid": key.kid,
            "alg": key.alg,
            "activates_at": events.rfc3339(key.activates_at),
            "reason": reason,
            "actor": actor.as_data() if actor else None,
        }
        async with conn.transaction():
            # A key is made once: version 1 of the aggregate named by its kid.
            out = [
                svc.events.event(
                    "consent.signing_key_rotated",
                    subject=key.kid,
                    version=1,
                    data=data,
                    tenant=tenant,
                )
            ]
            if actor is not None:
                out.append(
                    events.admin_action(
                        svc.events, actor, "rotate_keys", key.kid, 1, reason, approver, tenant
                    )
                )
            await svc.events.write(conn, *out)
    return {"kid": key.kid, "alg": key.alg, "activates_at": events.rfc3339(key.activates_at)}


async def keep_keys_current(svc: Service) -> None:
    """Reload the keys (another replica may have rotated) and rotate when due."""
    async with svc.pool.acquire() as conn:
        key = await svc.keys.ensure_current(conn)
        if key is None:
            return
        data = {
            "kid": key.kid,
            "alg": key.alg,
            "activates_at": events.rfc3339(key.activates_at),
            "reason": "scheduled rotation",
            "actor": None,
        }
        async with conn.transaction():
            await svc.events.emit(
                conn, "consent.signing_key_rotated", subject=key.kid, version=1, data=data
            )

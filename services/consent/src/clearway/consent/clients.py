"""Client and key administration: every change is an event, admin ones also an
``consent.admin_action`` with the operator's reason."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from clearway.consent import events, store, store_clients, store_keys
from clearway.consent.domain import ClientStatus
from clearway.consent.handlers import NotFound
from clearway.consent.scopes import PLATFORM_SCOPES, PLATFORM_TENANT, TENANT_SCOPES
from clearway.consent.service import Service
from clearway.shared.actor import Actor
from clearway.shared.mode import Mode, mode_of, sandbox_twin
from clearway.shared.versions import CURRENT_VERSION


def new_secret(tenant: str) -> str:
    """A client secret; a test-mode client's (of a sandbox twin) says so, as Stripe's
    ``sk_test_`` keys do (docs/design.md §10)."""
    # The kit's redaction layer recognises this prefix and masks what follows.
    mode = "test_" if mode_of(tenant) is Mode.TEST else ""
    return f"clearway_secret_{mode}{secrets.token_urlsafe(32)}"


async def register_client(
    svc: Service,
    *,
    client_id: str,
    tenant: str,
    name: str,
    scopes: list[str],
    redirect_uris: list[str] = (),
    jwks: dict[str, Any] | None = None,
    api_version: str = CURRENT_VERSION,
) -> str | None:
    """Register a client; returns its secret (``None`` for ``private_key_jwt`` clients).

    The client is pinned to ``api_version``, by default the current dated version
    (docs/design.md §10); its tokens carry the pin as the ``cw_ver`` claim.
    Platform scopes are for the operator tenant's clients only (docs/design.md §7)."""
    if tenant != PLATFORM_TENANT and set(scopes) & PLATFORM_SCOPES:
        raise ValueError(f"platform scopes are for {PLATFORM_TENANT} clients only")
    secret = None if jwks else new_secret(tenant)
    async with svc.global_pool.acquire() as conn:
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
            api_version=api_version,
        )
    return secret


async def clients_on_version(
    svc: Service, version: str, *, tenant: str | None, after: str | None, limit: int
) -> list[Any]:
    """Clients still pinned to ``version`` (the tenant's, or all with ``tenant=None``)."""
    async with svc.global_pool.acquire() as conn:
        return await store_clients.clients_on_version(conn, version, tenant, after, limit)


class NotGrantable(ValueError):
    """Scopes a tenant's client may not hold (unknown, platform or service scopes)."""


async def register_sandbox_client(
    svc: Service,
    tenant: str,
    *,
    name: str,
    scopes: list[str],
    actor: Actor,
    reason: str,
    approver: str | None,
) -> dict[str, Any]:
    """A test-mode client of ``tenant``'s sandbox twin (``<tenant>_test``), registered
    by the tenant's admin: its tokens carry the twin as their tenant, so everything
    it does happens in test mode (docs/design.md §10). Returns the client with its
    secret, shown once; audited as a ``consent.admin_action`` of the twin."""
    refused = set(scopes) - TENANT_SCOPES
    if refused:
        raise NotGrantable(" ".join(sorted(refused)))
    twin = sandbox_twin(tenant)
    client_id = f"{twin}-{secrets.token_hex(6)}"
    secret = new_secret(twin)
    async with svc.global_pool.acquire() as conn, conn.transaction():
        await store.insert_client(
            conn,
            client_id=client_id,
            tenant=twin,
            name=name,
            scopes=sorted(set(scopes)),
            auth_method="client_secret_basic",
            secret_hash=svc.hash_secret(secret),
            api_version=CURRENT_VERSION,
        )
        await svc.events.write(
            conn,
            events.admin_action(
                svc.events, actor, "register_sandbox_client", client_id, 1, reason, approver, twin
            ),
        )
    return {
        "client_id": client_id,
        "client_secret": secret,
        "tenant": twin,
        "mode": str(Mode.TEST),
        "scopes": sorted(set(scopes)),
    }


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
) -> str:
    """Disable the client (its tokens are refused everywhere); returns its tenant."""
    now = datetime.now(UTC)
    async with svc.global_pool.acquire() as conn, conn.transaction():
        client = await _client_for_update(conn, tenant, client_id)
        version = client["version"] + 1
        await store_clients.disable_client(conn, client_id, now, version)
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
                major=events.MAJOR,
            ),
            events.admin_action(
                svc.events,
                actor,
                "disable_client",
                client_id,
                version,
                reason,
                approver,
                client["tenant"],
            ),
        )
    return str(client["tenant"])


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
    async with svc.global_pool.acquire() as conn, conn.transaction():
        client = await _client_for_update(conn, tenant, client_id)
        if client["status"] == ClientStatus.DISABLED:
            raise NotFound(client_id)
        secret = new_secret(client["tenant"])
        overlap = svc.settings.secret_overlap_s if overlap_s is None else overlap_s
        if client["status"] == ClientStatus.LOCKED:
            overlap = 0
        until = now + timedelta(seconds=overlap) if overlap > 0 else None
        version = client["version"] + 1
        await store_clients.replace_secret(
            conn,
            client_id,
            secret_hash=svc.hash_secret(secret),
            previous_hash=client["secret_hash"] if until else None,
            previous_valid_until=until,
            revoked_before=now,
            version=version,
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
                major=events.MAJOR,
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
                    client["tenant"],
                )
            )
        await svc.events.write(conn, *out)
    return secret


class RotationThrottled(Exception):
    """A manual key rotation came too soon after the last one (docs/design.md §7)."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"retry in {retry_after_s:.0f} s")
        self.retry_after_s = retry_after_s


async def rotate_keys(
    svc: Service, actor: Actor, reason: str, approver: str | None
) -> dict[str, Any]:
    """An operator's rotation: a new key version in the HSM, published now; it signs
    after the activation delay. Platform-wide, so its events carry ``PLATFORM_TENANT``
    (the kit also records ``platform.key_rotated`` with the reason and operator).

    Throttled: refused (:class:`RotationThrottled`) while a new key is pending or
    within ``manual_key_rotation_interval_s`` of the newest key's activation, checked
    under the rotation lock so replicas cannot race past it.
    """
    interval = timedelta(seconds=svc.settings.manual_key_rotation_interval_s)
    now = datetime.now(UTC)
    async with svc.global_pool.acquire() as conn:
        key = await svc.keys.rotate(
            conn, svc.events, reason=reason, actor=actor, unless_newer_than=now - interval
        )
        if key is None:
            newest = await store_keys.newest_live_activation(conn) or now
            raise RotationThrottled(max(1.0, (newest + interval - now).total_seconds()))
        data = {
            "kid": key.kid,
            "alg": key.alg,
            "activates_at": events.rfc3339(key.activates_at),
            "reason": reason,
            "actor": actor.as_data(),
        }
        async with conn.transaction():
            # A key is made once: version 1 of the aggregate named by its kid.
            await svc.events.write(
                conn,
                svc.events.event(
                    "consent.signing_key_rotated",
                    subject=key.kid,
                    version=1,
                    data=data,
                    tenant=PLATFORM_TENANT,
                    major=events.MAJOR,
                ),
                events.admin_action(
                    svc.events, actor, "rotate_keys", key.kid, 1, reason, approver, PLATFORM_TENANT
                ),
            )
    return {"kid": key.kid, "alg": key.alg, "activates_at": events.rfc3339(key.activates_at)}


async def keep_keys_current(svc: Service) -> None:
    """Reload the keys (another replica may have rotated), rotate when due, and destroy
    in the HSM the private keys whose last token expired (docs/design.md §9)."""
    async with svc.global_pool.acquire() as conn:
        await svc.keys.retire_expired(conn, svc.events)
        rotated = await svc.keys.ensure_current(conn, svc.events)
        if rotated is None:
            return
        key, reason = rotated
        data = {
            "kid": key.kid,
            "alg": key.alg,
            "activates_at": events.rfc3339(key.activates_at),
            "reason": reason,
            "actor": None,
        }
        async with conn.transaction():
            await svc.events.emit(
                conn,
                "consent.signing_key_rotated",
                subject=key.kid,
                version=1,
                data=data,
                major=events.MAJOR,
            )

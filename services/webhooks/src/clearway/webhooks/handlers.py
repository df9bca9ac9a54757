"""Use cases: manage endpoints, fan events out to messages, resend.

Handlers write state and outbox rows in one transaction; they never publish.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from clearway.shared.actor import Actor
from clearway.shared.auth import PLATFORM_TENANT, Principal
from clearway.shared.consumer import PermanentError
from clearway.shared.dlt_admin import DeadLetterAdmin, Redriven
from clearway.shared.event_writer import EventWriter
from clearway.shared.events import Event
from clearway.shared.retention import Retention
from clearway.shared.versions import CURRENT_VERSION
from clearway.webhooks import store
from clearway.webhooks.crypto import SecretBox
from clearway.webhooks.domain import (
    Delivery,
    Status,
    check_secret,
    check_subscriptions,
    generate_secret,
    message_id,
    new_endpoint_id,
    subscribed,
)
from clearway.webhooks.settings import WebhooksSettings
from clearway.webhooks.v1a import V1aKeys


class NotFound(Exception):
    def __init__(self, kind: str, id: str) -> None:
        super().__init__(f"{kind} {id} not found")
        self.kind = kind
        self.id = id


class PayloadPurged(Exception):
    """A message whose payload its retention rule removed: it cannot be re-delivered."""

    def __init__(self, id: str, at: datetime) -> None:
        super().__init__(f"message {id} has no payload since {at.isoformat()}")
        self.id = id
        self.at = at


def retention_rules(events: EventWriter) -> Retention:
    """The webhooks service's record classes and their purges (docs/design.md §9)."""
    return Retention(
        "webhooks",
        events,
        {
            "webhook_attempts": store.purge_attempts,
            "webhook_dead_letters": store.purge_dead_letters,
            "webhook_message_payloads": store.purge_payloads,
        },
    )


@dataclass
class Context:
    """What the handlers need from the process: settings, the secret box, the event writer,
    the v1a signing key."""

    settings: WebhooksSettings
    box: SecretBox
    events: EventWriter
    v1a: V1aKeys

    def known_event_types(self) -> list[str]:
        return [t.event_type for t in self.events.registry.event_types()]

    async def audit(
        self,
        conn: asyncpg.Connection,
        principal: Principal,
        tenant: str,
        action: str,
        resource: str,
        version: int,
        reason: str | None = None,
    ) -> None:
        """A ``webhooks.admin_action`` for ``resource`` of ``tenant`` at its ``version``
        after the change; the tenant puts it in that tenant's audit view (docs/design.md §8)."""
        await self.events.emit(
            conn,
            "webhooks.admin_action",
            subject=resource,
            version=version,
            data={"action": action, "resource": resource, "reason": reason},
            actor=Actor.from_principal(principal),
            tenant=tenant,
        )


async def create_endpoint(
    ctx: Context,
    conn: asyncpg.Connection,
    principal: Principal,
    tenant: str,
    *,
    url: str,
    description: str,
    event_types: Sequence[str],
    rate_limit_per_s: float | None,
    api_version: str = CURRENT_VERSION,
    ed25519_signatures: bool = False,
) -> tuple[asyncpg.Record, str]:
    """A new endpoint and its ``whsec_`` secret (returned once, stored encrypted).

    With ``ed25519_signatures`` its deliveries also carry ``v1a`` signatures by the
    service's Ed25519 key (:mod:`clearway.webhooks.v1a`), whose public keys partners
    read from the published key set.
    """
    patterns = check_subscriptions(event_types, ctx.known_event_types())
    secret = generate_secret()
    async with conn.transaction():
        row = await store.insert_endpoint(
            conn,
            id=new_endpoint_id(),
            tenant=tenant,
            url=url,
            description=description,
            event_types=patterns,
            rate_limit_per_s=rate_limit_per_s,
            ed25519_signatures=ed25519_signatures,
            api_version=api_version,
        )
        await store.insert_secret(conn, row["id"], ctx.box.seal(secret, row["id"], tenant))
        await ctx.audit(conn, principal, tenant, "endpoint.created", row["id"], row["version"])
    return row, secret


async def update_endpoint(
    ctx: Context,
    conn: asyncpg.Connection,
    principal: Principal,
    tenant: str,
    endpoint_id: str,
    changes: Mapping[str, Any],
) -> asyncpg.Record:
    fields = dict(changes)
    if "event_types" in fields:
        fields["event_types"] = check_subscriptions(fields["event_types"], ctx.known_event_types())
    async with conn.transaction():
        row = await store.update_endpoint(conn, tenant, endpoint_id, fields)
        if row is None:
            raise NotFound("endpoint", endpoint_id)
        await ctx.audit(conn, principal, tenant, "endpoint.updated", endpoint_id, row["version"])
    return row


async def set_endpoint_disabled(
    ctx: Context,
    conn: asyncpg.Connection,
    principal: Principal,
    tenant: str,
    endpoint_id: str,
    disabled: bool,
    reason: str | None = None,
) -> asyncpg.Record:
    async with conn.transaction():
        row = await store.set_disabled(conn, tenant, endpoint_id, disabled, reason)
        if row is None:
            raise NotFound("endpoint", endpoint_id)
        action = "endpoint.disabled" if disabled else "endpoint.enabled"
        await ctx.audit(conn, principal, tenant, action, endpoint_id, row["version"], reason)
    return row


async def delete_endpoint(
    ctx: Context, conn: asyncpg.Connection, principal: Principal, tenant: str, endpoint_id: str
) -> None:
    async with conn.transaction():
        version = await store.delete_endpoint(conn, tenant, endpoint_id)
        if version is None:
            raise NotFound("endpoint", endpoint_id)
        await ctx.audit(conn, principal, tenant, "endpoint.deleted", endpoint_id, version)


async def rotate_secret(
    ctx: Context,
    conn: asyncpg.Connection,
    principal: Principal,
    tenant: str,
    endpoint_id: str,
    grace_s: float | None,
    *,
    secret: str | None = None,
    reason: str | None = None,
) -> tuple[str | None, Any]:
    """A new secret; the old ones keep signing alongside it for the grace period.

    With ``secret`` the partner brings their own (ADR 0049, checked by
    ``check_secret``): it is sealed like a generated one and handed back to nobody, so
    the returned secret is ``None``; otherwise the generated one, shown once. The
    ``reason`` lands in the audited ``webhooks.admin_action``."""
    new = generate_secret() if secret is None else check_secret(secret)
    async with conn.transaction():
        if await store.get_endpoint(conn, tenant, endpoint_id, lock=True) is None:
            raise NotFound("endpoint", endpoint_id)
        grace = ctx.settings.rotation_grace_s if grace_s is None else grace_s
        old_until = await store.expire_secrets(conn, endpoint_id, grace)
        await store.insert_secret(conn, endpoint_id, ctx.box.seal(new, endpoint_id, tenant))
        version = await store.touch_endpoint(conn, endpoint_id)
        await ctx.audit(
            conn, principal, tenant, "endpoint.secret_rotated", endpoint_id, version, reason
        )
    return (new if secret is None else None), old_until


async def rotate_tenant_secrets(
    ctx: Context, conn: asyncpg.Connection, principal: Principal, tenant: str, reason: str
) -> list[str]:
    """Breach containment (docs/design.md §9): every live endpoint of ``tenant`` gets a
    new secret and its current ones stop signing at once (no grace: they may be known
    to an attacker). The new secrets are returned to nobody: the tenant takes a secret
    it knows with its own rotation. Returns the endpoint ids, each audited."""
    async with conn.transaction():
        endpoint_ids = await store.lock_tenant_endpoints(conn, tenant)
        for endpoint_id in endpoint_ids:
            await store.expire_secrets(conn, endpoint_id, 0)
            sealed = ctx.box.seal(generate_secret(), endpoint_id, tenant)
            await store.insert_secret(conn, endpoint_id, sealed)
            version = await store.touch_endpoint(conn, endpoint_id)
            await ctx.audit(
                conn, principal, tenant, "endpoint.secret_rotated", endpoint_id, version, reason
            )
    return endpoint_ids


async def resend_message(
    ctx: Context,
    conn: asyncpg.Connection,
    principal: Principal,
    tenant: str,
    msg_id: str,
    *,
    reason: str | None = None,
) -> asyncpg.Record:
    async with conn.transaction():
        row = await store.get_message(conn, tenant, msg_id, lock=True)
        if row is None:
            raise NotFound("message", msg_id)
        if row["payload_purged_at"] is not None:
            raise PayloadPurged(msg_id, row["payload_purged_at"])
        await store.requeue(conn, [msg_id], "resend")
        again = await store.get_message(conn, tenant, msg_id)
        assert again is not None
        await ctx.audit(conn, principal, tenant, "message.resent", msg_id, again["version"], reason)
    return again


async def redrive_dead_letters(
    ctx: Context,
    pool: asyncpg.Pool,
    admin: DeadLetterAdmin,
    principal: Principal,
    topic: str,
    reason: str,
) -> Redriven:
    """Redrive ``topic``'s pending dead letters into the fan-out consumer; a redrive that
    moved anything is audited as the operator's, with their reason (docs/design.md §4.4)."""
    done = await admin.redrive(topic)
    if done.count:
        async with pool.acquire() as conn, conn.transaction():
            await ctx.audit(
                conn,
                principal,
                PLATFORM_TENANT,
                "dead_letters.redriven",
                topic,
                done.position,
                reason,
            )
    return done


def fan_out_handler(ctx: Context):  # type: ignore[no-untyped-def]
    """The consumer's batch handler: one message per (event, subscribed endpoint).

    Runs in the consumer's transaction (inbox rows + messages commit together).
    An endpoint that is disabled gets its message stored as skipped.
    """

    async def fan_out(conn: asyncpg.Connection, events: Sequence[Event]) -> None:
        tenants = sorted({e.tenant for e in events if e.tenant})
        endpoints = await store.subscribers(conn, tenants) if tenants else []
        rows: list[tuple[Any, ...]] = []
        for ev in events:
            for ep in endpoints:
                if ep["tenant"] != ev.tenant or not subscribed(ep["event_types"], ev.type):
                    continue
                body = Delivery.for_event(
                    ev.id,
                    ev.type,
                    ev.time.isoformat().replace("+00:00", "Z"),
                    ev.data,
                    ep["api_version"],
                ).body
                if len(body) > ctx.settings.max_payload_bytes:
                    raise PermanentError(
                        f"event {ev.id} payload is {len(body)} bytes, over the"
                        f" {ctx.settings.max_payload_bytes}-byte webhook limit"
                    )
                status = Status.SKIPPED if ep["disabled"] else Status.PENDING
                rows.append(
                    (
                        message_id(ep["id"], ev.id),
                        ev.tenant,
                        ep["id"],
                        ev.id,
                        ev.type,
                        ev.correlation_id,
                        ev.traceparent,
                        body,
                        status.value,
                    )
                )
        await store.insert_messages(conn, rows)

    return fan_out


# Reads. Entrypoints page through these, never through the store (docs/design.md §2).


async def get_endpoint(conn: asyncpg.Connection, tenant: str, endpoint_id: str) -> asyncpg.Record:
    """One live endpoint of the tenant; ``NotFound`` otherwise."""
    row = await store.get_endpoint(conn, tenant, endpoint_id)
    if row is None:
        raise NotFound("endpoint", endpoint_id)
    return row


async def list_endpoints(
    conn: asyncpg.Connection, tenant: str, *, after: tuple[Any, ...] | None, limit: int
) -> list[asyncpg.Record]:
    """The tenant's live endpoints, oldest first, after a ``(created_at, id)`` position."""
    return await store.list_endpoints(conn, tenant, after=_pair(after), limit=limit)


async def get_message(conn: asyncpg.Connection, tenant: str, msg_id: str) -> asyncpg.Record:
    """One message of the delivery log; ``NotFound`` when it is not the tenant's."""
    row = await store.get_message(conn, tenant, msg_id)
    if row is None:
        raise NotFound("message", msg_id)
    return row


async def list_messages(
    conn: asyncpg.Connection,
    tenant: str,
    filters: Mapping[str, Any],
    *,
    after: tuple[Any, ...] | None,
    limit: int,
) -> list[asyncpg.Record]:
    """Delivery-log messages matching ``filters`` (endpoint_id, event_id, correlation_id,
    status, event_type, the created_after/created_before window, newest_first), oldest
    first unless newest_first, after a ``(created_at, id)`` position."""
    return await store.list_messages(conn, tenant, **filters, after=_pair(after), limit=limit)


async def list_attempts(
    conn: asyncpg.Connection,
    tenant: str,
    msg_id: str,
    *,
    after: tuple[Any, ...] | None,
    limit: int,
) -> list[asyncpg.Record]:
    """The attempts of one of the tenant's messages, after an ``(attempt_no, id)`` position."""
    await get_message(conn, tenant, msg_id)
    return await store.list_attempts(conn, msg_id, after=_pair(after), limit=limit)


def _pair(after: tuple[Any, ...] | None) -> Any:
    return None if after is None else (after[0], after[1])

"""The consent service's events, all on ``clearway.consent.events.v1``.

Revocation events keep the type names and data fields that every service's
``RevocationSet.apply_event`` reads: ``consent.revoked`` (``consent_id``,
``revoked_at``), ``token.revoked`` (``jti``, ``expires_at``), ``client.disabled``
and ``client.credentials_rotated`` (``client_id``, ``at``); instants are RFC 3339.
"""

from __future__ import annotations

import functools
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg

from clearway.consent.domain import Consent
from clearway.shared.events import Event, new_event
from clearway.shared.outbox import Outbox
from clearway.shared.schemas import default_registry

TOPIC = "clearway.consent.events.v1"
SOURCE = "/clearway/consent"


@functools.cache
def _registry() -> Any:
    return default_registry()


@functools.cache
def _outbox() -> Outbox:
    return Outbox(validate=_registry().validate)


def rfc3339(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def actor(subject: str, client_id: str | None, delegation: list[str] | None = None) -> dict:
    return {"subject": subject, "client_id": client_id, "delegation": delegation or []}


def event(
    type_: str, aggregate_id: str, version: int, data: dict[str, Any], tenant: str | None
) -> Event:
    return new_event(
        type=type_,
        source=SOURCE,
        aggregate_id=aggregate_id,
        aggregate_version=version,
        data=data,
        dataschema=_registry().get(type_, 1).dataschema,
        tenant=tenant,
    )


async def publish(conn: asyncpg.Connection, topic: str, *events: Event) -> None:
    """Write events to the outbox inside the caller's transaction (the relay publishes)."""
    if events:
        await _outbox().add(conn, topic, *events)


def consent_events(consent: Consent) -> list[Event]:
    """Events the consent recorded since it was loaded, in order; clears them."""
    out = []
    first_version = consent.version - sum(1 for t, _ in consent.events if t != "consent.created")
    version = first_version
    for type_, info in consent.events:
        if type_ == "consent.created":
            data = {
                "consent_id": consent.id,
                "client_id": consent.client_id,
                "subject": consent.subject,
                "purpose": consent.purpose,
                "reference": consent.reference,
                "status": "AwaitingAuthorisation",
                "terms_version": consent.terms_version,
                "authorization_details": json.dumps(consent.authorization_details),
                "scopes": " ".join(consent.scopes),
                "created_at": rfc3339(consent.created_at),
                "expires_at": rfc3339(consent.expires_at),
                "actor": info["actor"],
            }
            out.append(event(type_, consent.id, 1, data, consent.tenant))
            continue
        version += 1
        change = consent.history[version - 1]
        data = {
            "consent_id": consent.id,
            "client_id": consent.client_id,
            "subject": consent.subject,
            "reference": consent.reference,
            "status": str(change.status),
            "changed_at": rfc3339(change.at),
            "reason": info.get("reason"),
            "actor": info["actor"],
        }
        if type_ == "consent.revoked":
            data["revoked_at"] = rfc3339(change.at)
        if type_ == "consent.authorised":
            data["evidence_hash"] = (consent.evidence or {}).get("hash")
        out.append(event(type_, consent.id, version, data, consent.tenant))
    consent.events.clear()
    return out


def admin_action(
    actor_: dict, action: str, resource: str, reason: str, approver: str | None, tenant: str | None
) -> Event:
    data = {
        "action": action,
        "resource": resource,
        "reason": reason,
        "approver": approver,
        "at": rfc3339(datetime.now(UTC)),
        "actor": actor_,
    }
    return event("consent.admin_action", f"adm_{uuid.uuid4().hex}", 1, data, tenant)

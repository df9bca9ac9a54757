"""The consent service's events, all on ``clearway.consent.events.v2`` (schemas v2).

The topic is global and carries ids only (docs/design.md §9, ADR 0039):
``consent.created`` v2 has no ``purpose`` nor ``authorization_details``, which stay in
the consent store of the tenant's region.

Revocation events keep the type names and data fields that every service's
``RevocationSet.apply_event`` reads: ``consent.revoked`` (``consent_id``,
``revoked_at``), ``token.revoked`` (``jti``, ``expires_at``), ``client.disabled``
and ``client.credentials_rotated`` (``client_id``, ``at``); instants are RFC 3339.
"""

from __future__ import annotations

from datetime import UTC, datetime

from clearway.consent.domain import Consent, Status
from clearway.shared.actor import Actor
from clearway.shared.event_writer import EventWriter
from clearway.shared.events import Event

#: The schema major of every event this service writes (its topic's major,
#: ``clearway.shared.events.TOPIC_MAJORS``); the kit's ``platform.*`` events stay v1.
MAJOR = 2


def rfc3339(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def consent_events(writer: EventWriter, consent: Consent) -> list[Event]:
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
                "reference": consent.reference,
                "status": str(Status.AWAITING),
                "terms_version": consent.terms_version,
                "scopes": " ".join(consent.scopes),
                "created_at": rfc3339(consent.created_at),
                "expires_at": rfc3339(consent.expires_at),
                "actor": info["actor"],
            }
            out.append(
                writer.event(
                    type_,
                    subject=consent.id,
                    version=1,
                    data=data,
                    tenant=consent.tenant,
                    major=MAJOR,
                )
            )
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
        out.append(
            writer.event(
                type_,
                subject=consent.id,
                version=version,
                data=data,
                tenant=consent.tenant,
                major=MAJOR,
            )
        )
    consent.events.clear()
    return out


def admin_action(
    writer: EventWriter,
    actor: Actor,
    action: str,
    resource: str,
    version: int,
    reason: str,
    approver: str | None,
    tenant: str | None,
) -> Event:
    """A ``consent.admin_action`` on ``resource`` at its ``version`` after the change.

    The id derives from (resource, version), so the action is one event however
    often its transaction is retried.
    """
    data = {
        "action": action,
        "resource": resource,
        "reason": reason,
        "approver": approver,
        "at": rfc3339(datetime.now(UTC)),
    }
    return writer.event(
        "consent.admin_action",
        subject=resource,
        version=version,
        data=data,
        actor=actor,
        tenant=tenant,
        major=MAJOR,
    )

"""Audit records: what an event says about who did what, and its canonical leaf (pure).

A record's leaf is the RFC 8785 (JCS) serialisation of the whole record,
sequence number included, so the bytes are reproducible by any verifier in any
language and a record cannot be moved to another position unnoticed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import rfc8785

from clearway.shared.actor import Actor
from clearway.shared.events import Event

#: Version of the leaf document; a new one would be a new field set, never a reinterpretation.
LEAF_VERSION = 1
#: Event types ending in one of these record a failed or refused action.
FAILURE_SUFFIXES = ("failed", "rejected", "denied", "dead_lettered", "errored", "refused")
ADMIN_ACTION_SUFFIX = ".admin_action"


class InvalidAuditEvent(ValueError):
    """An event whose audit fields have the wrong shape; it goes to the dead letters."""


@dataclass(frozen=True)
class AuditEntry:
    """One audited event before the log gives it a position."""

    source_event_id: str
    event_type: str
    action: str
    resource: str
    source: str
    outcome: str
    occurred_at: datetime
    actor: Actor | None
    reason: str | None
    approver: str | None
    consent_id: str | None
    correlation_id: str | None
    trace_id: str | None
    tenant: str | None


def entry_from_event(ev: Event) -> AuditEntry:
    """The audit entry an event stands for; admin actions name their own action/resource."""
    data = ev.data
    admin = ev.type.endswith(ADMIN_ACTION_SUFFIX)
    action = _opt_str(data, "action") if admin else None
    resource = _opt_str(data, "resource") if admin else None
    consent_id = _opt_str(data, "consent_id")
    if consent_id is None and ev.type.startswith("consent.") and ev.subject.startswith("cns_"):
        consent_id = ev.subject
    return AuditEntry(
        source_event_id=ev.id,
        event_type=ev.type,
        action=action or ev.type,
        resource=resource or ev.subject,
        source=ev.source,
        outcome=_opt_str(data, "outcome") or derive_outcome(ev.type),
        occurred_at=ev.time if ev.time.tzinfo else ev.time.replace(tzinfo=UTC),
        actor=_actor(data.get("actor")),
        reason=_opt_str(data, "reason"),
        approver=_approver(data.get("approver")),
        consent_id=consent_id,
        correlation_id=ev.correlation_id,
        trace_id=trace_id_of(ev.traceparent),
        tenant=ev.tenant,
    )


def derive_outcome(event_type: str) -> str:
    """``transfer.failed`` → ``failure``; anything else that happened → ``success``."""
    last = event_type.rsplit(".", 1)[-1]
    return "failure" if last.endswith(FAILURE_SUFFIXES) else "success"


def trace_id_of(traceparent: str | None) -> str | None:
    """The trace id of a W3C ``traceparent`` (``00-<trace>-<span>-<flags>``)."""
    if not traceparent:
        return None
    parts = traceparent.split("-")
    if len(parts) < 4 or len(parts[1]) != 32:
        return None
    return parts[1].lower()


def rfc3339(t: datetime) -> str:
    """UTC with microseconds: exactly what Postgres keeps of a timestamptz."""
    return t.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def leaf_document(entry: AuditEntry, seq: int, recorded_at: datetime | str) -> dict[str, Any]:
    """The record as it is hashed and stored."""
    return {
        "v": LEAF_VERSION,
        "seq": seq,
        "recorded_at": recorded_at if isinstance(recorded_at, str) else rfc3339(recorded_at),
        "occurred_at": rfc3339(entry.occurred_at),
        "source_event_id": entry.source_event_id,
        "type": entry.event_type,
        "action": entry.action,
        "resource": entry.resource,
        "source": entry.source,
        "outcome": entry.outcome,
        "actor": entry.actor.as_data() if entry.actor else None,
        "reason": entry.reason,
        "approver": entry.approver,
        "consent_id": entry.consent_id,
        "correlation_id": entry.correlation_id,
        "trace_id": entry.trace_id,
        "tenant": entry.tenant,
    }


def canonical_leaf(entry: AuditEntry, seq: int, recorded_at: datetime | str) -> bytes:
    """The leaf bytes of ``entry`` at ``seq``. Every member but the delegation chain
    is a string, an integer or null by construction, so only that is inspected."""
    doc = leaf_document(entry, seq, recorded_at)
    if entry.actor is None or _plain(entry.actor.delegation):
        return _encode(doc).encode()
    return canonical(doc)


def canonical(document: Mapping[str, Any]) -> bytes:
    """RFC 8785 JSON Canonicalization Scheme bytes of ``document``.

    Without floats, big integers or non-ASCII keys, JCS output is exactly what
    ``json.dumps`` gives with sorted keys, no whitespace and no ASCII escaping
    (same string escapes, same integer form, code-point order = UTF-16 order for
    ASCII keys); that path is several times faster. Anything else goes through
    the ``rfc8785`` implementation."""
    if _plain(document):
        return _encode(document).encode()
    try:
        return rfc8785.dumps(dict(document))
    except rfc8785.CanonicalizationError as e:
        raise InvalidAuditEvent(f"not canonicalisable as RFC 8785 JSON: {e}") from e


_MAX_SAFE_INT = 2**53 - 1
# One encoder for every leaf: json.dumps with options builds a new one per call.
_encode = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


def _plain(value: Any) -> bool:
    if value is None or isinstance(value, str | bool):
        return True
    if isinstance(value, int):
        return -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and k.isascii() and _plain(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return all(_plain(v) for v in value)
    return False


def _opt_str(data: Mapping[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidAuditEvent(f"field '{name}' must be a string")
    return value


def _approver(value: Any) -> str | None:
    # Producers may name the approver as a bare subject or as an actor record.
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, Mapping) and isinstance(value.get("subject"), str):
        return str(value["subject"])
    raise InvalidAuditEvent("field 'approver' must be a string or an actor record")


def _actor(value: Any) -> Actor | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidAuditEvent("field 'actor' must be a record")
    subject, client = value.get("subject"), value.get("client_id")
    if not isinstance(subject, str) or not subject:
        raise InvalidAuditEvent("field 'actor.subject' must be a non-empty string")
    if client is not None and not isinstance(client, str):
        raise InvalidAuditEvent("field 'actor.client_id' must be a string")
    delegation = value.get("delegation") or []
    if not isinstance(delegation, Sequence) or isinstance(delegation, str | bytes):
        raise InvalidAuditEvent("field 'actor.delegation' must be a list")
    # Recorded as the event said it: the leaf keeps whatever the list holds.
    return Actor(subject, client, tuple(delegation))

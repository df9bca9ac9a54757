"""CloudEvents 1.0 in Kafka binary mode (docs/design.md §3).

The payload is the event's ``data`` as JSON; every attribute travels in a
``ce_*`` header (CloudEvents Kafka protocol binding, binary content mode).
Event ids are deterministic: the same (aggregate, version, type) always gives
the same id, so a republished event is recognised as a copy by every consumer.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/json"
#: Namespace for uuid5 event ids. Changing it would change every event id.
_EVENT_NS = uuid.UUID("6f0c5a52-4a0e-5f7e-9a57-3c1c8f0e2b11")

Headers = list[tuple[str, bytes]]
#: Kafka header carrying a command's bearer access token (RFC 6750 §2.1 syntax:
#: ``Bearer <token>``): an intent proves who sends it (docs/design.md §3).
AUTHORIZATION_HEADER = "authorization"
_BEARER = "Bearer "


class MalformedEvent(ValueError):
    """A Kafka record that is not a valid Clearway CloudEvent; goes to the dead letters."""


def event_id(aggregate_id: str, aggregate_version: int, event_type: str) -> str:
    """Deterministic ``evt_`` id of the event ``event_type`` at an aggregate's version."""
    name = f"{aggregate_id}\x1f{aggregate_version}\x1f{event_type}"
    return f"evt_{uuid.uuid5(_EVENT_NS, name).hex}"


def _now() -> datetime:
    return datetime.now(UTC)


#: Services whose events topic is past its first major (docs/design.md §3): a breaking
#: change to one of its schemas moved the whole topic. The consent service's is v2:
#: ``consent.created`` v2 carries no personal data (ADR 0039).
TOPIC_MAJORS: Mapping[str, int] = {"consent": 2}


def events_topic(service: str) -> str:
    """The logical topic a service's events go to: ``clearway.<service>.events.v<major>``
    (v1 unless :data:`TOPIC_MAJORS` says otherwise)."""
    return f"clearway.{service}.events.v{TOPIC_MAJORS.get(service, 1)}"


@dataclass(frozen=True)
class Event:
    """One CloudEvent. ``subject`` is the aggregate id and the Kafka key."""

    id: str
    type: str
    source: str
    subject: str
    data: Mapping[str, Any]
    time: datetime = field(default_factory=_now)
    dataschema: str | None = None
    correlation_id: str | None = None
    causation_id: str | None = None
    tenant: str | None = None
    traceparent: str | None = None
    tracestate: str | None = None
    #: The sender's access token (commands only); never printed, never stored.
    authorization: str | None = field(default=None, repr=False)
    #: The Kafka record's timestamp (epoch ms: when the producer sent it, or when the
    #: broker appended it on a ``LogAppendTime`` topic); ``None`` when the event was
    #: not read from Kafka or the record has none. Transport, not a CloudEvents attribute.
    record_timestamp_ms: int | None = field(default=None, compare=False)

    @property
    def key(self) -> bytes:
        return self.subject.encode()

    def headers(self) -> Headers:
        """Kafka headers in binary mode, attribute names prefixed ``ce_``."""
        h: Headers = [
            ("ce_specversion", SPEC_VERSION.encode()),
            ("ce_id", self.id.encode()),
            ("ce_source", self.source.encode()),
            ("ce_type", self.type.encode()),
            ("ce_time", self.time.isoformat().replace("+00:00", "Z").encode()),
            ("ce_subject", self.subject.encode()),
            ("content-type", CONTENT_TYPE.encode()),
        ]
        optional = (
            ("ce_dataschema", self.dataschema),
            ("ce_correlationid", self.correlation_id),
            ("ce_causationid", self.causation_id),
            ("ce_tenant", self.tenant),
            ("traceparent", self.traceparent),
            ("tracestate", self.tracestate),
        )
        h.extend((k, v.encode()) for k, v in optional if v)
        if self.authorization:
            h.append((AUTHORIZATION_HEADER, f"{_BEARER}{self.authorization}".encode()))
        return h

    def body(self) -> bytes:
        return json.dumps(self.data, separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_kafka(
        cls,
        headers: Iterable[tuple[str, bytes]],
        value: bytes | None,
        *,
        timestamp_ms: int | None = None,
    ) -> Event:
        """Decode a binary-mode record (``timestamp_ms``: its Kafka timestamp, if any);
        raise :class:`MalformedEvent` naming what is wrong."""
        h = header_map(headers)
        missing = [k for k in ("ce_id", "ce_type", "ce_source", "ce_subject") if not h.get(k)]
        if missing:
            raise MalformedEvent(f"missing CloudEvents headers: {', '.join(missing)}")
        if h.get("ce_specversion", SPEC_VERSION) != SPEC_VERSION:
            raise MalformedEvent(f"unsupported ce_specversion {h['ce_specversion']!r}")
        if value is None:
            raise MalformedEvent("empty payload")
        try:
            data = json.loads(value)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise MalformedEvent(f"payload is not JSON: {e}") from None
        if not isinstance(data, dict):
            raise MalformedEvent("payload is not a JSON object")
        try:
            when = datetime.fromisoformat(h["ce_time"]) if h.get("ce_time") else _now()
        except ValueError:
            raise MalformedEvent(f"ce_time is not RFC 3339: {h['ce_time']!r}") from None
        return cls(
            id=h["ce_id"],
            type=h["ce_type"],
            source=h["ce_source"],
            subject=h["ce_subject"],
            data=data,
            time=when,
            dataschema=h.get("ce_dataschema"),
            correlation_id=h.get("ce_correlationid"),
            causation_id=h.get("ce_causationid"),
            tenant=h.get("ce_tenant"),
            traceparent=h.get("traceparent"),
            tracestate=h.get("tracestate"),
            authorization=_bearer(h.get(AUTHORIZATION_HEADER)),
            # Kafka's "no timestamp" is -1 (records of the v0 message format).
            record_timestamp_ms=timestamp_ms
            if timestamp_ms is not None and timestamp_ms >= 0
            else None,
        )


def _bearer(value: str | None) -> str | None:
    # The scheme is case-insensitive (RFC 9110 §11.1); anything else is no credential.
    if value is None or value[: len(_BEARER)].lower() != _BEARER.lower():
        return None
    return value[len(_BEARER) :].strip() or None


def header_map(headers: Iterable[tuple[str, bytes | None]]) -> dict[str, str]:
    """Kafka headers as ``{name: text}``; the last value wins, undecodable ones are dropped."""
    out: dict[str, str] = {}
    for k, v in headers or ():
        if v is None:
            continue
        try:
            out[k] = v.decode()
        except UnicodeDecodeError:
            continue
    return out


def new_event(
    *,
    type: str,
    source: str,
    aggregate_id: str,
    aggregate_version: int,
    data: Mapping[str, Any],
    dataschema: str | None = None,
    correlation_id: str | None = None,
    causation_id: str | None = None,
    tenant: str | None = None,
    time: datetime | None = None,
    subject: str | None = None,
    traceparent: str | None = None,
    tracestate: str | None = None,
) -> Event:
    """Build an event whose id is derived from the aggregate's id and version
    (``subject``, the Kafka key, defaults to the aggregate's id)."""
    return Event(
        id=event_id(aggregate_id, aggregate_version, type),
        type=type,
        source=source,
        subject=aggregate_id if subject is None else subject,
        data=data,
        time=time or _now(),
        dataschema=dataschema,
        correlation_id=correlation_id,
        causation_id=causation_id,
        tenant=tenant,
        traceparent=traceparent,
        tracestate=tracestate,
    )


def headers_to_json(headers: Sequence[tuple[str, bytes]]) -> list[list[str]]:
    """Headers as JSON-friendly pairs (values are text in this platform)."""
    return [[k, v.decode()] for k, v in headers]


def headers_from_json(pairs: Sequence[Sequence[str]]) -> Headers:
    return [(k, v.encode()) for k, v in pairs]

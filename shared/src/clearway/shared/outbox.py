"""Transactional outbox, write side (docs/design.md §4.1).

A handler adds events with :meth:`Outbox.add` on the connection of its own
transaction; it never talks to Kafka. The relay (:mod:`clearway.shared.relay`)
publishes what was committed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import asyncpg

from clearway.shared.context import current_correlation_id, tenant_var
from clearway.shared.events import Event, headers_to_json
from clearway.shared.telemetry import current_traceparent

#: ``validate(event_type, major, data) -> data`` as given by the schema registry.
Validator = Callable[[str, int, Mapping[str, Any]], Mapping[str, Any]]


def major_of(dataschema: str) -> int:
    """``schemas/transfer/transfer.settled/v1`` → 1."""
    tail = dataschema.rstrip("/").rsplit("/", 1)[-1]
    if not tail.startswith("v") or not tail[1:].isdigit():
        raise ValueError(f"dataschema does not end in a major version: {dataschema!r}")
    return int(tail[1:])


class Outbox:
    """Adds events to the outbox table of the connection's schema.

    Payloads are validated against their schema before they are written, so a
    bad event fails the handler's transaction instead of reaching a partner.
    """

    def __init__(self, validate: Validator | None = None) -> None:
        self._validate = validate

    def prepare(self, event: Event) -> Event:
        """Fill context (correlation, tenant, trace) and validate the payload."""
        tp, ts = (None, None) if event.traceparent else current_traceparent()
        correlation_id = event.correlation_id or current_correlation_id()
        tenant = event.tenant or tenant_var.get()
        traceparent, tracestate = event.traceparent or tp, event.tracestate or ts
        filled = (correlation_id, tenant, traceparent, tracestate)
        # replace() is not cheap: only when context fills something in
        if filled != (event.correlation_id, event.tenant, event.traceparent, event.tracestate):
            event = replace(
                event,
                correlation_id=correlation_id,
                tenant=tenant,
                traceparent=traceparent,
                tracestate=tracestate,
            )
        if self._validate is not None and event.dataschema:
            data = self._validate(event.type, major_of(event.dataschema), event.data)
            event = replace(event, data=data)
        return event

    async def add(self, conn: asyncpg.Connection, topic: str, *events: Event) -> list[Event]:
        """Insert ``events`` for ``topic`` on ``conn`` (which must be in a transaction)."""
        return await self.add_many(conn, [(topic, e) for e in events])

    async def add_many(
        self, conn: asyncpg.Connection, items: Sequence[tuple[str, Event]]
    ) -> list[Event]:
        """Insert events for several topics at once; returns them as written."""
        if not conn.is_in_transaction():
            raise RuntimeError(
                "Outbox.add needs the caller's transaction (state + event atomically)"
            )
        prepared = [(t, self.prepare(e)) for t, e in items]
        # One statement for the lot (not one per event): one round trip, and the
        # statement-level NOTIFY fires once. Rows take their ids in the given order,
        # which is the order the relay publishes them in.
        await conn.execute(
            "INSERT INTO outbox (event_id, topic, key, headers, payload)"
            " SELECT u.event_id, u.topic, u.key, u.headers::jsonb, u.payload"
            " FROM unnest($1::text[], $2::text[], $3::bytea[], $4::text[], $5::bytea[])"
            "  WITH ORDINALITY AS u(event_id, topic, key, headers, payload, n) ORDER BY u.n",
            [e.id for _, e in prepared],
            [t for t, _ in prepared],
            [e.key for _, e in prepared],
            [json.dumps(headers_to_json(e.headers())) for _, e in prepared],
            [e.body() for _, e in prepared],
        )
        return [e for _, e in prepared]

"""The one way a service emits an event (docs/design.md §3, §4.1).

One :class:`EventWriter` per service and topic, made at start::

    writer = EventWriter("transfer", topic_prefix=settings.platform.topic_prefix)

and in a handler, inside the transaction that changes the state::

    async with conn.transaction():
        await store.save(conn, transfer)
        await writer.emit(
            conn, "transfer.settled",
            subject=transfer.id, version=transfer.version, data={...},
            actor=actor, causation_id=intent.id,
        )

or several at once (one ``INSERT``; nothing is written if any payload is invalid)::

    await writer.write(conn, *(writer.event(t, subject=..., version=..., data=d) for ...))

What it guarantees, so no handler has to remember it:

- ``source`` is ``/clearway/<service>``; ``dataschema`` names the schema used;
- the id is deterministic: :func:`clearway.shared.events.event_id` of
  (aggregate, version, type), the aggregate being the subject unless given, so
  writing the same state change twice gives the same event;
- correlation id, causation id, tenant and W3C trace context come from the
  context (:mod:`clearway.shared.context`, :mod:`clearway.shared.telemetry`)
  unless given;
- the payload is validated against the schema registry (defaults filled,
  undeclared fields refused) before the outbox row is written, on the caller's
  connection, inside the caller's transaction;
- each schema is looked up once per writer, not on every call.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

import asyncpg

from clearway.shared.actor import Actor
from clearway.shared.context import current_causation_id, current_correlation_id, tenant_var
from clearway.shared.events import Event, events_topic, new_event
from clearway.shared.outbox import Outbox, major_of
from clearway.shared.schemas import EventSchema, SchemaRegistry, default_registry
from clearway.shared.telemetry import current_traceparent


def source_of(service: str) -> str:
    """The CloudEvents ``source`` of a service: ``/clearway/<service>``."""
    return f"/clearway/{service}"


class EventWriter:
    """Builds, validates and writes one service's events to its outbox.

    ``service`` is the service's short name (``transfer``, ``webhooks``,
    ``consent``, ``audit``, ``rail``); ``topic`` the logical topic (default
    :func:`events_topic`), made physical with ``topic_prefix`` the way
    ``PlatformSettings.topic`` does. ``registry`` defaults to the repository's.
    """

    def __init__(
        self,
        service: str,
        *,
        topic_prefix: str = "",
        topic: str | None = None,
        registry: SchemaRegistry | None = None,
    ) -> None:
        self.service = service
        self.source = source_of(service)
        self.topic = f"{topic_prefix}{topic or events_topic(service)}"
        self.registry = registry or default_registry()
        self._schemas: dict[tuple[str, int], EventSchema] = {}
        self._outbox = Outbox()  # validation happens here, once, in check()

    def schema(self, event_type: str, major: int = 1) -> EventSchema:
        """The schema of ``event_type`` (looked up in the registry on first use only).

        Raises :class:`~clearway.shared.schemas.UnknownSchemaError` for a type
        the registry does not know.
        """
        key = (event_type, major)
        found = self._schemas.get(key)
        if found is None:
            found = self._schemas[key] = self.registry.get(event_type, major)
        return found

    def event(
        self,
        event_type: str,
        *,
        subject: str,
        version: int,
        data: Mapping[str, Any],
        aggregate: str | None = None,
        actor: Actor | None = None,
        major: int = 1,
        causation_id: str | None = None,
        correlation_id: str | None = None,
        tenant: str | None = None,
        time: datetime | None = None,
    ) -> Event:
        """Build one event (pure: nothing is written and the payload is not yet checked).

        ``subject`` is the aggregate the event is about and its Kafka key;
        ``version`` that aggregate's version after the change. ``aggregate``
        (default ``subject``) is what the id is derived from when it is not the
        subject, e.g. one result per command message whatever aggregate it maps
        to. ``actor``, when given, is recorded as ``data["actor"]``. Context
        fills correlation, causation, tenant and trace unless given.
        """
        if actor is not None:
            data = {**data, "actor": actor.as_data()}
        traceparent, tracestate = current_traceparent()
        return new_event(
            type=event_type,
            source=self.source,
            aggregate_id=aggregate or subject,
            aggregate_version=version,
            data=data,
            dataschema=self.schema(event_type, major).dataschema,
            correlation_id=correlation_id or current_correlation_id(),
            causation_id=causation_id or current_causation_id(),
            tenant=tenant or tenant_var.get(),
            time=time,
            subject=subject,
            traceparent=traceparent,
            tracestate=tracestate,
        )

    def check(self, event: Event) -> Event:
        """The event with its payload validated (defaults filled in).

        Raises :class:`~clearway.shared.schemas.SchemaValidationError` naming the
        field at fault, or ``ValueError`` for an event that is not this
        service's (another ``source``, no ``dataschema``).
        """
        if event.source != self.source or not event.dataschema:
            raise ValueError(
                f"event {event.id} was not built by the {self.service} EventWriter; "
                "use writer.event(...)"
            )
        schema = self.schema(event.type, major_of(event.dataschema))
        return replace(event, data=schema.validate(event.data))

    async def write(self, conn: asyncpg.Connection, *events: Event) -> list[Event]:
        """Validate every event, then write them all to the outbox on ``conn``.

        ``conn`` must be in the caller's transaction (state and events commit
        together). Nothing is written when any payload is invalid. Returns the
        events as written.
        """
        if not events:
            return []
        checked = [self.check(e) for e in events]
        return await self._outbox.add(conn, self.topic, *checked)

    async def emit(self, conn: asyncpg.Connection, event_type: str, **fields: Any) -> Event:
        """Build, validate and write one event; ``fields`` are :meth:`event`'s
        keyword arguments (``subject``, ``version``, ``data``, ...)."""
        [written] = await self.write(conn, self.event(event_type, **fields))
        return written

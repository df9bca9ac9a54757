"""The events this service writes to its outbox, built from transfer rows.

Ids are deterministic (transfer id, version, type), so a state change that is
written twice is recognised downstream as the same event.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import asyncpg

from clearway.shared.events import Event, event_id, new_event
from clearway.shared.schemas import SchemaRegistry
from clearway.transfer.domain import SOURCE

EVENTS_TOPIC = "clearway.transfer.events.v1"
INTENTS_TOPIC = "clearway.transfer.intents.v1"
CONSENT_TOPIC = "clearway.consent.events.v1"


class EventFactory:
    def __init__(self, registry: SchemaRegistry) -> None:
        self.registry = registry

    def build(self, type_: str, aggregate_id: str, version: int, data: dict[str, Any]) -> Event:
        return new_event(
            type=type_,
            source=SOURCE,
            aggregate_id=aggregate_id,
            aggregate_version=version,
            data=data,
            dataschema=self.registry.get(type_, 1).dataschema,
        )

    def for_transfer(self, type_: str, row: asyncpg.Record, **extra: Any) -> Event:
        data: dict[str, Any] = {
            "transfer_id": row["id"],
            "reference": row["reference"],
            "amount": row["amount"],
            "currency": row["currency"],
            "status": row["status"],
            **extra,
        }
        return replace(
            self.build(type_, row["id"], row["version"], data),
            tenant=row["tenant"],
            correlation_id=row["correlation_id"],
        )

    def created(self, row: asyncpg.Record) -> Event:
        return self.for_transfer(
            "transfer.created",
            row,
            source=row["source"],
            destination=row["destination"],
            description=row["description"],
            actor=row["actor"],
        )

    def intent_result(self, type_: str, intent: Event, subject: str, data: dict[str, Any]) -> Event:
        """``transfer.accepted``/``transfer.rejected``: one per intent message, whatever
        transfer it maps to, with the intent's correlation id."""
        ev = self.build(type_, subject, 1, data)
        return replace(
            ev,
            id=event_id(intent.id, 1, type_),
            correlation_id=intent.correlation_id,
            causation_id=intent.id,
            tenant=intent.tenant,
        )

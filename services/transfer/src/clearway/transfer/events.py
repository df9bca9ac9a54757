"""The events this service writes to its outbox, built from what the ``Transfer``
aggregate recorded (``TransferCreated``, …), never from rows.

Ids are deterministic (transfer id, version, type), so a state change that is
written twice is recognised downstream as the same event (docs/design.md §3).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from clearway.shared.events import Event, event_id, new_event
from clearway.shared.schemas import SchemaRegistry
from clearway.transfer.domain import (
    SOURCE,
    TransferCanceled,
    TransferCreated,
    TransferEvent,
    TransferFailed,
    TransferSettled,
)

EVENTS_TOPIC = "clearway.transfer.events.v1"
INTENTS_TOPIC = "clearway.transfer.intents.v1"
CONSENT_TOPIC = "clearway.consent.events.v1"


def transfer_data(ev: TransferEvent) -> dict[str, Any]:
    """The wire payload of a recorded transfer event (``schemas/transfer/<type>/v1``)."""
    data: dict[str, Any] = {
        "transfer_id": ev.transfer_id,
        "reference": ev.reference,
        "amount": ev.amount,
        "currency": ev.currency,
        "status": ev.status.value,
    }
    if isinstance(ev, TransferCreated):
        data["source"] = ev.source
        data["destination"] = ev.destination
        data["description"] = ev.description
        data["actor"] = ev.actor.as_data() if ev.actor else None
    elif isinstance(ev, TransferCanceled):
        data["actor"] = ev.actor.as_data() if ev.actor else None
    elif isinstance(ev, TransferSettled):
        data["rail_charge_id"] = ev.rail_charge_id
    elif isinstance(ev, TransferFailed):
        data["reason"] = ev.reason
    return data


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

    def for_transfer(self, ev: TransferEvent) -> Event:
        """The CloudEvent of one event the aggregate recorded, at the version it made."""
        return replace(
            self.build(ev.type, ev.transfer_id, ev.version, transfer_data(ev)),
            tenant=ev.tenant,
            correlation_id=ev.correlation_id,
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

"""What the transfer service writes to its outbox, built from what the ``Transfer``
aggregate recorded (``TransferCreated``, …), never from rows, and written through
the kit's :class:`~clearway.shared.event_writer.EventWriter`.

Ids are deterministic (transfer id, version, type), so a state change that is
written twice is recognised downstream as the same event (docs/design.md §3).
"""

from __future__ import annotations

from typing import Any

from clearway.shared.event_writer import EventWriter
from clearway.shared.events import Event, events_topic
from clearway.transfer.domain import (
    TransferCanceled,
    TransferCreated,
    TransferEvent,
    TransferFailed,
    TransferSettled,
)

EVENTS_TOPIC = "clearway.transfer.events.v1"
CONSENT_TOPIC = events_topic("consent")


def transfer_event(writer: EventWriter, ev: TransferEvent) -> Event:
    """The CloudEvent of one event the aggregate recorded, at the version it made."""
    data: dict[str, Any] = {
        "transfer_id": ev.transfer_id,
        "reference": ev.reference,
        "amount": ev.amount,
        "currency": ev.currency,
        "status": ev.status.value,
    }
    actor = None
    if isinstance(ev, TransferCreated):
        data |= {"source": ev.source, "destination": ev.destination}
        data["description"] = ev.description
        data["consent_id"] = ev.consent_id
        actor = ev.actor
    elif isinstance(ev, TransferCanceled):
        actor = ev.actor
    elif isinstance(ev, TransferSettled):
        data["rail_charge_id"] = ev.rail_charge_id
    elif isinstance(ev, TransferFailed):
        data["reason"] = ev.reason
    return writer.event(
        ev.type,
        subject=ev.transfer_id,
        version=ev.version,
        data=data,
        actor=actor,
        tenant=ev.tenant,
        correlation_id=ev.correlation_id,
    )


def intent_result(writer: EventWriter, type_: str, intent: Event, subject: str, data: Any) -> Event:
    """``transfer.accepted``/``transfer.rejected``: one per intent message (its id derives
    from the intent's), whatever transfer it maps to, with the intent's correlation id."""
    return writer.event(
        type_,
        subject=subject,
        aggregate=intent.id,
        version=1,
        data=data,
        causation_id=intent.id,
        correlation_id=intent.correlation_id,
        tenant=intent.tenant,
    )

"""Kafka entrypoint: the transfer service's ``transfer.created`` events, so that a
single payment consent a transfer was made under is marked ``Consumed``
(docs/design.md §7). Here an event is only parsed; the handler decides."""

from __future__ import annotations

import logging

import asyncpg

from clearway.consent.handlers import consume_for_transfer
from clearway.consent.service import Service
from clearway.shared.actor import Actor
from clearway.shared.events import Event
from clearway.shared.metrics import CONSUMER_MESSAGES_TOTAL

log = logging.getLogger(__name__)

GROUP = "consent-transfers"
TRANSFER_EVENTS = "clearway.transfer.events.v1"
TRANSFER_CREATED = "transfer.created"


def group_id(region: str) -> str:
    """The Kafka group of ``region``'s deployment: each region reads every
    ``transfer.created`` and skips the other regions' tenants (ADR 0039), so the
    deployments must not share one group's partitions."""
    return f"{GROUP}-{region}"


def made_under_consent(event: Event) -> bool:
    """Only transfers made under a consent concern this service."""
    return event.type == TRANSFER_CREATED and bool(event.data.get("consent_id"))


async def handle_transfer_created(svc: Service, conn: asyncpg.Connection, event: Event) -> None:
    """Consume the consent of one ``transfer.created``, in the inbox transaction.

    A transfer of another region's tenant is skipped, and recorded as such (the
    inbox row, a log line, ``clearway_consumer_messages_total{outcome="other_region"}``):
    its consent lives in that region's store, whose deployment consumes it (ADR 0032)."""
    if not event.tenant:
        return
    if not svc.residency.serves(event.tenant):
        region = svc.residency.region_of(event.tenant)
        CONSUMER_MESSAGES_TOTAL.labels(GROUP, "other_region").inc()
        log.info("skipped %s of tenant %s: served in region %s", event.id, event.tenant, region)
        return
    actor = Actor.from_data(event.data.get("actor")) or Actor.system("transfer")
    await consume_for_transfer(svc, conn, event.tenant, event.data["consent_id"], event.time, actor)

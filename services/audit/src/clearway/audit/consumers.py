"""Ingest: every ``clearway.<domain>.events.v<N>`` topic becomes audit records.

One pattern subscription (new domains are picked up on the next metadata
refresh) feeds an :class:`IdempotentConsumer`: a batch of events, their inbox
rows and their records are one transaction, so a replayed topic adds nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg
from faststream.kafka import KafkaBroker

from clearway.audit.domain import InvalidAuditEvent, entry_from_event
from clearway.audit.handlers import Clock, PartitionCache, append_entries, utc_now
from clearway.shared.consumer import IdempotentConsumer, PermanentError
from clearway.shared.dlt import DeadLetters
from clearway.shared.events import Event
from clearway.shared.kafka import subscribe_idempotent
from clearway.shared.schemas import SchemaRegistry
from clearway.shared.schemas.registry import UnknownSchemaError

CONSUMER = "audit"


def topic_pattern(prefix: str) -> str:
    """Regex for every domain's event topic of every major under ``prefix`` (not retries
    or DLTs): the consent service's is v2 (docs/design.md §3)."""
    return "^" + re.escape(prefix) + r"clearway\.[a-z][a-z0-9_]*\.events\.v[0-9]+$"


def lenient_validator(registry: SchemaRegistry):  # type: ignore[no-untyped-def]
    """Validate payloads whose schema we know; audit what we do not know yet rather
    than dead-letter it (a newer producer may be ahead of this deployment)."""

    def validate(event_type: str, major: int, data: Mapping[str, Any]) -> Mapping[str, Any]:
        try:
            return registry.validate(event_type, major, data)
        except UnknownSchemaError:
            return data

    return validate


class RecordEvents:
    """Batch handler: one audit record per event, appended in arrival order."""

    def __init__(self, clock: Clock = utc_now) -> None:
        self.clock = clock
        self.partitions = PartitionCache()

    async def __call__(self, conn: asyncpg.Connection, events: Sequence[Event]) -> None:
        try:
            entries = [entry_from_event(ev) for ev in events]
            await append_entries(conn, entries, clock=self.clock, partitions=self.partitions)
        except InvalidAuditEvent as e:
            raise PermanentError(str(e)) from e


def build_consumer(
    pool: asyncpg.Pool,
    dead_letters: DeadLetters,
    registry: SchemaRegistry | None,
    clock: Clock = utc_now,
) -> IdempotentConsumer:
    return IdempotentConsumer(
        CONSUMER,
        pool,
        dead_letters,
        batch_handler=RecordEvents(clock),
        validate=lenient_validator(registry) if registry is not None else None,
        accept=not_our_own_checkpoints,
    )


def not_our_own_checkpoints(ev: Event) -> bool:
    # Recording our own checkpoint announcements would grow the log by one record
    # per checkpoint, and so ask for another checkpoint, for ever.
    return ev.type != "audit.checkpoint_signed"


def subscribe(broker: KafkaBroker, consumer: IdempotentConsumer, prefix: str) -> Any:
    return subscribe_idempotent(broker, consumer, group_id=CONSUMER, pattern=topic_pattern(prefix))

"""Fan-out subscriber: every ``<prefix>clearway.<domain>.events.v<N>`` topic by pattern.

The webhook service's own operational events are not fanned out: an endpoint
that fails would otherwise be sent the news of its own failure, fail again, and
feed itself forever.
"""

from __future__ import annotations

import re
from typing import Any

import asyncpg
from faststream.kafka import KafkaBroker

from clearway.shared.consumer import IdempotentConsumer
from clearway.shared.dlt import DeadLetters
from clearway.shared.events import Event
from clearway.shared.kafka import subscribe_idempotent
from clearway.shared.schemas import UnknownSchemaError, default_registry
from clearway.webhooks.handlers import Context, fan_out_handler

GROUP = "webhooks"


def events_pattern(prefix: str) -> str:
    """Every domain's events topic, of every major (dead-letter topics and our own
    excluded): the consent service's is v2 (docs/design.md §3)."""
    return rf"^{re.escape(prefix)}clearway\.(?!webhooks\.)[a-z0-9_]+\.events\.v[0-9]+$"


def fan_out_consumer(
    ctx: Context, pool: asyncpg.Pool, dead_letters: DeadLetters
) -> IdempotentConsumer:
    registry = default_registry()

    def validate(type: str, major: int, data: Any) -> Any:
        try:
            return registry.validate(type, major, data)
        except UnknownSchemaError as e:  # a ValueError reaches the dead-letter topic
            raise ValueError(str(e)) from None

    def accept(ev: Event) -> bool:
        return not ev.type.startswith("webhooks.")

    return IdempotentConsumer(
        GROUP,
        pool,
        dead_letters,
        batch_handler=fan_out_handler(ctx),
        validate=validate,
        accept=accept,
    )


def subscribe(broker: KafkaBroker, consumer: IdempotentConsumer, prefix: str) -> Any:
    return subscribe_idempotent(
        broker,
        consumer,
        group_id=f"{prefix}{GROUP}",
        pattern=events_pattern(prefix),
        max_records=1000,
    )

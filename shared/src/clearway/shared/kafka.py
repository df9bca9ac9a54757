"""Kafka plumbing on FastStream + aiokafka: brokers, topics, idempotent subscribers.

Subscribers fetch batches, apply them through an :class:`IdempotentConsumer`
and hand their offsets to an :class:`~clearway.shared.offsets.OffsetCommitter`
only after the database commit (``AckPolicy.MANUAL``; the commit itself runs off
the consume path). FastStream does not support Kafka transactions; the outbox +
inbox pair gives exactly-once effects instead (docs/design.md §4).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaMessage
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

from clearway.shared.consumer import IdempotentConsumer
from clearway.shared.kafka_lag import DeadLetterDepth, record_subscribers
from clearway.shared.kafka_link import KafkaLink, TopicLayout
from clearway.shared.offsets import FlushOnRevoke, OffsetCommitter, flushing_stop
from clearway.shared.settings import ServiceSettings

log = logging.getLogger(__name__)


def make_broker(link: KafkaLink, **kwargs: Any) -> KafkaBroker:
    """A FastStream broker connecting over ``link``, whose producer is idempotent with
    ``acks=all``.

    FastStream's per-message "Received/Processed" lines go to DEBUG: at thousands
    of events a second they would drown the service's own logs.
    """
    kwargs.setdefault("log_level", logging.DEBUG)
    return KafkaBroker(
        link.bootstrap,
        security=_security(link),
        enable_idempotence=True,
        acks="all",
        **kwargs,
    )


def _security(link: KafkaLink) -> BaseSecurity | None:
    """FastStream's form of the link's login and TLS settings."""
    if not link.authenticated:
        return None
    if not link.sasl:  # SSL: the client certificate in the context is the login
        return BaseSecurity(ssl_context=link.ssl_context(), use_ssl=True)
    opts = link.client_options()
    sasl = {"SCRAM-SHA-512": SASLScram512, "PLAIN": SASLPlaintext}.get(
        link.sasl_mechanism, SASLScram256
    )
    return sasl(
        opts["sasl_plain_username"],
        opts["sasl_plain_password"],
        ssl_context=link.ssl_context(),
        use_ssl=link.encrypted,
    )


async def _message_itself(msg: KafkaMessage) -> KafkaMessage:
    """The "decoded body" of a batch: the message itself, its records undecoded.

    Decoding is the consumer's job: a poison payload must reach our DLT logic, not
    fail inside FastStream before the handler (which would skip it unacked). Handing
    the message over as the subscriber's plain argument also spares the
    ``KafkaMessage`` context annotation, which fast_depends resolves with a
    synchronous function in a worker thread: a thread hop (~5 ms p50 on a busy host)
    between every fetch and its handler.
    """
    return msg


def subscribe_idempotent(
    broker: KafkaBroker,
    consumer: IdempotentConsumer,
    *topics: str,
    group_id: str,
    max_records: int = 500,
    pattern: str | None = None,
    batch_timeout_ms: int = 5,
) -> Any:
    """Register a batch subscriber that feeds ``consumer`` and commits offsets after
    the database commit.

    Batches adapt to the load by themselves: a fetch returns what arrived while the
    previous batch was applied (aiokafka fetches the next records meanwhile), one
    record when idle, up to ``max_records`` when behind; each batch is one inbox
    transaction. The Kafka offset commit is not awaited before the next fetch: an
    :class:`OffsetCommitter` commits applied offsets in the background, coalesced,
    and flushes them on a rebalance and on stop (docs/design.md §4.3).
    """
    committer = OffsetCommitter(consumer.name)

    async def subscriber(message: Any) -> None:  # a KafkaMessage (_message_itself)
        records = message.raw_message
        batch = records if isinstance(records, tuple | list) else (records,)
        await consumer.handle_records(batch)
        # Only now, after the inbox transaction committed: never ahead of the effects.
        committer.applied(message.consumer, batch)

    subscriber.__name__ = f"consume_{consumer.name}"
    kwargs: dict[str, Any] = {}
    if pattern:
        kwargs["pattern"] = pattern
    sub = broker.subscriber(
        *topics,
        group_id=group_id,
        batch=True,
        max_records=max_records,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.MANUAL,
        decoder=_message_itself,
        listener=FlushOnRevoke(committer),
        # FastStream sleeps batch_timeout_ms after an empty poll on top of the
        # poll itself; a short one keeps idle-to-first-message latency ~10 ms.
        batch_timeout_ms=batch_timeout_ms,
        **kwargs,
    )
    # FastStream has no stop hook: the subscriber's own stop commits what was applied
    # before its Kafka consumer closes.
    sub.stop = flushing_stop(sub.stop, committer)
    return sub(subscriber)


async def run_broker(
    broker: KafkaBroker,
    *,
    kafka: KafkaLink,
    check_every_s: float = 1.0,
    lag_every_s: float = 15.0,
) -> None:
    """Run ``broker``'s subscribers until cancelled: the supervised form of a broker.

    Raises when a subscriber's consume loop died (FastStream restarts a loop that
    crashed, but one that ended stays dead), so the supervisor restarts the broker.
    Every ``lag_every_s`` it records the subscribers' consumer lag and dead-letter
    depth (:mod:`clearway.shared.kafka_lag`, as ``kafka``'s principal); a failed
    measurement is logged and leaves the last values in place.
    """
    await broker.start()
    depth = DeadLetterDepth(kafka)
    measured = -lag_every_s
    try:
        while True:
            await asyncio.sleep(check_every_s)
            for sub in broker.subscribers:
                tasks = getattr(sub, "tasks", None)
                if tasks and all(t.done() for t in tasks):
                    raise RuntimeError(f"a consume loop of {sub.specification.name} ended")
            if time.monotonic() - measured >= lag_every_s:
                measured = time.monotonic()
                try:
                    await record_subscribers(broker.subscribers, depth)
                except Exception as error:  # a metric must never stop consumption
                    log.warning("consumer lag not measured: %s", error)
    finally:
        with contextlib.suppress(Exception):
            await depth.close()
        with contextlib.suppress(Exception):
            await broker.stop()


def consumers_healthy(consumers: Sequence[IdempotentConsumer]) -> bool:
    """Health of a broker's consumers: none is stuck retrying its infrastructure."""
    return all(c.healthy() for c in consumers)


async def ensure_topics(
    link: KafkaLink, topics: Iterable[str], *, layout: TopicLayout | None = None
) -> list[str]:
    """Create topics that do not exist yet with ``layout`` (idempotent: existing topics
    are left as they are); returns the topics this call created."""
    layout = layout or TopicLayout()
    admin = AIOKafkaAdminClient(**link.client_options())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [
            NewTopic(
                t,
                num_partitions=layout.partitions,
                replication_factor=layout.replication_factor,
                topic_configs=layout.configs(t),
            )
            for t in dict.fromkeys(topics)
            if t not in existing
        ]
        if new:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(new)
        return [t.name for t in new]
    finally:
        await admin.close()


async def ensure_service_topics(settings: ServiceSettings, topics: Iterable[str]) -> None:
    """A service's topics at start, created as its own principal with the platform's
    layout; nothing with ``CLEARWAY_CREATE_TOPICS_AT_START=false`` (``clearway-topics``
    made them before, and the service's principal needs no right to create topics)."""
    if settings.platform.create_topics_at_start:
        await ensure_topics(settings.kafka, topics, layout=settings.platform.topic_layout)

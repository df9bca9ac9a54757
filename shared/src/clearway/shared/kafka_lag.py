"""Consumer lag and dead-letter depth as metrics, measured by the consuming service
itself (docs/design.md §11).

Each service measures what it consumes, as its own principal, so no extra
exporter needs broker-wide rights: for every partition assigned to this
process, ``clearway_consumer_lag_messages`` is the end offset minus the group's
committed offset (records not yet applied), and ``clearway_dlt_depth_messages``
is, for each dead-letter topic of those (topic, group) pairs, the end offset
minus what ``clearway-dlt redrive`` has committed (dead letters not yet
redriven). Both are summed per topic; replicas report their own partitions, so
the group's lag is the sum over instances.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from clearway.shared.dlt import REDRIVE_GROUP, dlt_topic
from clearway.shared.kafka_link import KafkaLink
from clearway.shared.metrics import CONSUMER_LAG_MESSAGES, DLT_DEPTH_MESSAGES


async def _behind(consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> dict[str, int]:
    """Per topic: records between ``consumer``'s group's committed offset (the
    partition's beginning when it never committed) and the partition's end."""
    if not tps:
        return {}
    end = await consumer.end_offsets(tps)
    committed: dict[TopicPartition, int] = {}
    for tp in tps:
        offset = await consumer.committed(tp)
        if offset is not None:
            committed[tp] = offset
    never = [tp for tp in tps if tp not in committed]
    if never:
        committed |= await consumer.beginning_offsets(never)
    out: dict[str, int] = defaultdict(int)
    for tp in tps:
        out[tp.topic] += max(end[tp] - committed[tp], 0)
    return out


async def record_consumer_lag(consumer: AIOKafkaConsumer, group: str) -> set[str]:
    """Set ``clearway_consumer_lag_messages`` for the partitions assigned to
    ``consumer`` (of consumer group ``group``); returns the topics it holds."""
    behind = await _behind(consumer, sorted(consumer.assignment()))
    for topic, lag in behind.items():
        CONSUMER_LAG_MESSAGES.labels(group, topic).set(lag)
    return set(behind)


class DeadLetterDepth:
    """Measures ``clearway_dlt_depth_messages`` with one group-less client per process
    that reads the redrive progress (group ``clearway-dlt-redrive``) without joining."""

    def __init__(self, link: KafkaLink) -> None:
        self.link = link
        self._consumer: AIOKafkaConsumer | None = None

    async def record(self, consumed: Iterable[tuple[str, str]]) -> None:
        """Set the depth of the dead-letter topic of each (topic, group) pair; a
        dead-letter topic not created yet (nothing ever failed) is empty."""
        consumer = await self._client()
        await consumer._client.force_metadata_update()  # DLTs appear on first use
        for topic, group in consumed:
            dlt = dlt_topic(topic, group)
            parts = consumer._client.cluster.partitions_for_topic(dlt) or set()
            behind = await _behind(consumer, [TopicPartition(dlt, p) for p in sorted(parts)])
            DLT_DEPTH_MESSAGES.labels(group, topic).set(behind.get(dlt, 0))

    async def _client(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(
                **self.link.client_options(), group_id=REDRIVE_GROUP, enable_auto_commit=False
            )
            await consumer.start()
            self._consumer = consumer
        return self._consumer

    async def close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()


async def record_subscribers(subscribers: Iterable[Any], depth: DeadLetterDepth) -> None:
    """Lag and dead-letter depth of every started FastStream Kafka subscriber."""
    consumed: dict[tuple[str, str], None] = {}
    for sub in subscribers:
        consumer = getattr(sub, "consumer", None)
        group = getattr(sub, "group_id", None)
        if consumer is None or not group:
            continue
        for topic in await record_consumer_lag(consumer, group):
            consumed[(topic, group)] = None
    await depth.record(consumed)

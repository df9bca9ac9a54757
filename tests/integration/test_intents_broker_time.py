"""The intents topic carries the broker's append time (ADR 0054): an intent's token is
judged at its record's time, so an initiator must not be able to choose that time."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from clearway.shared.kafka import ensure_topics
from clearway.shared.kafka_link import INTENTS_TOPIC
from clearway.shared.relay import idempotent_producer

pytestmark = pytest.mark.integration

LOG_APPEND_TIME = 1  # Kafka's timestamp type of a record stamped by the broker


async def _first_record(platform, topic: str):
    consumer = AIOKafkaConsumer(
        group_id=None, auto_offset_reset="earliest", **platform.kafka.client_options()
    )
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(3)])
        async with asyncio.timeout(60):
            while True:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    if records:
                        return records[0]
    finally:
        await consumer.stop()


async def test_a_backdated_intent_carries_the_brokers_time_and_other_topics_the_senders(
    platform,
):
    intents = platform.topic(INTENTS_TOPIC)
    events = platform.topic("clearway.transfer.events.v1")
    layout = platform.topic_layout  # the platform's default: broker time for intents
    assert layout.configs(intents)["message.timestamp.type"] == "LogAppendTime"
    assert "message.timestamp.type" not in layout.configs(events)
    await ensure_topics(platform.kafka, [intents, events], layout=layout)
    hour_ago = int((time.time() - 3600) * 1000)
    producer = idempotent_producer(platform.kafka)
    await producer.start()
    try:
        for topic in (intents, events):
            await producer.send_and_wait(topic, b"{}", key=b"k", timestamp_ms=hour_ago)
    finally:
        await producer.stop()
    stamped = await _first_record(platform, intents)
    assert stamped.timestamp_type == LOG_APPEND_TIME
    assert abs(stamped.timestamp / 1000 - time.time()) < 120  # now, not an hour ago
    kept = await _first_record(platform, events)
    assert kept.timestamp == hour_ago  # CreateTime: the sender's, as before
    assert not platform.replace(intents_broker_time=False).topic_layout.configs(intents)

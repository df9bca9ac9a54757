"""A consumer's dead letters for platform operators over HTTP (docs/design.md §4.4):
each dead-letter topic's depth and first letters (redacted), and redrive *into the
owning consumer*.

Redrive here hands each pending letter, as the record it was, to the consumer's own
``handle_records`` (the inbox makes a second application a no-op; a letter that fails
again is dead-lettered again). Unlike ``clearway-dlt redrive`` it republishes nothing,
so a service never needs write access to another service's topic (its principal
reads its own dead-letter topics and commits in the redrive group only). Progress is
the committed offsets of ``dlt.REDRIVE_GROUP`` on each topic, the group the CLI and the
depth metric use too, so a letter is redriven once whichever way, an interrupted
redrive resumes, and ``clearway_dlt_depth_messages`` falls when operators redrive.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import TopicPartition
from aiokafka.structs import OffsetAndMetadata

from clearway.shared.consumer import IdempotentConsumer
from clearway.shared.dlt import REDRIVE_GROUP, DeadLetter
from clearway.shared.dlt_cli import describe, read_pending
from clearway.shared.kafka_link import KafkaLink
from clearway.shared.redaction import redact_text

#: Letters shown per topic, and the characters of each payload shown.
FIRST = 5
PAYLOAD_CHARS = 500


@dataclass
class _Record:
    """A dead letter as the record it was when its consumer failed it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


@dataclass(frozen=True)
class Redriven:
    topic: str
    count: int
    #: the sum of the committed offsets after the redrive: grows with every redrive
    #: that moved, a version for the audited action
    position: int


class UnknownTopic(KeyError):
    """Not a dead-letter topic of this consumer."""


def _shown(d: DeadLetter) -> dict[str, Any]:
    text = (d.value or b"").decode("utf-8", errors="replace")
    return {**describe(d), "payload": redact_text(text)[:PAYLOAD_CHARS]}


class DeadLetterAdmin:
    """The dead-letter topics ``topics`` of ``consumer`` (its group's), over ``link``."""

    def __init__(
        self, link: KafkaLink, consumer: IdempotentConsumer, topics: Sequence[str]
    ) -> None:
        self.link = link
        self.consumer = consumer
        self.topics = list(topics)
        self.group = REDRIVE_GROUP

    async def overview(self, first: int = FIRST) -> list[dict[str, Any]]:
        """Per topic: the letters not yet redriven (depth) and the first of them."""
        out = []
        for topic in self.topics:
            letters, reader = await read_pending(self.link, topic, self.group)
            await reader.stop()
            out.append(
                {
                    "topic": topic,
                    "depth": len(letters),
                    "first": [_shown(d) for d in letters[:first]],
                }
            )
        return out

    async def redrive(self, topic: str) -> Redriven:
        """Hand every pending letter of ``topic`` to the consumer again, then commit."""
        if topic not in self.topics:
            raise UnknownTopic(topic)
        letters, reader = await read_pending(self.link, topic, self.group)
        try:
            records = [
                _Record(
                    d.meta("original_topic") or topic,
                    int(d.meta("original_partition") or 0),
                    int(d.meta("original_offset") or 0),
                    d.key,
                    d.value,
                    d.original_headers,
                )
                for d in letters
            ]
            if records:
                await self.consumer.handle_records(records)
                done = {
                    TopicPartition(topic, d.dlt_partition): OffsetAndMetadata(d.dlt_offset + 1, "")
                    for d in letters
                }
                await reader.commit(done)
            committed = [await reader.committed(tp) for tp in reader.assignment()]
            return Redriven(topic, len(letters), sum(c or 0 for c in committed))
        finally:
            await reader.stop()

"""Dead-letter topics (docs/design.md §3, §4.4).

A message a consumer cannot apply goes to ``<topic>.<group>.dlt`` with its
original key, value and headers, plus ``dlt_*`` headers saying why, from
where, and after how many attempts. A command's access token is not copied: a
dead-letter topic is kept for long and read by operators, and the token would
have expired before any redrive (docs/design.md §9). It is written (and acknowledged by Kafka)
before the consumer commits its offset, so nothing is ever dropped silently.
A record refused for carrying a card number is written with every card number
in its key, value and headers masked (docs/design.md §9): no topic holds one.
"""

from __future__ import annotations

import json
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer

from clearway.shared.cards import mask_cards, mask_cards_in
from clearway.shared.events import AUTHORIZATION_HEADER
from clearway.shared.metrics import DLT_MESSAGES_TOTAL
from clearway.shared.redaction import redact_text

DLT_PREFIX = "dlt_"
REDRIVEN_FROM = "dlt_redriven_from"
#: The consumer group whose offsets on a DLT record how far redrives got: the
#: ``clearway-dlt redrive`` CLI and operators' ``DeadLetterAdmin`` alike, so a letter
#: redriven either way leaves the depth metric (``kafka_lag``) and the other's list.
#: Readers assign partitions by hand, so sharing it causes no rebalance.
REDRIVE_GROUP = "clearway-dlt-redrive"


class KafkaRecord(Protocol):
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Any


def dlt_topic(topic: str, group: str) -> str:
    """The dead-letter topic of ``group`` for ``topic``."""
    return f"{topic}.{group}.dlt"


@dataclass(frozen=True)
class DeadLetter:
    """A record read back from a dead-letter topic."""

    dlt_topic: str
    dlt_partition: int
    dlt_offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]

    def meta(self, name: str) -> str | None:
        for k, v in self.headers:
            if k == DLT_PREFIX + name:
                return v.decode(errors="replace")
        return None

    @property
    def original_headers(self) -> list[tuple[str, bytes]]:
        return [(k, v) for k, v in self.headers if not k.startswith(DLT_PREFIX)]


class DeadLetters:
    """Publishes failed records of one consumer group to its dead-letter topics."""

    def __init__(self, producer: AIOKafkaProducer, group: str) -> None:
        self._producer = producer
        self.group = group

    async def send(
        self,
        record: KafkaRecord,
        error: BaseException | str,
        *,
        attempts: int,
        mask_card_numbers: bool = False,
    ) -> None:
        """Write ``record`` to its DLT and wait until Kafka has it; with
        ``mask_card_numbers``, a copy with every card number masked."""
        if isinstance(error, BaseException):
            etype, message = type(error).__name__, str(error)
            trace = "".join(traceback.format_exception(error, limit=8))[-4000:]
        else:
            etype, message, trace = "Rejected", error, ""
        headers = [
            (k, v)
            for k, v in (record.headers or ())
            if not k.startswith(DLT_PREFIX) and k != AUTHORIZATION_HEADER
        ]
        key, value = record.key, record.value
        if mask_card_numbers:
            key, value = _masked(key), _masked_value(value)
            headers = [(k, _masked(v) or b"") for k, v in headers]
        meta = {
            "error_type": etype,
            # Errors may quote the payload: they pass through the redaction layer.
            "error_message": redact_text(message)[:2000],
            "error_trace": redact_text(trace),
            "original_topic": record.topic,
            "original_partition": str(record.partition),
            "original_offset": str(record.offset),
            "attempts": str(attempts),
            "consumer_group": self.group,
            "failed_at": datetime.now(UTC).isoformat(),
        }
        headers += [(DLT_PREFIX + k, v.encode()) for k, v in meta.items() if v]
        topic = dlt_topic(record.topic, self.group)
        fut = await self._producer.send(topic, value=value, key=key, headers=headers)
        await fut
        DLT_MESSAGES_TOTAL.labels(self.group, record.topic).inc()


def _masked(raw: bytes | None) -> bytes | None:
    if raw is None:
        return None
    text = raw.decode("utf-8", errors="replace")
    masked = mask_cards(text)
    return raw if masked == text else masked.encode()


def _masked_value(raw: bytes | None) -> bytes | None:
    """A JSON value is decoded first, so a number behind a ``\\u`` escape is masked too."""
    if raw is None:
        return None
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        return _masked(raw)
    return json.dumps(mask_cards_in(doc), separators=(",", ":")).encode()

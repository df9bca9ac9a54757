"""Idempotent consumers (docs/design.md §4.3, §4.4).

A batch of records is applied in one Postgres transaction together with its
inbox rows ``(consumer, event_id, correlation_id)``: an event whose inbox row
already exists was applied before and is skipped. The caller commits Kafka
offsets only after this returns, i.e. after the database commit.

Failures:
- undecodable or schema-invalid records go straight to the dead-letter topic;
- infrastructure errors (database or network down) are retried with backoff
  until they pass: the batch is not acknowledged meanwhile, nothing is skipped;
- with ``refuse_card_numbers`` (consumers of intents, which partners write), a
  record carrying a card number in its data, subject or key is dead-lettered
  at once, the number masked in the copy (docs/design.md §9);
- a handler error isolates the message (one transaction per message), retries
  it with backoff and dead-letters it once ``retry`` (a :class:`Backoff`) is exhausted;
  :class:`PermanentError` dead-letters at once;
- a handler may refuse a message it has answered (a rejection event in the same
  transaction) by returning the reason: the record is then dead-lettered too,
  before the transaction commits, so every refusal is on file for operators.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import asyncpg
from opentelemetry import trace

from clearway.shared.backoff import Backoff, retry
from clearway.shared.cards import first_card_location, has_card
from clearway.shared.context import correlation
from clearway.shared.dlt import DeadLetters, KafkaRecord
from clearway.shared.events import Event, MalformedEvent
from clearway.shared.metrics import CONSUMER_LATENCY_SECONDS, CONSUMER_MESSAGES_TOTAL
from clearway.shared.outbox import major_of
from clearway.shared.telemetry import context_from_traceparent

log = logging.getLogger(__name__)
_tracer = trace.get_tracer(__name__)

#: Applies one event inside the inbox transaction; a returned text is a refusal reason.
Handler = Callable[[asyncpg.Connection, Event], Awaitable[str | None]]
BatchHandler = Callable[[asyncpg.Connection, Sequence[Event]], Awaitable[None]]
Validator = Callable[[str, int, Mapping[str, Any]], Mapping[str, Any]]

#: Errors that say "the infrastructure is unwell", not "this message is bad".
INFRA_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.TooManyConnectionsError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
    TimeoutError,
)


@contextmanager
def event_scope(ev: Event, consumer: str, *, topic: str | None = None) -> Iterator[None]:
    """Handle ``ev`` inside its trace and correlation: a CONSUMER span whose parent
    is the event's ``traceparent``, with the correlation id and tenant bound.

    The kit opens it around per-event handlers; batch handlers use it around the
    work they do for each event so outbox writes continue the event's trace.
    """
    parent = context_from_traceparent(ev.traceparent, ev.tracestate)
    with (
        correlation(ev.correlation_id, ev.tenant, causation_id=ev.id),
        _tracer.start_as_current_span(
            f"{topic or ev.type} process",
            context=parent,
            kind=trace.SpanKind.CONSUMER,
            attributes={
                "messaging.system": "kafka",
                "messaging.destination.name": topic or "",
                "messaging.message.id": ev.id,
                "messaging.consumer.group.name": consumer,
                "clearway.correlation_id": ev.correlation_id or "",
                "clearway.event_type": ev.type,
            },
        ),
    ):
        yield


class PermanentError(Exception):
    """Raised by a handler when a message can never succeed: dead-letter it now."""


#: Per-message retries of a handler error before the message is dead-lettered.
MESSAGE_RETRY = Backoff(base=0.1, cap=5.0, jitter=0.5, max_attempts=4)
#: Infrastructure errors and dead-letter writes are retried until they pass: the
#: batch is not acknowledged meanwhile and the consumer reports itself unhealthy.
#: At most ~12 s apart, so a database or broker that comes back is noticed quickly.
INFRA_RETRY = Backoff(base=0.2, cap=10.0, jitter=0.2)


class IdempotentConsumer:
    """Applies Kafka records exactly once per ``name`` through the schema's inbox."""

    def __init__(
        self,
        name: str,
        pool: asyncpg.Pool,
        dead_letters: DeadLetters,
        *,
        handler: Handler | None = None,
        batch_handler: BatchHandler | None = None,
        validate: Validator | None = None,
        accept: Callable[[Event], bool] | None = None,
        retry: Backoff = MESSAGE_RETRY,
        infra_retry: Backoff = INFRA_RETRY,
        refuse_card_numbers: bool = False,
    ) -> None:
        if (handler is None) == (batch_handler is None):
            raise ValueError("give exactly one of handler or batch_handler")
        self.name = name
        self.pool = pool
        self.dead_letters = dead_letters
        self.handler = handler
        self.batch_handler = batch_handler
        self.validate = validate
        self.accept = accept
        self.retry = retry
        self.infra_retry = infra_retry
        self.refuse_card_numbers = refuse_card_numbers
        self.last_error: str | None = None
        self.applied = 0
        self.duplicates = 0

    def healthy(self) -> bool:
        """False while the database (or the dead-letter topic) keeps failing: records
        are then neither applied nor acknowledged."""
        return self.last_error is None

    def _unwell(self, error: BaseException, attempt: int) -> None:
        if self.last_error is None:
            log.error("%s: infrastructure failing (%s); retrying until it passes", self.name, error)
        self.last_error = f"{type(error).__name__}: {error}"[:500]

    async def handle_records(self, records: Sequence[KafkaRecord]) -> None:
        """Apply a fetched batch. Returns once every record is applied, a duplicate,
        or dead-lettered; the caller then commits the offsets."""
        started = time.perf_counter()
        good: list[tuple[KafkaRecord, Event]] = []
        for r in records:
            try:
                ev = Event.from_kafka(r.headers or (), r.value, timestamp_ms=_timestamp_ms(r))
                # Before the schema: a field the schema refuses may hold the number.
                where = _card_field(r, ev) if self.refuse_card_numbers else None
                if where is None:
                    ev = self._validated(ev)
            except (MalformedEvent, ValueError) as e:
                # A record we cannot even read may still carry a card number.
                await self._dead_letter(
                    r, e, attempts=1, mask_card_numbers=self.refuse_card_numbers
                )
                continue
            if where is not None:
                reason = f"card number refused in {where}; send a card token (docs/design.md §9)"
                await self._dead_letter(r, reason, attempts=1, mask_card_numbers=True)
                continue
            if self.accept is None or self.accept(ev):
                good.append((r, ev))
        if good:
            try:
                await self._with_infra_retry(_bind(self._apply, good))
            except Exception as e:
                if len(good) == 1:
                    await self._one_by_one(good, first_error=e)
                else:
                    log.info("batch of %d failed (%s); isolating messages", len(good), e)
                    await self._one_by_one(good)
        CONSUMER_LATENCY_SECONDS.labels(self.name).observe(time.perf_counter() - started)

    def _validated(self, ev: Event) -> Event:
        if self.validate is not None and ev.dataschema:
            data = self.validate(ev.type, major_of(ev.dataschema), ev.data)
            ev = replace(ev, data=data)
        return ev

    async def _with_infra_retry(self, op: Callable[[], Awaitable[None]]) -> None:
        await retry(
            op,
            self.infra_retry,
            what=f"{self.name}: apply",
            retry_on=INFRA_ERRORS,
            logger=log,
            on_retry=self._unwell,
        )
        self.last_error = None

    async def _apply(self, items: Sequence[tuple[KafkaRecord, Event]]) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "INSERT INTO inbox (consumer, event_id, correlation_id)"
                " SELECT $1, e, c FROM unnest($2::text[], $3::text[]) AS t(e, c)"
                " ON CONFLICT DO NOTHING RETURNING event_id",
                self.name,
                [ev.id for _, ev in items],
                [ev.correlation_id for _, ev in items],
            )
            fresh = {r["event_id"] for r in rows}
            todo: list[tuple[KafkaRecord, Event]] = []
            for r, ev in items:
                if ev.id in fresh:
                    fresh.discard(ev.id)  # a copy inside the same batch counts once
                    todo.append((r, ev))
            if self.batch_handler is not None:
                if len(todo) == 1:  # the common case at low rates: one unbroken trace
                    r, ev = todo[0]
                    with event_scope(ev, self.name, topic=r.topic):
                        await self.batch_handler(conn, [ev])
                elif todo:
                    # Each event's consumption still shows in its own trace; work the
                    # batch handler does per event can continue it with event_scope().
                    for r, ev in todo:
                        with event_scope(ev, self.name, topic=r.topic):
                            pass
                    await self.batch_handler(conn, [ev for _, ev in todo])
            else:
                assert self.handler is not None
                for r, ev in todo:
                    await self._traced(conn, r, ev)
        self.applied += len(todo)
        self.duplicates += len(items) - len(todo)
        CONSUMER_MESSAGES_TOTAL.labels(self.name, "applied").inc(len(todo))
        if len(items) > len(todo):
            CONSUMER_MESSAGES_TOTAL.labels(self.name, "duplicate").inc(len(items) - len(todo))

    async def _traced(self, conn: asyncpg.Connection, r: KafkaRecord, ev: Event) -> None:
        assert self.handler is not None
        with event_scope(ev, self.name, topic=r.topic):
            refused = await self.handler(conn, ev)
        if refused:
            # Before the commit: a crash in between dead-letters it again on
            # redelivery (a duplicate entry), never not at all.
            await self._dead_letter(r, refused, attempts=1)

    async def _one_by_one(
        self, items: Sequence[tuple[KafkaRecord, Event]], first_error: Exception | None = None
    ) -> None:
        for r, ev in items:
            attempt = 1 if first_error is not None else 0
            error: Exception | None = first_error
            first_error = None
            while True:
                if error is not None:
                    delay = None if isinstance(error, PermanentError) else self.retry.delay(attempt)
                    if delay is None:
                        await self._dead_letter(r, error, attempts=attempt)
                        break
                    await asyncio.sleep(delay)
                try:
                    await self._with_infra_retry(_bind(self._apply, [(r, ev)]))
                    break
                except Exception as e:
                    attempt += 1
                    error = e
                    log.warning("%s: %s failed (attempt %d): %s", self.name, ev.id, attempt, e)

    async def _dead_letter(
        self,
        r: KafkaRecord,
        error: BaseException | str,
        *,
        attempts: int,
        mask_card_numbers: bool = False,
    ) -> None:
        log.error(
            "%s: dead-lettering %s[%d]@%d: %s", self.name, r.topic, r.partition, r.offset, error
        )
        CONSUMER_MESSAGES_TOTAL.labels(self.name, "dead_lettered").inc()
        # The DLT write must succeed before the offset moves on: retried until it does.
        await retry(
            lambda: self.dead_letters.send(
                r, error, attempts=attempts, mask_card_numbers=mask_card_numbers
            ),
            self.infra_retry,
            what=f"{self.name}: dead-letter write",
            logger=log,
            on_retry=self._unwell,
        )
        self.last_error = None


def _card_field(r: KafkaRecord, ev: Event) -> str | None:
    """Where a record carries a card number (``data.metadata.pan``, ``subject``, ``key``),
    never the number itself; ``None`` when it carries none."""
    loc = first_card_location(ev.data)
    if loc is not None:
        return ".".join(map(str, ("data", *loc)))
    if ev.subject and has_card(ev.subject):
        return "subject"
    if r.key and has_card(r.key.decode("utf-8", errors="replace")):
        return "key"
    return None


def _timestamp_ms(r: KafkaRecord) -> int | None:
    """The record's Kafka timestamp; a redriven dead letter (``dlt_admin``) has none."""
    ts = getattr(r, "timestamp", None)
    return ts if isinstance(ts, int) else None


def _bind(
    op: Callable[[Sequence[tuple[KafkaRecord, Event]]], Awaitable[None]],
    items: Sequence[tuple[KafkaRecord, Event]],
) -> Callable[[], Awaitable[None]]:
    return lambda: op(items)

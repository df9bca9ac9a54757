"""Revoked consents, tokens and clients, kept in memory by every service.

docs/design.md §7: a revoked consent's tokens stop working everywhere within a second,
not at token expiry. The consent service publishes revocations as CloudEvents on
Kafka; each service replays that topic from the beginning into a
:class:`RevocationSet` (so a restarted service rebuilds it) and checks every
verified token against it. The topic's retention must outlast the longest token
lifetime (plus how far in the past a token's time of use may lie, ``past_use_s`` of
``verify_tokens``): once every token of a revoked consent or client has expired, its
revocation no longer matters.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from clearway.shared.auth.principal import Principal
from clearway.shared.backoff import Backoff
from clearway.shared.events import events_topic
from clearway.shared.kafka_link import KafkaLink
from clearway.shared.metrics import REVOCATION_FEED_LAG_SECONDS

log = logging.getLogger(__name__)

#: Reconnect delays of the revocation feed; it never gives up.
FEED_BACKOFF = Backoff(base=0.5, cap=10.0, jitter=0.2)

#: The consent service's topic, which carries the revocations (before the topic prefix).
CONSENT_EVENTS_TOPIC = events_topic("consent")

CONSENT_REVOKED = "consent.revoked"
TOKEN_REVOKED = "token.revoked"  # noqa: S105 (an event type, not a secret)
CLIENT_DISABLED = "client.disabled"
CLIENT_CREDENTIALS_ROTATED = "client.credentials_rotated"
REVOCATION_EVENT_TYPES = frozenset(
    {CONSENT_REVOKED, TOKEN_REVOKED, CLIENT_DISABLED, CLIENT_CREDENTIALS_ROTATED}
)

Instant = datetime | float
#: How long after its expiry a revoked token id is kept by default: longer than the
#: verifier's leeway, so a revoked token is never accepted in the leeway window.
REVOKED_TOKEN_GRACE_S = 300.0


class RevocationSet:
    """In-memory revocations with O(1) checks by consent id, token id (jti) and client id.

    A revoked ``jti`` is kept until ``prune_grace_s`` after the token's own expiry
    (longer than the verifier's leeway, so a revoked token is never accepted in the
    leeway window), then pruned.
    """

    def __init__(
        self,
        *,
        prune_grace_s: float = REVOKED_TOKEN_GRACE_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.prune_grace_s = prune_grace_s
        self._clock = clock
        self._consents: dict[str, float] = {}
        self._tokens: dict[str, float] = {}
        self._token_expiries: list[tuple[float, str]] = []
        self._clients: dict[str, tuple[float, str]] = {}

    def __len__(self) -> int:
        return len(self._consents) + len(self._tokens) + len(self._clients)

    def revoke_consent(self, consent_id: str, at: Instant) -> None:
        """Refuse every token bound to ``consent_id``: revocation of a consent is final."""
        self._consents.setdefault(consent_id, _epoch(at))

    def revoke_token(self, jti: str, exp: Instant) -> None:
        """Refuse the token ``jti`` until it would have expired anyway (``exp``)."""
        expiry = max(_epoch(exp), self._tokens.get(jti, float("-inf")))
        self._tokens[jti] = expiry
        heapq.heappush(self._token_expiries, (expiry, jti))
        self.prune()

    def revoke_client(self, client_id: str, at: Instant, reason: str = "client disabled") -> None:
        """Refuse the client's tokens issued at or before ``at``.

        A disabled client gets no new tokens; after a credential rotation only tokens
        issued later pass. The issuer should give those an ``iat`` after ``at``: a
        token issued in the same second as ``at`` is refused.
        """
        cutoff = _epoch(at)
        current = self._clients.get(client_id)
        if current is None or cutoff >= current[0]:
            self._clients[client_id] = (cutoff, reason)

    def is_revoked(self, principal: Principal) -> str | None:
        """Why the principal's token is revoked, or ``None`` if it is not."""
        if principal.consent_id is not None and principal.consent_id in self._consents:
            return "consent revoked"
        if principal.jti in self._tokens:
            return "token revoked"
        client = self._clients.get(principal.client_id)
        if client is not None and principal.issued_at.timestamp() <= client[0]:
            return client[1]
        return None

    def prune(self) -> int:
        """Forget revoked token ids whose tokens have long expired; returns how many."""
        horizon = self._clock() - self.prune_grace_s
        pruned = 0
        while self._token_expiries and self._token_expiries[0][0] < horizon:
            expiry, jti = heapq.heappop(self._token_expiries)
            # The heap may hold an older expiry of a jti revoked twice; only the
            # latest one removes the entry.
            if self._tokens.get(jti) == expiry:
                del self._tokens[jti]
                pruned += 1
        return pruned

    def apply_event(self, ce_type: str, data: Mapping[str, Any]) -> None:
        """Apply a revocation CloudEvent; other types are ignored.

        Raises ``ValueError`` when an event of a revocation type lacks its fields.
        """
        if ce_type == CONSENT_REVOKED:
            self.revoke_consent(_text(data, "consent_id"), _instant(data, "revoked_at"))
        elif ce_type == TOKEN_REVOKED:
            self.revoke_token(_text(data, "jti"), _instant(data, "expires_at"))
        elif ce_type == CLIENT_DISABLED:
            self.revoke_client(_text(data, "client_id"), _instant(data, "at"), "client disabled")
        elif ce_type == CLIENT_CREDENTIALS_ROTATED:
            self.revoke_client(
                _text(data, "client_id"), _instant(data, "at"), "client credentials rotated"
            )


def apply_record(
    revocations: RevocationSet, headers: Sequence[tuple[str, bytes]], value: bytes | None
) -> bool:
    """Apply one Kafka record in CloudEvents binary mode; ``False`` if it is no revocation.

    Raises ``ValueError`` for a revocation record whose body is not a JSON object or
    lacks its fields.
    """
    ce_type = next((v for k, v in headers if k == "ce_type"), None)
    if not isinstance(ce_type, bytes):  # absent, or a null header value
        return False
    event_type = ce_type.decode("utf-8", "replace")
    if event_type not in REVOCATION_EVENT_TYPES:
        return False
    try:
        data = json.loads(value or b"")
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"{event_type} body is not JSON") from error
    if not isinstance(data, dict):
        raise ValueError(f"{event_type} body is not a JSON object")
    revocations.apply_event(event_type, data)
    return True


class RevocationFeed:
    """Keeps a :class:`RevocationSet` up to date from the consent service's topic.

    The consumer has no group id: every replica reads every partition from the
    beginning, so a restarted service rebuilds the whole set, and no offsets are
    committed. ``ready`` is set once the records present at start are applied.
    """

    def __init__(
        self,
        kafka: KafkaLink,
        topic: str,
        revocations: RevocationSet,
        *,
        start_timeout_s: float = 30.0,
        poll_timeout_ms: int = 100,
        backoff: Backoff = FEED_BACKOFF,
    ) -> None:
        self.kafka = kafka
        self.topic = topic
        self.revocations = revocations
        self.ready = asyncio.Event()
        self.backoff = backoff
        self.last_error: str | None = None
        self._failures = 0
        self._start_timeout_s = start_timeout_s
        self._poll_timeout_ms = poll_timeout_ms
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._end_offsets: dict[TopicPartition, int] = {}
        # When the broker last said this feed had everything (epoch seconds): the
        # ``clearway_revocation_feed_lag_seconds`` gauge is the time since.
        self._current_at = time.time()

    def healthy(self) -> bool:
        """True once the records present at start are applied and reads succeed."""
        return self.ready.is_set() and self.last_error is None

    def lag_s(self) -> float:
        """Seconds since the broker last answered that every record of the topic was
        applied; it grows while the feed is behind or cannot read."""
        return max(time.time() - self._current_at, 0.0)

    async def start(self) -> None:
        """Connect (raising if the topic cannot be read) and apply in a background task."""
        await self._connect()
        self._task = asyncio.create_task(self.run(), name=f"revocations:{self.topic}")

    async def stop(self) -> None:
        """Stop applying and close the consumer."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._close()

    async def run(self) -> None:
        """Apply revocations until cancelled (the supervised form of the feed).

        Survives broker trouble: a dead feed would let revoked tokens through
        silently, so every error is logged, :meth:`healthy` turns false, and the
        feed reconnects after a :data:`FEED_BACKOFF` delay.
        """
        REVOCATION_FEED_LAG_SECONDS.labels(self.topic).set_function(self.lag_s)
        try:
            while True:
                try:
                    if self._consumer is None:
                        await self._connect()
                    assert self._consumer is not None
                    await self._consume(self._consumer)
                except Exception as error:
                    self._failures += 1
                    delay = self.backoff.delay(self._failures) or self.backoff.cap
                    (log.error if self.last_error is None else log.warning)(
                        "revocation feed on %s failed (%s); retry %d in %.1fs",
                        self.topic,
                        error,
                        self._failures,
                        delay,
                        exc_info=self.last_error is None,
                    )
                    self.last_error = f"{type(error).__name__}: {error}"[:500]
                    await asyncio.sleep(delay)
        finally:
            with contextlib.suppress(KeyError):
                REVOCATION_FEED_LAG_SECONDS.remove(self.topic)
            await self._close()

    async def _connect(self) -> None:
        """Take every partition of the topic and seek to the beginning."""
        consumer = AIOKafkaConsumer(
            **self.kafka.client_options(),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        self._consumer = consumer  # closed by _close() even when start() is interrupted
        try:
            await consumer.start()
            # Without a group id, aiokafka assigns every partition of a subscribed
            # topic to this consumer (and follows partitions added later); nothing is
            # shared with other replicas and no offsets are committed.
            consumer.subscribe([self.topic])
            partitions = await self._assignment(consumer)
            await consumer.seek_to_beginning(*partitions)
            self._end_offsets = dict(await consumer.end_offsets(partitions))
        except BaseException:
            await self._close()
            raise

    async def _close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()

    async def _assignment(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        deadline = time.monotonic() + self._start_timeout_s
        while not consumer.assignment():
            if time.monotonic() >= deadline:
                raise RuntimeError(f"topic {self.topic} not found on {self.kafka.bootstrap}")
            await asyncio.sleep(0.05)  # polling for the group-less assignment, not a retry
        return sorted(consumer.assignment())

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        await self._check_caught_up(consumer)
        while True:
            # A short poll keeps propagation of a revocation well under a second.
            batch = await consumer.getmany(timeout_ms=self._poll_timeout_ms)
            for records in batch.values():
                for record in records:
                    self._apply(record)
            if not self.ready.is_set():
                await self._check_caught_up(consumer)
            await self._note_current(consumer)
            if self.last_error is not None:
                log.info("revocation feed on %s reads again", self.topic)
            self.last_error = None
            self._failures = 0

    def _apply(self, record: Any) -> None:
        try:
            apply_record(self.revocations, list(record.headers or ()), record.value)
        except ValueError as error:
            # Malformed records are logged and skipped, not dead-lettered: they already
            # sit on the consent service's topic, and that service owns its DLT.
            log.warning(
                "skipping malformed revocation %s[%s]@%s: %s",
                record.topic,
                record.partition,
                record.offset,
                error,
            )

    async def _note_current(self, consumer: AIOKafkaConsumer) -> None:
        """Move ``_current_at`` to the oldest of the partitions' last fetch answers
        when each answer's high watermark is reached (aiokafka updates both on every
        fetch response, empty ones too)."""
        answered = []
        for tp in consumer.assignment():
            high, at_ms = consumer.highwater(tp), consumer.last_poll_timestamp(tp)
            if high is None or at_ms is None or await consumer.position(tp) < high:
                return
            answered.append(at_ms / 1000)
        if answered:
            self._current_at = max(self._current_at, min(answered))

    async def _check_caught_up(self, consumer: AIOKafkaConsumer) -> None:
        for tp, end in self._end_offsets.items():
            if await consumer.position(tp) < end:
                return
        self.ready.set()


def _epoch(at: Instant) -> float:
    if isinstance(at, datetime):
        return (at if at.tzinfo is not None else at.replace(tzinfo=UTC)).timestamp()
    return float(at)


def _text(data: Mapping[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value:
        raise ValueError(f"missing or malformed {name}")
    return value


def _instant(data: Mapping[str, Any], name: str) -> float:
    """An RFC 3339 timestamp (as CloudEvents carry them) or epoch seconds."""
    value = data.get(name)
    if isinstance(value, str):
        try:
            return _epoch(datetime.fromisoformat(value))
        except ValueError as error:
            raise ValueError(f"malformed {name}: {value!r}") from error
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise ValueError(f"missing or malformed {name}")

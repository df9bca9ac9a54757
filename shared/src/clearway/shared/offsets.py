"""Kafka offset commits of idempotent subscribers, off the consume path (docs/design.md §4.3).

A subscriber hands the offsets of a batch to its :class:`OffsetCommitter` once the
batch's inbox transaction has committed; the committer commits them to Kafka in
its own task while the subscriber already fetches and applies the next batch.
Offsets that pile up meanwhile are coalesced: one commit carries the highest
applied offset of every partition.

The order that makes this exactly-once: an offset reaches the committer only
after the database commit of every record below it, so a committed offset is
never ahead of the effects. What the committer has not committed yet when the
process dies is redelivered, and the inbox absorbs the copies. On a rebalance
(partitions revoked) and on stop it commits what was applied before letting go.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from clearway.shared.backoff import Backoff

log = logging.getLogger(__name__)

#: Delays between failed commits (broker unreachable); the offsets wait meanwhile.
COMMIT_BACKOFF = Backoff(base=0.2, cap=5.0, jitter=0.2)


class OffsetCommitter:
    """Commits the offsets of applied records for one subscriber, coalesced and
    in the background."""

    def __init__(
        self, name: str, *, backoff: Backoff = COMMIT_BACKOFF, flush_timeout_s: float = 5.0
    ) -> None:
        self.name = name
        self.backoff = backoff
        self.flush_timeout_s = flush_timeout_s
        self._consumer: AIOKafkaConsumer | None = None
        self._pending: dict[TopicPartition, int] = {}
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failures = 0
        #: The last offset committed per partition (the next record to read).
        self.committed: dict[TopicPartition, int] = {}

    def applied(self, consumer: AIOKafkaConsumer, records: Iterable[Any]) -> None:
        """Records whose database transaction has committed: commit past them soon.

        Never call it before that commit: the offset would then run ahead of the
        effects, and a crash in between would lose them.
        """
        self._consumer = consumer
        for r in records:
            tp = TopicPartition(r.topic, r.partition)
            if r.offset + 1 > self._pending.get(tp, -1):
                self._pending[tp] = r.offset + 1
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"offsets-{self.name}")
        self._wake.set()

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        """Drop pending offsets of partitions this member no longer owns: their new
        owner commits its own, which ours must not move back."""
        for tp in partitions:
            self._pending.pop(tp, None)

    async def flush(self) -> None:
        """Commit every pending offset now (within ``flush_timeout_s``): before a
        rebalance takes partitions away and before the subscriber stops."""
        if not self._pending:
            return
        try:
            await asyncio.wait_for(self._commit_pending(), self.flush_timeout_s)
        except (TimeoutError, KafkaError) as error:
            # The records are redelivered after the restart; the inbox absorbs them.
            log.warning("%s: offsets not committed before letting go (%s)", self.name, error)

    async def close(self) -> None:
        """Flush, then end the background task."""
        await self.flush()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._commit_pending()
                self._failures = 0
            except Exception as error:  # never dies quietly: the offsets stay pending
                self._failures += 1
                delay = self.backoff.delay(self._failures) or self.backoff.cap
                log.log(
                    logging.WARNING if isinstance(error, KafkaError) else logging.ERROR,
                    "%s: offset commit failed (%s); retry in %.1fs",
                    self.name,
                    error,
                    delay,
                )
                await asyncio.sleep(delay)
                self._wake.set()

    async def _commit_pending(self) -> None:
        async with self._lock:  # one commit at a time: offsets only move forward
            consumer, pending = self._consumer, self._pending
            if consumer is None or not pending:
                return
            self._pending = {}
            owned = consumer.assignment()
            offsets = {tp: off for tp, off in pending.items() if tp in owned}
            if not offsets:
                return
            try:
                await consumer.commit(offsets)
            except (CommitFailedError, IllegalStateError) as error:
                # The group rebalanced: the partitions' new owner starts from the last
                # committed offset and the inbox absorbs what we had applied.
                log.info("%s: offsets dropped after a rebalance (%s)", self.name, error)
                return
            except BaseException:
                for tp, off in offsets.items():  # keep them, unless newer ones arrived
                    self._pending[tp] = max(off, self._pending.get(tp, -1))
                raise
            self.committed.update(offsets)


class FlushOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    """Commits what was applied before a rebalance hands partitions to another member."""

    def __init__(self, committer: OffsetCommitter) -> None:
        self.committer = committer

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.committer.flush()
        self.committer.forget(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        return None


def flushing_stop(
    stop: Callable[[], Awaitable[None]], committer: OffsetCommitter
) -> Callable[[], Awaitable[None]]:
    """``stop`` of a subscriber that first commits what was applied."""

    async def stopped() -> None:
        await committer.close()
        await stop()

    return stopped

"""A service's Kafka start, off its HTTP start (docs/design.md §12, ADR 0053).

Accepting a transfer needs no broker: the handler writes state and an outbox row,
the relay publishes later (docs/design.md §4). So a service never waits for Kafka
before it serves. What it needs from Kafka at start, its topics (unless
``CLEARWAY_CREATE_TOPICS_AT_START=false``) and the producer of its dead letters, is
made by the supervised one-off task ``kafka``, restarted with the supervisor's
backoff while the broker is unreachable (``/readyz`` names ``task:kafka`` until it
got through, from its first attempt on); the tasks that need them (consumers, relays) wait for it::

    kafka = KafkaStart(settings, topics, producer=producer)
    stack.push_async_callback(kafka.close)          # after the supervisor's tasks end
    tasks = await stack.enter_async_context(Supervisor(SERVICE, app))
    kafka.start(tasks)
    tasks.task("consumers", kafka.then(lambda: run_broker(broker, kafka=link)), ...)
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiokafka import AIOKafkaProducer

from clearway.shared.kafka import ensure_service_topics
from clearway.shared.relay import stop_producer
from clearway.shared.settings import ServiceSettings
from clearway.shared.supervisor import Supervisor

__all__ = ["KAFKA_TASK", "KafkaStart"]

#: The supervised task (and readiness check ``task:kafka``) of the Kafka start.
KAFKA_TASK = "kafka"

Job = Callable[[], Awaitable[Any]]


class KafkaStart:
    """Topics and the dead-letter producer of a service, made when the broker answers."""

    def __init__(
        self,
        settings: ServiceSettings,
        topics: Iterable[str],
        *,
        producer: AIOKafkaProducer | None = None,
    ) -> None:
        self.settings = settings
        self.topics = list(topics)
        self.producer = producer
        self._producing = False
        self._done = asyncio.Event()

    @property
    def done(self) -> bool:
        """Whether the topics exist and the producer runs."""
        return self._done.is_set()

    def start(self, tasks: Supervisor) -> None:
        """Declare the one-off task ``kafka`` on ``tasks`` (restarted until it succeeds)."""
        # Not ready while it runs: its readiness check would otherwise pass during
        # the first attempt, before any topic exists.
        tasks.once(KAFKA_TASK, self._start, health=lambda: self.done)

    def then(self, job: Job) -> Job:
        """``job`` that first waits for the Kafka start (for ``tasks.task``)."""

        async def after_kafka() -> Any:
            await self._done.wait()
            return await job()

        return after_kafka

    async def close(self) -> None:
        """Stop the producer (bounded while the broker is down); also one whose start
        failed, which aiokafka otherwise reports as unclosed."""
        if self.producer is not None:
            self._producing = False
            await stop_producer(self.producer)

    async def _start(self) -> None:
        await ensure_service_topics(self.settings, self.topics)
        if self.producer is not None and not self._producing:
            await self.producer.start()  # aiokafka retries its bootstrap on a second start
            self._producing = True
        self._done.set()

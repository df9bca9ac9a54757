"""The consumer process that ``test_consumer_sigkill.py`` SIGKILLs and restarts.

An idempotent subscriber as a service runs one (``subscribe_idempotent`` over an
``IdempotentConsumer``, docs/design.md §4.3) whose batch handler inserts one
effect row per event. It reaches the test's database through
``CLEARWAY_DATABASE_URL`` and its broker through the variables of ``kafka_env``
(as the stack's ``admin`` login, the one ``platform.kafka`` uses: on a secured
broker the test's group and topics are under no service's ACLs).

After every batch it prints one line, flushed at once so a SIGKILL loses none::

    batch records=<fetched> applied=<fresh so far> duplicates=<absorbed so far>

Run: ``python sigkill_consumer.py <schema> <topic> <group> [<moment>:<n>]``; SIGTERM
stops it gracefully (its offsets flushed). With a moment the process SIGKILLs itself
at the exact point the test wants to see survived, instead of at a random time:
``transaction:<n>`` in the n-th batch transaction, its effects inserted but not
committed; ``committed:<n>`` once the n-th batch's inbox transaction committed and
before its offsets reach the committer (a redelivery the inbox must absorb).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

import asyncpg

from clearway.shared.consumer import BatchHandler, IdempotentConsumer
from clearway.shared.db import create_pool
from clearway.shared.dlt import DeadLetters, KafkaRecord
from clearway.shared.events import Event
from clearway.shared.kafka import make_broker, subscribe_idempotent
from clearway.shared.kafka_acl import ADMIN
from clearway.shared.relay import idempotent_producer
from clearway.shared.settings import PlatformSettings, kafka_login_from_env

#: How long each batch's transaction stays open after its inserts: a few
#: milliseconds, so random kills land inside transactions as well as between them.
HOLD_S = 0.003


class Moment:
    """Where this process SIGKILLs itself (``<moment>:<n>``), if anywhere."""

    def __init__(self, spec: str | None) -> None:
        where, _, n = (spec or ":0").partition(":")
        self.where, self.n = where, int(n)
        self.seen: dict[str, int] = {}

    def reached(self, where: str) -> None:
        self.seen[where] = self.seen.get(where, 0) + 1
        if (where, self.seen[where]) == (self.where, self.n):
            os.kill(os.getpid(), signal.SIGKILL)


class ReportingConsumer(IdempotentConsumer):
    """An ``IdempotentConsumer`` that reports each batch on stdout for the test."""

    def __init__(self, *args: Any, moment: Moment, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.moment = moment

    async def handle_records(self, records: Sequence[KafkaRecord]) -> None:
        await super().handle_records(records)
        print(
            f"batch records={len(records)} applied={self.applied} duplicates={self.duplicates}",
            flush=True,
        )
        # The subscriber hands the offsets to its committer right after this returns.
        self.moment.reached("committed")


def effects_recorder(moment: Moment) -> BatchHandler:
    """The batch handler: the effect of each event is one row, in the inbox transaction."""

    async def record_effects(conn: asyncpg.Connection, events: Sequence[Event]) -> None:
        await conn.execute(
            "INSERT INTO effects (event_id, correlation_id, amount)"
            " SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])",
            [e.id for e in events],
            [e.correlation_id for e in events],
            [e.data["amount"] for e in events],
        )
        moment.reached("transaction")
        await conn.execute("SELECT pg_sleep($1)", HOLD_S)

    return record_effects


async def main(schema: str, topic: str, group: str, moment: Moment) -> None:
    platform = PlatformSettings.from_env()
    link = platform.kafka_link(kafka_login_from_env(ADMIN))
    pool = await create_pool(platform.database_url, schema=schema, max_size=4)
    producer = idempotent_producer(link)
    await producer.start()
    consumer = ReportingConsumer(
        "sigkill",
        pool,
        DeadLetters(producer, "sigkill"),
        batch_handler=effects_recorder(moment),
        moment=moment,
    )
    broker = make_broker(link)
    subscribe_idempotent(broker, consumer, topic, group_id=group)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await broker.start()
    print("started", flush=True)
    try:
        await stop.wait()
    finally:
        await broker.stop()
        await producer.stop()
        await pool.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    schema, topic, group, *spec = sys.argv[1:]
    asyncio.run(main(schema, topic, group, Moment(spec[0] if spec else None)))

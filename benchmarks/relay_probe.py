"""The outbox relay with per-row timestamps, for ``bench_backbone --breakdown``.

Runs :class:`~clearway.shared.relay.OutboxRelay` unchanged and records, per event
id: the start of its batch's claim, the claim's return, the producer send, the
broker's acknowledgement and the relay's commit. Writes them as JSON to
``--out`` when stopped (SIGTERM).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import time
from typing import Any

import asyncpg

from clearway.shared.events import headers_from_json
from clearway.shared.kafka_link import KafkaLink
from clearway.shared.relay import OutboxRelay


class ProbedRelay(OutboxRelay):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stamps: dict[str, list[float]] = {}
        self._batch: list[str] = []

    async def publish_batch(self, conn: asyncpg.Connection) -> int:
        started, self._batch = time.time(), []
        n = await super().publish_batch(conn)
        done = time.time()
        for ce_id in self._batch:
            self.stamps[ce_id][0] = started
            self.stamps[ce_id].append(done)
        return n

    async def _send(self, row: asyncpg.Record) -> asyncio.Future[Any]:
        claimed = time.time()
        ce_id = dict(headers_from_json(row["headers"]))["ce_id"].decode()
        fut = await super()._send(row)
        stamp = [0.0, claimed, time.time(), 0.0]
        self.stamps[ce_id] = stamp
        self._batch.append(ce_id)
        fut.add_done_callback(lambda _: stamp.__setitem__(3, time.time()))
        return fut


async def _main(a: argparse.Namespace) -> None:
    relay = ProbedRelay(a.database_url, a.schema, KafkaLink(a.kafka_bootstrap), batch_size=2000)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, lambda: asyncio.ensure_future(relay.stop()))
    await relay.run_forever()
    with open(a.out, "w") as f:
        json.dump(relay.stamps, f)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    for opt in ("--schema", "--database-url", "--kafka-bootstrap", "--out"):
        ap.add_argument(opt, required=True)
    asyncio.run(_main(ap.parse_args()))

"""Audit log: append rate and full-verification rate, against plain SHA-256.

    uv run python -m benchmarks.bench_audit [--records N]

Prints, for the same run:
- append: records/s through the real ingest path minus Kafka (CloudEvent decode,
  inbox rows, RFC 8785 leaf, leaf hash, insert; batches of 500 in one
  transaction each, like the consumer), goal >= 5,000/s;
- baseline: plain SHA-256 over the same leaf bytes in a Python loop;
- full verification (`verify_log`: read every record from Postgres, recompute
  its leaf hash, rebuild the tree, check every signed checkpoint) and the
  in-memory part of it (leaf + node hashing over the same bytes), as rates and
  as ratios to the baseline, goal >= 50%.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from hashlib import sha256

from benchmarks.common import fresh_database, stack
from clearway.audit.bootstrap import connect_service_pool, prepare_database
from clearway.audit.consumers import build_consumer
from clearway.audit.handlers import take_checkpoint
from clearway.audit.merkle import Frontier
from clearway.audit.settings import AuditSettings
from clearway.audit.signing import Keyring
from clearway.audit.verification import verify_log
from clearway.shared.dlt import DeadLetters
from clearway.shared.events import new_event
from clearway.shared.relay import idempotent_producer
from clearway.shared.settings import PlatformSettings

BATCH = 500
T0 = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list


def kafka_records(start: int, n: int) -> list[Record]:
    out = []
    for i in range(start, start + n):
        ev = new_event(
            type="transfer.settled" if i % 3 else "consent.authorised",
            source="/transfer",
            aggregate_id=f"tr_{i:09d}",
            aggregate_version=1,
            data={
                "actor": {
                    "subject": f"user_{i % 1000}",
                    "client_id": "app_mobile",
                    "delegation": [],
                },
                "reason": "monthly rent",
                "approver": f"user_{i % 1000}",
            },
            correlation_id=f"corr_{i // 6:09d}",
            tenant=f"tn_{i % 10}",
            time=T0 + timedelta(milliseconds=i),
        )
        out.append(Record("clearway.transfer.events.v1", 0, i, ev.key, ev.body(), ev.headers()))
    return out


async def run(n: int) -> None:
    with stack() as (db, kafka):
        url = await fresh_database(db)
        platform = PlatformSettings(database_url=url, kafka_bootstrap=kafka)
        settings = AuditSettings(platform=platform, consume=False)
        await prepare_database(settings)
        pool = await connect_service_pool(settings)
        producer = idempotent_producer(kafka)
        await producer.start()
        consumer = build_consumer(pool, DeadLetters(producer, "audit"), registry=None)
        keyring = Keyring.generate()
        try:
            append_s = 0.0
            for start in range(0, n, BATCH):
                batch = kafka_records(start, min(BATCH, n - start))
                t = time.perf_counter()
                await consumer.handle_records(batch)
                append_s += time.perf_counter() - t
                if start and start % (n // 4 // BATCH * BATCH or BATCH) == 0:
                    await take_checkpoint(pool, keyring)  # a few checkpoints along the way
            assert consumer.applied == n, consumer.applied
            t = time.perf_counter()
            cp = await take_checkpoint(pool, keyring)
            checkpoint_s = time.perf_counter() - t

            async with pool.acquire() as conn:
                rows = await conn.fetch(
                    "SELECT convert_to(content, 'UTF8') FROM records ORDER BY position"
                )
            blobs = [r[0] for r in rows]
            del rows
            t = time.perf_counter()
            for b in blobs:
                sha256(b).digest()
            baseline_s = time.perf_counter() - t

            t = time.perf_counter()
            leaves = [sha256(b"\x00" + b).digest() for b in blobs]
            f = Frontier()
            f.extend(leaves)
            memory_s = time.perf_counter() - t
            assert f.root() == cp.root_hash

            async with pool.acquire() as conn:
                t = time.perf_counter()
                report = await verify_log(conn, keyring)
                verify_s = time.perf_counter() - t
            assert report.ok and report.records_checked == n, report.as_json()
        finally:
            await producer.stop()
            await pool.close()

    size = sum(len(b) for b in blobs) / len(blobs)
    base_rate = n / baseline_s
    print(f"records: {n:,} (mean leaf {size:.0f} bytes), checkpoints: {report.checkpoints_checked}")
    print(
        f"append (ingest path, batches of {BATCH}): {n / append_s:,.0f} records/s"
        f"  [goal >= 5,000/s]"
    )
    print(f"checkpoint over the tail: {checkpoint_s * 1000:.0f} ms")
    print(f"baseline plain SHA-256 over the same bytes: {base_rate:,.0f} records/s")
    print(
        f"full verification (Postgres read + leaf + tree + checkpoints): "
        f"{n / verify_s:,.0f} records/s = {n / verify_s / base_rate:.0%} of baseline"
        f"  [goal >= 50%]"
    )
    print(
        f"verification hashing in memory (leaf + tree): {n / memory_s:,.0f} records/s"
        f" = {n / memory_s / base_rate:.0%} of baseline"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--records",
        type=int,
        default=200_000,
        help="records to append and verify (the issue's figure: 1000000)",
    )
    args = parser.parse_args()
    asyncio.run(run(args.records))


if __name__ == "__main__":
    main()

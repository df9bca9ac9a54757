"""List and redrive dead letters.

    clearway-dlt topics                       # dead-letter topics and their depth
    clearway-dlt list   <topic>.<group>.dlt   # what is there and why
    clearway-dlt redrive <topic>.<group>.dlt [--dry-run] [--offset N ...]

Redrive republishes each dead letter, with its original key and headers, to
the topic it came from; the consumer's inbox makes that safe. Progress is kept
as the offsets of the consumer group ``clearway-dlt-redrive`` on the DLT, so
running it twice redrives nothing twice, and an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from clearway.shared.dlt import REDRIVE_GROUP, REDRIVEN_FROM, DeadLetter
from clearway.shared.events import header_map
from clearway.shared.kafka_link import KafkaLink
from clearway.shared.relay import idempotent_producer
from clearway.shared.settings import PlatformSettings, kafka_login_from_env


async def read_pending(
    link: KafkaLink, topic: str, group: str | None
) -> tuple[list[DeadLetter], AIOKafkaConsumer]:
    """The dead letters of ``topic`` past ``group``'s committed offsets (all of them
    without a group), and the started consumer assigned to it: the caller commits
    through it and stops it."""
    consumer = AIOKafkaConsumer(
        **link.client_options(),
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    try:
        await consumer.start()
    except BaseException:  # broker unreachable: close what start opened, then say so
        await consumer.stop()
        raise
    parts = consumer.partitions_for_topic(topic)
    if parts is None:
        await consumer._client.force_metadata_update()
        parts = consumer.partitions_for_topic(topic) or set()
    tps = [TopicPartition(topic, p) for p in sorted(parts)]
    consumer.assign(tps)
    if group is None:
        await consumer.seek_to_beginning(*tps)
    end = await consumer.end_offsets(tps)
    out: list[DeadLetter] = []
    pending = {tp for tp in tps if await consumer.position(tp) < end[tp]}
    while pending:
        batch = await consumer.getmany(*pending, timeout_ms=1000)
        for tp, records in batch.items():
            for r in records:
                if r.offset < end[tp]:
                    out.append(
                        DeadLetter(topic, r.partition, r.offset, r.key, r.value, list(r.headers))
                    )
        pending = {tp for tp in pending if await consumer.position(tp) < end[tp]}
    return out, consumer


async def list_dead_letters(link: KafkaLink, topic: str) -> list[DeadLetter]:
    """Every record currently in ``topic`` (a DLT), oldest first per partition."""
    letters, consumer = await read_pending(link, topic, None)
    await consumer.stop()
    return letters


async def redrive(
    link: KafkaLink, topic: str, *, dry_run: bool = False, offsets: Sequence[int] = ()
) -> list[DeadLetter]:
    """Republish not-yet-redriven dead letters to their original topics; returns them."""
    letters, consumer = await read_pending(link, topic, REDRIVE_GROUP)
    chosen = [d for d in letters if not offsets or d.dlt_offset in offsets]
    try:
        if dry_run or not chosen:
            return chosen
        producer = idempotent_producer(link)
        await producer.start()
        try:
            futures = []
            for d in chosen:
                origin = d.meta("original_topic")
                if not origin:
                    raise ValueError(f"{topic}@{d.dlt_offset} has no dlt_original_topic header")
                headers = [h for h in d.original_headers if h[0] != REDRIVEN_FROM]
                headers.append(
                    (REDRIVEN_FROM, f"{topic}:{d.dlt_partition}:{d.dlt_offset}".encode())
                )
                futures.append(
                    await producer.send(origin, value=d.value, key=d.key, headers=headers)
                )
            await asyncio.gather(*futures)
        finally:
            await producer.stop()
        if not offsets:  # a partial redrive does not move the group's progress
            last: dict[TopicPartition, OffsetAndMetadata] = {}
            for d in chosen:
                last[TopicPartition(topic, d.dlt_partition)] = OffsetAndMetadata(
                    d.dlt_offset + 1, ""
                )
            await consumer.commit(last)
        return chosen
    finally:
        await consumer.stop()


def describe(d: DeadLetter) -> dict[str, object]:
    """What a dead letter is and why it is there (its error was redacted when written)."""
    h = header_map(d.original_headers)
    return {
        "dlt_offset": f"{d.dlt_partition}:{d.dlt_offset}",
        "event_id": h.get("ce_id"),
        "type": h.get("ce_type"),
        "correlation_id": h.get("ce_correlationid"),
        "from": "{}[{}]@{}".format(
            d.meta("original_topic"), d.meta("original_partition"), d.meta("original_offset")
        ),
        "attempts": d.meta("attempts"),
        "error": f"{d.meta('error_type')}: {d.meta('error_message')}",
        "failed_at": d.meta("failed_at"),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="clearway-dlt",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    platform = PlatformSettings.from_env()
    ap.add_argument("--bootstrap", default=platform.kafka_bootstrap)
    ap.add_argument(
        "--as",
        dest="user",
        metavar="NAME",
        help="log in to Kafka as NAME: CLEARWAY_<NAME>_KAFKA_USERNAME/_PASSWORD "
        "(an operator principal, or the service whose dead letters these are)",
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    ls = sub.add_parser("list", help="show dead letters with their reasons")
    ls.add_argument("topic")
    ls.add_argument("--json", action="store_true")
    rd = sub.add_parser("redrive", help="republish dead letters to their original topic")
    rd.add_argument("topic")
    rd.add_argument("--dry-run", action="store_true")
    rd.add_argument("--offset", type=int, action="append", default=[])
    a = ap.parse_args(argv)
    login = kafka_login_from_env(a.user) if a.user else None
    link = platform.replace(kafka_bootstrap=a.bootstrap).kafka_link(login)
    if a.cmd == "list":
        letters = asyncio.run(list_dead_letters(link, a.topic))
        rows = [describe(d) for d in letters]
        if a.json:
            print(json.dumps(rows, indent=2))
        else:
            for r in rows:
                print("  ".join(f"{k}={v}" for k, v in r.items()))
            print(f"{len(rows)} dead letter(s) in {a.topic}")
        return 0
    done = asyncio.run(redrive(link, a.topic, dry_run=a.dry_run, offsets=a.offset))
    verb = "would redrive" if a.dry_run else "redrove"
    for d in done:
        print(f"{verb} {describe(d)['dlt_offset']} → {d.meta('original_topic')}")
    print(f"{verb} {len(done)} dead letter(s) from {a.topic}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

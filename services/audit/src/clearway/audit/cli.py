"""Operator commands: ``python -m clearway.audit.cli verify|checkpoint|retain``.

They read the same ``CLEARWAY_*`` environment as the service. The checkpoint
signing key is rotated with the kit's ``clearway-keys audit rotate --key
audit-checkpoint --reason ...`` (docs/design.md §9). ``verify`` draws a
progress bar on stderr, prints the report, and exits 1 naming the first bad
position when the log does not verify.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO

import asyncpg

from clearway.audit import handlers, retention
from clearway.audit.blocks import BlockReader
from clearway.audit.bootstrap import checkpoint_outbox
from clearway.audit.settings import AuditSettings
from clearway.audit.signing import Checkpoint
from clearway.audit.verification import Progress, verify_log
from clearway.shared.db import ident


async def _connect(settings: AuditSettings) -> asyncpg.Connection:
    from clearway.shared.db import init_connection

    conn = await asyncpg.connect(
        settings.platform.database_url, server_settings={"search_path": ident(handlers.SCHEMA)}
    )
    await init_connection(conn)
    return conn


def _witness(path: str | None) -> Checkpoint | None:
    """A checkpoint kept elsewhere: the JSON of an ``audit.checkpoint_signed`` event's
    data, or of ``GET /v1/audit/checkpoints/latest``."""
    if path is None:
        return None
    doc = json.loads(Path(path).read_text())
    issued = doc["issued_at"]
    when = (
        datetime.fromtimestamp(issued / 1000, UTC)
        if isinstance(issued, int)
        else datetime.fromisoformat(issued)
    )
    return Checkpoint(
        int(doc["tree_size"]),
        bytes.fromhex(doc["root_hash"]),
        when,
        doc["key_id"],
        base64.b64decode(doc["signature"]),
    )


def _progress_bar(out: TextIO) -> Progress:
    """A one-line progress bar on ``out`` (redrawn in place)."""

    async def draw(done: int, total: int) -> None:
        frac = done / total if total else 1.0
        bar = "#" * int(frac * 30)
        out.write(f"\rverifying [{bar:<30}] {frac:6.1%}  {done:,}/{total:,} records")
        if done >= total:
            out.write("\n")
        out.flush()

    return draw


async def _verify(
    settings: AuditSettings, witness: str | None = None, since: int | None = None
) -> int:
    conn = await _connect(settings)
    workers = settings.verification_workers
    executor = ThreadPoolExecutor(workers, "audit-verify") if workers > 0 else None
    reader = BlockReader(executor, settings.platform.database_url, handlers.SCHEMA, workers)
    try:
        report = await verify_log(
            conn,
            settings.load_keyring(),
            witness=_witness(witness),
            since=since,
            reader=reader,
            progress=_progress_bar(sys.stderr),
        )
    finally:
        await conn.close()
        if executor is not None:
            executor.shutdown(cancel_futures=True)
    print(json.dumps(report.as_json(), indent=2))
    if report.failure is not None:
        f = report.failure
        print(f"FAILED at position {f.position}: {f.kind}: {f.detail}", file=sys.stderr)
    return 0 if report.ok else 1


async def _checkpoint(settings: AuditSettings) -> int:
    conn = await _connect(settings)
    try:
        cp = await handlers.take_checkpoint(
            conn, settings.load_keyring(), announce=checkpoint_outbox(settings)
        )
    except handlers.LogCorrupted as e:
        print(f"refused: {e}", file=sys.stderr)
        return 1
    finally:
        await conn.close()
    print(json.dumps(cp.as_json(), indent=2))
    return 0


async def _retain(settings: AuditSettings, days: int, operator: str, reason: str) -> int:
    cutoff = datetime.now(UTC) - timedelta(days=days)
    try:
        dropped = await retention.apply_retention(
            settings.platform.database_url,
            settings.load_keyring(),
            older_than=cutoff,
            operator=operator,
            reason=reason,
        )
    except retention.RetentionRefused as e:
        print(f"refused: {e}", file=sys.stderr)
        return 1
    for d in dropped:
        print(f"dropped {d.partition}: positions < {d.cut_size} (anchored by {d.anchor_size})")
    print(f"{len(dropped)} partition(s) dropped")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clearway.audit.cli")
    sub = parser.add_subparsers(dest="command", required=True)
    v = sub.add_parser("verify", help="recompute the log and check every checkpoint")
    v.add_argument("--witness", help="JSON file of a signed checkpoint kept outside the database")
    v.add_argument(
        "--since",
        type=int,
        help="hash only from this signed checkpoint's size on (verified earlier); default: all",
    )
    sub.add_parser("checkpoint", help="sign the current tree head now")
    r = sub.add_parser("retain", help="drop partitions older than --days (as the DB owner)")
    r.add_argument("--days", type=int, required=True)
    r.add_argument("--operator", required=True)
    r.add_argument("--reason", required=True)
    args = parser.parse_args(argv)
    settings = AuditSettings.from_env_or_exit()
    if args.command == "verify":
        return asyncio.run(_verify(settings, args.witness, args.since))
    if args.command == "checkpoint":
        return asyncio.run(_checkpoint(settings))
    return asyncio.run(_retain(settings, args.days, args.operator, args.reason))


if __name__ == "__main__":
    raise SystemExit(main())

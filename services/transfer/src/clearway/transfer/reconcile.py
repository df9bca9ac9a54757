"""Reconciliation: the rail's settlement report against our transfers, by reference.

``python -m clearway.transfer.reconcile [--rail-url URL]`` reads the report over
HTTP, stores the run and its breaks, emits ``transfer.reconciled`` through the
outbox and prints a readable report. Exit status 1 when anything is off.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from dataclasses import dataclass, field
from typing import Any

from clearway.shared.db import create_pool
from clearway.shared.outbox import Outbox
from clearway.shared.schemas import default_registry
from clearway.transfer.events import EVENTS_TOPIC, EventFactory
from clearway.transfer.rail_client import RailClient
from clearway.transfer.settings import TransferSettings

MATCHED, MISSING, UNEXPECTED, MISMATCH = (
    "matched",
    "missing_at_rail",
    "unexpected_at_rail",
    "mismatch",
)


@dataclass
class Report:
    run_id: str
    matched: int = 0
    breaks: list[dict[str, Any]] = field(default_factory=list)

    def count(self, kind: str) -> int:
        return sum(1 for b in self.breaks if b["kind"] == kind)

    def render(self) -> str:
        lines = [
            f"Reconciliation {self.run_id}",
            f"  matched             {self.matched}",
            f"  missing at rail     {self.count(MISSING)}",
            f"  unexpected at rail  {self.count(UNEXPECTED)}",
            f"  amount/currency     {self.count(MISMATCH)}",
        ]
        for b in self.breaks:
            lines.append(f"  ! {b['kind']:<19} {b['reference']}  {b['detail'] or ''}".rstrip())
        if not self.breaks:
            lines.append("  all clear")
        return "\n".join(lines)


def compare(
    transfers: dict[str, dict[str, Any]], charges: dict[str, dict[str, Any]], run_id: str
) -> Report:
    """Pure matching of settled transfers and settled rail charges by reference."""
    report = Report(run_id)
    for ref in sorted(set(transfers) | set(charges)):
        t, c = transfers.get(ref), charges.get(ref)
        if t is None:
            report.breaks.append(
                {
                    "reference": ref,
                    "kind": UNEXPECTED,
                    "detail": f"rail charge {c['charge_id']} has no transfer",
                }
            )
        elif c is None:
            report.breaks.append(
                {
                    "reference": ref,
                    "kind": MISSING,
                    "detail": f"transfer {t['id']} settled, no rail charge",
                }
            )
        elif (t["amount"], t["currency"]) != (c["amount"], c["currency"]):
            report.breaks.append(
                {
                    "reference": ref,
                    "kind": MISMATCH,
                    "detail": (
                        f"ours {t['amount']} {t['currency']}, rail {c['amount']} {c['currency']}"
                    ),
                }
            )
        else:
            report.matched += 1
    return report


async def reconcile(pool: Any, rail: RailClient, events_topic: str) -> Report:
    charges = {c["reference"]: c for c in await rail.settlement_report()}
    rows = await pool.fetch(
        "SELECT id, reference, amount, currency FROM transfers WHERE status = 'settled'"
    )
    transfers = {r["reference"]: dict(r) for r in rows}
    run_id = f"rec_{os.urandom(10).hex()}"
    report = compare(transfers, charges, run_id)
    factory = EventFactory(default_registry())
    outbox = Outbox(validate=factory.registry.validate)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO reconciliation_runs (id, matched, missing_at_rail, unexpected_at_rail,"
            " mismatched) VALUES ($1,$2,$3,$4,$5)",
            run_id,
            report.matched,
            report.count(MISSING),
            report.count(UNEXPECTED),
            report.count(MISMATCH),
        )
        await conn.executemany(
            "INSERT INTO reconciliation_items (run_id, reference, kind, detail)"
            " VALUES ($1,$2,$3,$4)",
            [(run_id, b["reference"], b["kind"], b["detail"]) for b in report.breaks],
        )
        event = factory.build(
            "transfer.reconciled",
            run_id,
            1,
            {
                "run_id": run_id,
                "matched": report.matched,
                "missing_at_rail": report.count(MISSING),
                "unexpected_at_rail": report.count(UNEXPECTED),
                "mismatched": report.count(MISMATCH),
                "breaks": report.breaks,
            },
        )
        await outbox.add(conn, events_topic, event)
    return report


async def _main(args: argparse.Namespace) -> int:
    settings = TransferSettings.from_env()
    pool = await create_pool(settings.service_dsn, schema=settings.service, max_size=2)
    rail = RailClient(args.rail_url or settings.rail_url)
    try:
        report = await reconcile(pool, rail, settings.platform.topic(EVENTS_TOPIC))
    finally:
        await rail.close()
        await pool.close()
    print(report.render())
    return 1 if report.breaks else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Reconcile the rail's settlement report.")
    ap.add_argument("--rail-url", help="rail base URL (default $CLEARWAY_TRANSFER_RAIL_URL)")
    return asyncio.run(_main(ap.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())

"""``python -m clearway.transfer.reconcile [--mode live|test] [--rail-url URL]``: reconcile
the rail's settlement report against our transfers, by reference.

``--mode`` picks the rail (live by default, ``test`` the sandbox rail) and the
transfers compared: those of the modes that rail carries (both when the live and the
sandbox rail are one, as locally; docs/design.md §10).

Reads the report over HTTP, stores the run and its breaks, emits
``transfer.reconciled`` through the outbox (``handlers.reconcile_settlements``)
and prints a readable report. Exit status 1 when anything is off.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from clearway.shared.crypto.service_login import open_service_login
from clearway.shared.crypto.settings import open_envelope
from clearway.shared.event_writer import EventWriter
from clearway.shared.mode import Mode
from clearway.transfer.handlers import Core, reconcile_settlements
from clearway.transfer.rail_client import RailClient
from clearway.transfer.settings import TransferSettings


async def _main(args: argparse.Namespace) -> int:
    settings = TransferSettings.from_env_or_exit()
    events = EventWriter(settings.service, topic_prefix=settings.platform.topic_prefix)
    # the service's own login (rotated in production), never the admin DSN
    login = await open_service_login(
        settings, open_envelope(settings), events, schema=settings.service
    )
    pool = await login.pool(schema=settings.service, max_size=2)
    mode = Mode(args.mode)
    url = args.rail_url or settings.rail_url_for(mode)
    modes = settings.modes_on_rail(url) or (mode,)
    rail = RailClient(url, auth=settings.service_tokens("rail:settlements"))
    core = Core(
        pool=pool,
        claims=pool,
        events=events,
        reference_secret=settings.reference_key(),
    )
    try:
        report = await reconcile_settlements(core, rail, modes)
    finally:
        await rail.close()
        await pool.close()
    print(report.render())
    return 1 if report.breaks else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Reconcile the rail's settlement report.")
    ap.add_argument(
        "--mode", choices=[m.value for m in Mode], default="live", help="whose rail (live)"
    )
    ap.add_argument(
        "--rail-url",
        help="rail base URL (default $CLEARWAY_TRANSFER_RAIL_URL, or"
        " $CLEARWAY_TRANSFER_SANDBOX_RAIL_URL with --mode test)",
    )
    return asyncio.run(_main(ap.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())

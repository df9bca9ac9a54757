"""``clearway-retention``: the retention rules of a service (docs/design.md §9).

    clearway-retention vault list
    clearway-retention vault set --class vault_cards --days 180 --reason "contract" --operator alice

``set`` overrides a rule in the service's own ``retention_rules`` table; the service
keeps the override when it seeds its defaults again, and its purge job applies it on
its next run. Works on the service's schema with the platform's admin DSN.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import timedelta

from clearway.shared import store_retention as store
from clearway.shared.db import create_pool
from clearway.shared.settings import ServiceSettings
from clearway.shared.settings_doc import registered


async def _run(args: argparse.Namespace, cls: type[ServiceSettings]) -> int:
    settings = cls.from_env_or_exit()
    pool = await create_pool(settings.platform.database_url, schema=cls.service, max_size=1)
    try:
        async with pool.acquire() as conn:
            if args.command == "set":
                if args.days <= 0 or not args.reason.strip():
                    print("--days must be positive and --reason given", file=sys.stderr)
                    return 2
                done = await store.override(
                    conn, args.record_class, timedelta(days=args.days), args.operator, args.reason
                )
                if not done:
                    print(f"{cls.service} has no rule {args.record_class!r}", file=sys.stderr)
                    return 2
            for r in await store.rules(conn):
                who = (
                    f" (overridden by {r['overridden_by']}: {r['reason']})"
                    if r["overridden"]
                    else ""
                )
                last = (
                    f", last purge {r['last_purge_at']:%Y-%m-%d %H:%M} removed"
                    f" {r['last_purge_count']}"
                    if r["last_purge_at"]
                    else ""
                )
                print(f"{r['record_class']}: {r['retention'].days} days{who}{last}")
    finally:
        await pool.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``clearway-retention``."""
    services = {c.service: c for c in registered()}
    parser = argparse.ArgumentParser(prog="clearway-retention", description=__doc__.split("\n")[0])
    parser.add_argument("service", choices=sorted(services))
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the rules, their overrides and last purges")
    st = sub.add_parser("set", help="override the retention of one record class")
    st.add_argument("--class", dest="record_class", required=True)
    st.add_argument("--days", type=float, required=True)
    st.add_argument("--reason", required=True)
    st.add_argument("--operator", required=True)
    args = parser.parse_args(argv)
    return asyncio.run(_run(args, services[args.service]))


if __name__ == "__main__":
    raise SystemExit(main())

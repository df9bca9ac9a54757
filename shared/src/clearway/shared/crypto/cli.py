"""``clearway-keys``: KEK status, rotation, re-wrap and retirement of a service (docs/design.md §9).

    clearway-keys webhooks status
    clearway-keys webhooks rotate --reason "yearly rotation" --operator alice
    clearway-keys webhooks rewrap [--batch 1000]
    clearway-keys webhooks retire --below 2 --reason "old version compromised?" --operator alice
    clearway-keys webhooks db-rotate --reason "DBA left the team" --operator alice

Reads the service's settings from the environment (``CLEARWAY_<SVC>_*``) and
works on its schema with the platform's admin DSN. Rotation and retirement are
recorded as audited ``platform.key_rotated`` events with the operator and reason;
``db-rotate`` gives the service's next database login a fresh password (the
previous login keeps working until its expiry; replicas pick the new one up within
``DB_LOGIN_REFRESH_S``), audited as ``platform.db_credential_rotated``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from datetime import timedelta

from clearway.shared.actor import Actor
from clearway.shared.crypto.db_credentials import rotate_login
from clearway.shared.crypto.rotation import retire_keks, rewrap, rotate_kek
from clearway.shared.crypto.settings import KeySettings, open_envelope
from clearway.shared.db import create_pool
from clearway.shared.event_writer import EventWriter
from clearway.shared.settings_doc import registered


def _services() -> dict[str, type[KeySettings]]:
    return {c.service: c for c in registered() if issubclass(c, KeySettings)}


def _bar(column: str, total: int) -> Callable[[int, int], None]:
    def show(scanned: int, rewrapped: int) -> None:
        width, share = 30, (scanned / total if total else 1.0)
        filled = "#" * int(width * min(share, 1.0))
        print(
            f"\r{column} [{filled:<{width}}] {scanned:,}/{total:,} scanned,"
            f" {rewrapped:,} re-wrapped",
            end="",
            file=sys.stderr,
            flush=True,
        )

    return show


async def _run(args: argparse.Namespace, cls: type[KeySettings]) -> int:
    settings = cls.from_env_or_exit()
    envelope = open_envelope(settings)
    pool = await create_pool(settings.platform.database_url, schema=cls.service, max_size=2)
    events = EventWriter(cls.service, topic_prefix=settings.platform.topic_prefix)
    actor = Actor(subject=args.operator) if getattr(args, "operator", None) else None
    try:
        if args.command == "status":
            print(
                f"{cls.service}: provider {envelope.provider.kind}, versions "
                f"{envelope.provider.versions()}, primary {envelope.primary}"
            )
        elif args.command == "rotate":
            async with pool.acquire() as conn:
                version = await rotate_kek(conn, envelope, events, reason=args.reason, actor=actor)
            print(f"{cls.service}: version {version} is primary; run rewrap, then retire")
        elif args.command == "rewrap":
            for col in cls.sealed_columns:
                async with pool.acquire() as conn:
                    total = await conn.fetchval(f'SELECT count(*) FROM "{col.table}"')
                name = f"{col.table}.{col.column}"
                report = await rewrap(
                    pool, envelope, col, batch=args.batch, progress=_bar(name, total)
                )
                print(f"\n{name}: {report.rewrapped:,} re-wrapped under v{report.target}")
        elif args.command == "db-rotate":
            if not settings.rotates_db_logins:
                print(
                    f"{cls.service}: {settings.env_name('db_logins')} is not rotated",
                    file=sys.stderr,
                )
                return 2
            async with pool.acquire() as conn:
                login = await rotate_login(
                    conn,
                    envelope,
                    events,
                    service=cls.service,
                    lifetime=timedelta(seconds=settings.db_login_lifetime_s),
                    reason=args.reason,
                    actor=actor,
                )
            print(f"{cls.service}: {login.login} has a new password until {login.valid_until}")
        elif args.command == "retire":
            async with pool.acquire() as conn:
                gone = await retire_keks(
                    conn,
                    envelope,
                    cls.sealed_columns,
                    events,
                    below=args.below,
                    reason=args.reason,
                    actor=actor,
                )
            print(f"{cls.service}: destroyed versions {gone or 'none'}")
    finally:
        await pool.close()
        envelope.provider.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``clearway-keys``."""
    services = _services()
    parser = argparse.ArgumentParser(prog="clearway-keys", description=__doc__.split("\n")[0])
    parser.add_argument("service", choices=sorted(services))
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("status", help="KEK versions and the primary one")
    rot = sub.add_parser("rotate", help="make a new KEK version primary")
    rot.add_argument("--reason", required=True)
    rot.add_argument("--operator")
    rw = sub.add_parser("rewrap", help="re-wrap every data key under the primary version")
    rw.add_argument("--batch", type=int, default=1000)
    ret = sub.add_parser("retire", help="destroy the versions below a minimum in the HSM")
    ret.add_argument("--below", type=int, required=True)
    ret.add_argument("--reason", required=True)
    ret.add_argument("--operator")
    dbr = sub.add_parser("db-rotate", help="a fresh password for the next database login")
    dbr.add_argument("--reason", required=True)
    dbr.add_argument("--operator")
    args = parser.parse_args(argv)
    return asyncio.run(_run(args, services[args.service]))


if __name__ == "__main__":
    raise SystemExit(main())

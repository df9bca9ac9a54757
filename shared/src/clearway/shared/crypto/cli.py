"""``clearway-keys``: status, rotation, re-wrap and retirement of a service's keys
(docs/design.md §9).

    clearway-keys webhooks status
    clearway-keys webhooks rotate --reason "yearly rotation" --operator alice
    clearway-keys webhooks rewrap [--batch 1000]
    clearway-keys webhooks retire --below 2 --reason "old version compromised?" --operator alice
    clearway-keys audit rotate --key audit-checkpoint --reason "yearly rotation" --operator alice
    clearway-keys audit retire --key audit-checkpoint --below 3 --reason "..." --operator alice
    clearway-keys webhooks db-rotate --reason "DBA left the team" --operator alice
    clearway-keys vault shred-tenant --tenant ten_x --reason "contract ended" --operator alice

``--key`` names the key: ``kek`` (the default) or one of the service's signing
keys (``KeyStoreSettings.signing_keys``). Reads the service's settings from the
environment (``CLEARWAY_<SVC>_*``) and works on its schema with the platform's
admin DSN. Rotation and retirement are recorded as audited ``platform.key_rotated``
events with the operator and reason; ``db-rotate`` gives the service's next
database login a fresh password (the previous login keeps working until its
expiry; replicas pick the new one up within ``DB_LOGIN_REFRESH_S``), audited as
``platform.db_credential_rotated``. ``shred-tenant`` destroys a tenant's data keys,
and its sandbox twin's (crypto-shredding, ADR 0027): every record of that tenant
sealed by the service becomes unreadable, audited as ``platform.tenant_shredded``;
running replicas drop the keys they hold within ``TENANT_KEY_REFRESH_S``. The re-wrap and retirement
cover the tenant keys (``tenant_keys.sealed``) with the service's sealed columns.
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
from clearway.shared.crypto.settings import (
    KeySettings,
    KeyStoreSettings,
    open_envelope,
    open_signing_provider,
)
from clearway.shared.crypto.signing_rotation import retire_signing_keys, rotate_signing_key
from clearway.shared.crypto.tenant_keys import TENANT_KEY_COLUMN, shred_tenant
from clearway.shared.db import create_pool
from clearway.shared.event_writer import EventWriter
from clearway.shared.settings_doc import registered


def _services() -> dict[str, type[KeyStoreSettings]]:
    return {c.service: c for c in registered() if issubclass(c, KeyStoreSettings)}


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


async def _run(args: argparse.Namespace, cls: type[KeyStoreSettings]) -> int:
    settings = cls.from_env_or_exit()
    if args.key != "kek":
        if args.key not in cls.signing_keys:
            print(f"{cls.service} has no signing key {args.key!r}", file=sys.stderr)
            return 2
        return await _run_signing(args, settings, args.key)
    if not isinstance(settings, KeySettings):
        print(f"{cls.service} has no key-encryption key; use --key", file=sys.stderr)
        return 2
    envelope = open_envelope(settings)
    pool = await create_pool(settings.platform.database_url, schema=cls.service, max_size=2)
    events = EventWriter(cls.service, topic_prefix=settings.platform.topic_prefix)
    actor = Actor(subject=args.operator) if getattr(args, "operator", None) else None
    sealed = (*type(settings).sealed_columns, TENANT_KEY_COLUMN)
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
            for col in sealed:
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
                    sealed,
                    events,
                    below=args.below,
                    reason=args.reason,
                    actor=actor,
                )
            print(f"{cls.service}: destroyed versions {gone or 'none'}")
        elif args.command == "shred-tenant":
            async with pool.acquire() as conn:
                n = await shred_tenant(
                    conn, cls.service, events, tenant=args.tenant, reason=args.reason, actor=actor
                )
            print(f"{cls.service}: tenant {args.tenant} shredded ({n} key(s) destroyed)")
    finally:
        await pool.close()
        envelope.provider.close()
    return 0


async def _run_signing(args: argparse.Namespace, settings: KeyStoreSettings, key: str) -> int:
    """The commands on signing key ``key``: no re-wrap; retiring destroys private keys."""
    service = settings.service
    provider = open_signing_provider(settings, key, settings.signing_algorithm(key))
    pool = await create_pool(settings.platform.database_url, schema=service, max_size=2)
    events = EventWriter(service, topic_prefix=settings.platform.topic_prefix)
    actor = Actor(subject=args.operator) if getattr(args, "operator", None) else None
    try:
        if args.command == "status":
            print(
                f"{service}/{key}: provider {provider.kind}, signing versions "
                f"{provider.versions()}, public keys {sorted(provider.public_keys())},"
                f" primary {provider.primary()}"
            )
        elif args.command == "rewrap":
            print(f"{service}/{key}: a signing key has nothing to re-wrap", file=sys.stderr)
            return 2
        elif args.command == "rotate":
            async with pool.acquire() as conn:
                version = await rotate_signing_key(
                    conn, provider, events, reason=args.reason, actor=actor
                )
            print(f"{service}/{key}: version {version} signs; older ones still verify")
        elif args.command == "retire":
            async with pool.acquire() as conn:
                gone = await retire_signing_keys(
                    conn, provider, events, below=args.below, reason=args.reason, actor=actor
                )
            print(f"{service}/{key}: destroyed private keys of versions {gone or 'none'}")
    finally:
        await pool.close()
        provider.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``clearway-keys``."""
    services = _services()
    parser = argparse.ArgumentParser(prog="clearway-keys", description=__doc__.split("\n")[0])
    parser.add_argument("service", choices=sorted(services))
    key = argparse.ArgumentParser(add_help=False)
    key.add_argument(
        "--key", default="kek", help="kek (default) or the name of a signing key of the service"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("status", help="key versions and the primary one", parents=[key])
    rot = sub.add_parser("rotate", help="make a new key version primary", parents=[key])
    rot.add_argument("--reason", required=True)
    rot.add_argument("--operator")
    rw = sub.add_parser(
        "rewrap", help="re-wrap every data key under the primary version", parents=[key]
    )
    rw.add_argument("--batch", type=int, default=1000)
    ret = sub.add_parser(
        "retire",
        help="destroy the versions (of a signing key: private keys) below a minimum",
        parents=[key],
    )
    ret.add_argument("--below", type=int, required=True)
    ret.add_argument("--reason", required=True)
    ret.add_argument("--operator")
    dbr = sub.add_parser("db-rotate", help="a fresh password for the next database login")
    dbr.add_argument("--reason", required=True)
    dbr.add_argument("--operator")
    dbr.set_defaults(key="kek")  # the database password is sealed with the KEK
    shr = sub.add_parser(
        "shred-tenant", help="destroy a tenant's data keys: its records become unreadable"
    )
    shr.add_argument("--tenant", required=True)
    shr.add_argument("--reason", required=True)
    shr.add_argument("--operator")
    shr.set_defaults(key="kek")
    args = parser.parse_args(argv)
    return asyncio.run(_run(args, services[args.service]))


if __name__ == "__main__":
    raise SystemExit(main())

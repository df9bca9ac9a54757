"""Postgres access for services: pools bound to a service's schema, migrations, roles.

Each service owns one schema and one login role (docs/design.md §1). Migrations run as
the admin user; the runtime role gets rights on its own schema only, so a
service that tried to read another service's tables would be refused by the
database itself, not by convention.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg

_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
KIT_MIGRATIONS = "clearway.shared.migrations"

#: What a service role may do in its own schema. Audit narrows this to
#: INSERT/SELECT so history cannot be rewritten through the service.
READ_WRITE = "SELECT, INSERT, UPDATE, DELETE"
APPEND_ONLY = "SELECT, INSERT"


def ident(name: str) -> str:
    """Check that ``name`` is a plain lower-case SQL identifier and return it quoted."""
    if not _IDENT.match(name):
        raise ValueError(f"not a safe SQL identifier: {name!r}")
    return f'"{name}"'


async def init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    await conn.set_type_codec("json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def create_pool(
    dsn: str,
    *,
    schema: str,
    min_size: int = 1,
    max_size: int = 10,
    connect: Callable[..., Awaitable[asyncpg.Connection]] | None = None,
    session_reset: bool = True,
) -> asyncpg.Pool:
    """A pool whose connections see ``schema`` first and decode json/jsonb to Python.

    ``connect`` replaces ``asyncpg.connect`` for each new connection: a rotating
    login (``RotatingLogin.connect``) logs in with whichever credential is current.

    ``session_reset=False`` skips asyncpg's reset query on every release (a round
    trip: ``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL``), for pools
    whose users keep all their state in transactions (``SET LOCAL``, transaction
    advisory locks) and never ``LISTEN``, ``SET`` a session or hold a cursor: see
    :func:`transaction_reset`.
    """
    ident(schema)
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        connect=connect,
        reset=None if session_reset else transaction_reset,
        init=init_connection,
        server_settings={"search_path": schema, "application_name": f"clearway-{schema}"},
    )
    assert pool is not None
    return pool


async def transaction_reset(conn: asyncpg.Connection) -> None:
    """A pool's ``reset`` that sends nothing: asyncpg itself rolls back a transaction
    left open before it calls this, and a connection whose users change no session
    state (:func:`create_pool` ``session_reset=False``) has nothing else to undo."""


def role_name(service: str) -> str:
    return f"clearway_{service}"


def login_roles(service: str) -> tuple[str, str]:
    """The alternating login pair of a service with rotated credentials, members of
    :func:`role_name` (docs/design.md §9)."""
    return f"{role_name(service)}_a", f"{role_name(service)}_b"


def reader_role(service: str) -> str:
    """The login that reads ``service``'s sealed rotated passwords and nothing else
    (docs/design.md §9, ADR 0044)."""
    return f"{role_name(service)}_reader"


def service_dsn(admin_dsn: str, service: str, password: str, *, login: str | None = None) -> str:
    """The DSN of ``service``'s own login role (or ``login``) on the database of ``admin_dsn``."""
    parts = urlsplit(admin_dsn)
    host = parts.hostname or "127.0.0.1"
    netloc = f"{login or role_name(service)}:{quote(password, safe='')}@{host}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@dataclass(frozen=True)
class Migration:
    version: str
    sql: str


def _kit_migrations() -> list[Migration]:
    root = resources.files(KIT_MIGRATIONS)
    return sorted(
        (
            Migration(f"kit_{p.name.removesuffix('.sql')}", p.read_text())
            for p in root.iterdir()
            if p.name.endswith(".sql")
        ),
        key=lambda m: m.version,
    )


def load_migrations(directory: Path) -> list[Migration]:
    """The ``NNNN_name.sql`` files of a service, in order."""
    return [
        Migration(p.name.removesuffix(".sql"), p.read_text())
        for p in sorted(directory.glob("*.sql"))
    ]


async def migrate(
    admin_dsn: str,
    *,
    schema: str,
    service: str,
    migrations: list[Migration],
    role_password: str | None,
    privileges: str = READ_WRITE,
    with_kit: bool = True,
) -> list[str]:
    """Create the schema and role, apply pending migrations, grant the role its rights.

    Safe to run concurrently and repeatedly: an advisory lock serialises runs and
    applied versions are recorded in ``<schema>.schema_migrations``. Returns the
    versions applied by this call.

    ``role_password=None`` is the production shape (docs/design.md §9): the service
    role holds the rights but cannot log in (``NOLOGIN``, no password, also when it
    had one before), and the two login roles of :func:`login_roles` are its members
    without a password until :mod:`clearway.shared.crypto.db_credentials` rotates one.
    """
    s, role = ident(schema), ident(role_name(service))
    conn: asyncpg.Connection = await asyncpg.connect(admin_dsn)
    applied: list[str] = []
    try:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"migrate:{schema}")
            exists = await conn.fetchval(
                "SELECT 1 FROM pg_roles WHERE rolname = $1", role_name(service)
            )
            if role_password is not None and not exists:
                await conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{_quote(role_password)}'")
            elif role_password is None:
                await rotated_roles(conn, service, exists=bool(exists))
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {s}")
            await conn.execute(f"REVOKE ALL ON SCHEMA {s} FROM PUBLIC")
            await conn.execute(f"SET LOCAL search_path TO {s}")
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
            todo = (_kit_migrations() if with_kit else []) + migrations
            for m in todo:
                if m.version in done:
                    continue
                await conn.execute(m.sql.replace("{schema}", schema))
                await conn.execute("INSERT INTO schema_migrations(version) VALUES ($1)", m.version)
                applied.append(m.version)
            await conn.execute(f"GRANT USAGE ON SCHEMA {s} TO {role}")
            await conn.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA {s} FROM {role}")
            await conn.execute(f"GRANT {privileges} ON ALL TABLES IN SCHEMA {s} TO {role}")
            await conn.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {s} TO {role}")
            # The kit's own bookkeeping tables need full rights even for append-only
            # services: inbox rows are pruned and outbox rows deleted once published.
            for table in ("outbox", "inbox"):
                if await conn.fetchval("SELECT to_regclass($1)", f"{schema}.{table}"):
                    await conn.execute(f"GRANT {READ_WRITE} ON {s}.{table} TO {role}")
            # Sealed login passwords are the rotation job's (admin) business only.
            if await conn.fetchval("SELECT to_regclass($1)", f"{schema}.db_credentials"):
                await conn.execute(f"REVOKE ALL ON {s}.db_credentials FROM {role}")
    finally:
        await conn.close()
    return applied


async def rotated_roles(conn: asyncpg.Connection, service: str, *, exists: bool) -> None:
    """Make ``clearway_<service>`` a ``NOLOGIN`` group (taking away any password it had
    when ``exists``) with the two login roles of :func:`login_roles` as members, which
    get their passwords from :mod:`clearway.shared.crypto.db_credentials`. Runs inside
    the caller's transaction (``migrate``, or a service's own extra role)."""
    # Roles are cluster-wide: the advisory lock above serialises this schema's runs
    # only, so creation tolerates a concurrent creator of the same name.
    group = ident(role_name(service))
    if exists:
        await conn.execute(f"ALTER ROLE {group} NOLOGIN PASSWORD NULL")
    else:
        await _create_role(conn, f"CREATE ROLE {group} NOLOGIN")
    for login in login_roles(service):
        if not await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", login):
            await _create_role(conn, f"CREATE ROLE {ident(login)} LOGIN INHERIT IN ROLE {group}")


async def _create_role(conn: asyncpg.Connection, sql: str) -> None:
    try:
        async with conn.transaction():  # a savepoint: a lost race leaves the migration usable
            await conn.execute(sql)
    except (asyncpg.DuplicateObjectError, asyncpg.UniqueViolationError):
        pass


def _quote(value: str) -> str:
    return value.replace("'", "''")


async def fetch_one(conn: asyncpg.Connection, sql: str, *args: Any) -> asyncpg.Record | None:
    """A thin typed wrapper used by repositories that want ``None`` for no row."""
    row: asyncpg.Record | None = await conn.fetchrow(sql, *args)
    return row

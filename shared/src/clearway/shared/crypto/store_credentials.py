"""SQL of database login rotation (docs/design.md §9): the sealed passwords and the roles.

Runs on an admin connection whose ``search_path`` is the service's schema. Role
names come from :func:`clearway.shared.db.login_roles`, never from a request, and
are quoted as identifiers; the password reaches Postgres only as a SCRAM verifier.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from clearway.shared.db import ident


async def lock(conn: asyncpg.Connection, service: str) -> None:
    """One rotation of ``service``'s logins at a time (transaction-scoped advisory lock)."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('db-login:' || $1))", service)


async def newest(conn: asyncpg.Connection, logins: tuple[str, str]) -> Any:
    """The most recently rotated of ``logins`` (a service's pair; a schema may hold the
    pairs of several roles): ``login, sealed, valid_until, generation, rotated_at``."""
    return await conn.fetchrow(
        "SELECT login, sealed, valid_until, generation, rotated_at FROM db_credentials"
        " WHERE login = ANY($1::text[]) ORDER BY generation DESC LIMIT 1",
        list(logins),
    )


async def set_password(
    conn: asyncpg.Connection, login: str, verifier: str, valid_until: datetime
) -> None:
    """``ALTER ROLE … PASSWORD … VALID UNTIL`` (utility statements take no parameters,
    so the verifier, which holds only base64 and ``$:``, and the time are literals)."""
    if "'" in verifier:
        raise ValueError("not a SCRAM verifier")
    until = valid_until.isoformat()
    await conn.execute(f"ALTER ROLE {ident(login)} PASSWORD '{verifier}' VALID UNTIL '{until}'")


async def save(
    conn: asyncpg.Connection, login: str, sealed: bytes, valid_until: datetime, generation: int
) -> None:
    await conn.execute(
        "INSERT INTO db_credentials (login, sealed, valid_until, generation)"
        " VALUES ($1, $2, $3, $4) ON CONFLICT (login) DO UPDATE SET sealed = $2,"
        " valid_until = $3, generation = $4, rotated_at = now()",
        login,
        sealed,
        valid_until,
        generation,
    )


async def ensure_reader(conn: asyncpg.Connection, schema: str, reader: str, verifier: str) -> None:
    """The reader login of ``schema``'s sealed passwords: may log in with ``verifier``
    (a SCRAM verifier, as in :func:`set_password`) and select ``db_credentials``, nothing
    else. Runs as the admin after the schema's migrations."""
    if "'" in verifier:
        raise ValueError("not a SCRAM verifier")
    role = ident(reader)
    exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", reader)
    verb = "ALTER" if exists else "CREATE"
    await conn.execute(f"{verb} ROLE {role} LOGIN NOINHERIT PASSWORD '{verifier}'")
    await conn.execute(f"GRANT USAGE ON SCHEMA {ident(schema)} TO {role}")
    await conn.execute(f"GRANT SELECT ON {ident(schema)}.db_credentials TO {role}")

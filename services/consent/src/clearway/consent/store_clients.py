"""Repository of OAuth clients' credentials state: disable, secret rotation, and the
seen client-assertion ids (RFC 7523 §3 replay check)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg


async def disable_client(
    conn: asyncpg.Connection, client_id: str, revoked_before: datetime, version: int
) -> None:
    await conn.execute(
        "UPDATE clients SET status = 'disabled', revoked_before = $2, version = $3"
        " WHERE client_id = $1",
        client_id,
        revoked_before,
        version,
    )


async def replace_secret(
    conn: asyncpg.Connection,
    client_id: str,
    *,
    secret_hash: str,
    previous_hash: str | None,
    previous_valid_until: datetime | None,
    revoked_before: datetime,
    version: int,
) -> None:
    """A new secret (the previous one valid until the given time); the client is active
    again with no failed attempts, and tokens issued before ``revoked_before`` are refused."""
    await conn.execute(
        "UPDATE clients SET secret_hash = $2, previous_secret_hash = $3,"
        " previous_secret_valid_until = $4, status = 'active', failed_attempts = 0,"
        " revoked_before = $5, version = $6 WHERE client_id = $1",
        client_id,
        secret_hash,
        previous_hash,
        previous_valid_until,
        revoked_before,
        version,
    )


async def first_use_of_assertion(conn: asyncpg.Connection, key: str, expires_at: float) -> bool:
    """Remember a client assertion's id until it expires; False when it was seen before."""
    inserted = await conn.fetchval(
        "INSERT INTO seen_assertions (jti, expires_at) VALUES ($1, to_timestamp($2))"
        " ON CONFLICT DO NOTHING RETURNING 1",
        key,
        expires_at,
    )
    return inserted == 1


async def clients_on_version(
    conn: asyncpg.Connection, version: str, tenant: str | None, after: str | None, limit: int
) -> list[Any]:
    """Clients pinned to ``version`` (of ``tenant``, or every tenant's), by id after ``after``."""
    return list(
        await conn.fetch(
            "SELECT client_id, tenant, name, status, api_version, created_at FROM clients"
            " WHERE api_version = $1 AND ($2::text IS NULL OR tenant = $2)"
            " AND ($3::text IS NULL OR client_id > $3) ORDER BY client_id LIMIT $4",
            version,
            tenant,
            after,
            limit,
        )
    )

"""Repository of the token signing keys (private halves sealed by the key-encryption key)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg


async def signing_keys(conn: asyncpg.Connection) -> list[Any]:
    """Every key, oldest activation first."""
    return list(
        await conn.fetch(
            "SELECT kid, alg, public_jwk, private_ciphertext, activates_at, retired_at,"
            " publish_until FROM signing_keys ORDER BY activates_at, created_at"
        )
    )


async def lock_rotation(conn: asyncpg.Connection) -> None:
    """One rotation at a time across replicas (transaction-scoped advisory lock)."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('consent:keys'))")


async def newest_live_activation(conn: asyncpg.Connection) -> datetime | None:
    value: datetime | None = await conn.fetchval(
        "SELECT max(activates_at) FROM signing_keys WHERE retired_at IS NULL"
    )
    return value


async def retire_live_keys(
    conn: asyncpg.Connection, retired_at: datetime, publish_until: datetime
) -> None:
    await conn.execute(
        "UPDATE signing_keys SET retired_at = $1, publish_until = $2 WHERE retired_at IS NULL",
        retired_at,
        publish_until,
    )


async def insert_key(
    conn: asyncpg.Connection,
    kid: str,
    alg: str,
    public_jwk: dict[str, Any],
    sealed: bytes,
    activates_at: datetime,
) -> None:
    await conn.execute(
        "INSERT INTO signing_keys (kid, alg, public_jwk, private_ciphertext, activates_at)"
        " VALUES ($1, $2, $3, $4, $5)",
        kid,
        alg,
        public_jwk,
        sealed,
        activates_at,
    )


async def session_key(conn: asyncpg.Connection) -> bytes | None:
    """The sealed session/CSRF key, when one was generated."""
    value = await conn.fetchval("SELECT sealed FROM session_keys WHERE id = 'session'")
    return None if value is None else bytes(value)


async def insert_session_key(conn: asyncpg.Connection, sealed: bytes) -> None:
    """Store the sealed session key unless another replica stored one first."""
    await conn.execute(
        "INSERT INTO session_keys (id, sealed) VALUES ('session', $1) ON CONFLICT DO NOTHING",
        sealed,
    )

"""Repository of authorization codes and issued access tokens (by ``jti``)."""

from __future__ import annotations

from typing import Any

import asyncpg

_REVOKED = "RETURNING jti, client_id, consent_id, expires_at, tenant"


async def lock_code(conn: asyncpg.Connection, code_hash: str) -> Any:
    """The authorization code row, locked for this transaction, or None."""
    return await conn.fetchrow(
        "SELECT * FROM authorization_codes WHERE code_hash = $1 FOR UPDATE", code_hash
    )


async def mark_code_redeemed(conn: asyncpg.Connection, code_hash: str) -> None:
    await conn.execute(
        "UPDATE authorization_codes SET redeemed_at = now() WHERE code_hash = $1", code_hash
    )


async def revoke_tokens_of_code(conn: asyncpg.Connection, code_hash: str) -> list[Any]:
    """Revoke every live token issued from a code; the revoked rows."""
    return list(
        await conn.fetch(
            "UPDATE issued_tokens SET revoked_at = now()"
            f" WHERE code_hash = $1 AND revoked_at IS NULL {_REVOKED}",
            code_hash,
        )
    )


async def revoke_token(conn: asyncpg.Connection, jti: str) -> Any:
    """Revoke one live token; its row, or None when unknown or already revoked."""
    return await conn.fetchrow(
        f"UPDATE issued_tokens SET revoked_at = now() WHERE jti = $1 AND revoked_at IS NULL"
        f" {_REVOKED}",
        jti,
    )


async def issued_token(conn: asyncpg.Connection, jti: str) -> Any:
    """``revoked_at`` of an issued token, or None when we never issued it."""
    return await conn.fetchrow("SELECT revoked_at FROM issued_tokens WHERE jti = $1", jti)

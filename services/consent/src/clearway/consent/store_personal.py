"""SQL of sealed personal data (docs/design.md §9): the blind-index key, and the rows
written in clear before the data was sealed (``legacy_*`` columns)."""

from __future__ import annotations

from typing import Any

import asyncpg


async def index_key(conn: asyncpg.Connection) -> bytes | None:
    """The sealed blind-index key, when one was generated."""
    value = await conn.fetchval("SELECT sealed FROM index_keys WHERE id = 'blind-index'")
    return None if value is None else bytes(value)


async def insert_index_key(conn: asyncpg.Connection, sealed: bytes) -> None:
    """Store the sealed blind-index key unless another replica stored one first."""
    await conn.execute(
        "INSERT INTO index_keys (id, sealed) VALUES ('blind-index', $1) ON CONFLICT DO NOTHING",
        sealed,
    )


async def lock_legacy(conn: asyncpg.Connection) -> None:
    """One replica seals legacy rows at a time (transaction-scoped advisory lock), so a
    replica that finds none left knows every other replica's batch has committed."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('consent:seal-legacy'))")


async def legacy_consents(conn: asyncpg.Connection, limit: int) -> list[Any]:
    """Consents still holding clear personal values, with those values."""
    return list(
        await conn.fetch(
            "SELECT id, tenant, legacy_subject AS subject, legacy_purpose AS purpose,"
            " legacy_authorization_details AS authorization_details,"
            " legacy_history AS history, legacy_evidence AS evidence"
            " FROM consents WHERE legacy_history IS NOT NULL ORDER BY id LIMIT $1",
            limit,
        )
    )


async def seal_legacy_consent(
    conn: asyncpg.Connection, consent_id: str, sealed: dict[str, bytes | None]
) -> None:
    """Write a consent's sealed values and clear its legacy ones, in one statement."""
    await conn.execute(
        "UPDATE consents SET subject = $2, subject_index = $3, purpose = $4,"
        " authorization_details = $5, history = $6, evidence = $7, legacy_subject = NULL,"
        " legacy_purpose = NULL, legacy_authorization_details = NULL, legacy_history = NULL,"
        " legacy_evidence = NULL WHERE id = $1",
        consent_id,
        sealed["subject"],
        sealed["subject_index"],
        sealed["purpose"],
        sealed["authorization_details"],
        sealed["history"],
        sealed["evidence"],
    )


async def legacy_users(conn: asyncpg.Connection, limit: int) -> list[Any]:
    """Users still holding a clear username or display name."""
    return list(
        await conn.fetch(
            "SELECT subject, tenant, legacy_username AS username,"
            " legacy_display_name AS display_name FROM users"
            " WHERE legacy_username IS NOT NULL ORDER BY subject LIMIT $1",
            limit,
        )
    )


async def seal_legacy_user(
    conn: asyncpg.Connection, subject: str, username: bytes, index: bytes, display_name: bytes
) -> None:
    await conn.execute(
        "UPDATE users SET username = $2, username_index = $3, display_name = $4,"
        " legacy_username = NULL, legacy_display_name = NULL WHERE subject = $1",
        subject,
        username,
        index,
        display_name,
    )

"""SQL of sealed personal data (docs/design.md §9): the blind-index key, the rows
written in clear before the data was sealed (``legacy_*`` columns), and the rows sealed
under the KEK alone before they were bound to their tenant's key (ADR 0027)."""

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
    """Write a consent's sealed values and clear its legacy ones, in one statement (also
    the re-sealing of a consent under its tenant key)."""
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


# A value bound to its tenant's key is an envelope record of format 3, whose header
# starts with b"CWE\x03" (clearway.shared.crypto.envelope.MAGIC_TENANT). The purpose and
# authorization details of a consent are sealed once, with every other value of the row,
# so the purpose's format tells the row's (a user's: its display name's). Migration 0009
# indexes exactly these predicates, so finding none left costs nothing at start.
_KEK_ONLY_CONSENT = "purpose IS NOT NULL AND substring(purpose FROM 1 FOR 4) <> '\\x43574503'"
_KEK_ONLY_USER = (
    "display_name IS NOT NULL AND substring(display_name FROM 1 FOR 4) <> '\\x43574503'"
)


async def kek_sealed_consents(conn: asyncpg.Connection, limit: int) -> list[Any]:
    """Consents whose values are sealed under the KEK alone (before tenant keys)."""
    return list(
        await conn.fetch(
            "SELECT id, tenant, subject, purpose, authorization_details, history, evidence"
            f" FROM consents WHERE {_KEK_ONLY_CONSENT} ORDER BY id LIMIT $1",
            limit,
        )
    )


async def kek_sealed_users(conn: asyncpg.Connection, limit: int) -> list[Any]:
    """Users whose username and display name are sealed under the KEK alone."""
    return list(
        await conn.fetch(
            "SELECT subject, tenant, username, display_name"
            f" FROM users WHERE {_KEK_ONLY_USER} ORDER BY subject LIMIT $1",
            limit,
        )
    )


async def delete_consent(conn: asyncpg.Connection, consent_id: str) -> None:
    """Delete a consent of a crypto-shredded tenant with its authorization codes."""
    await conn.execute("DELETE FROM authorization_codes WHERE consent_id = $1", consent_id)
    await conn.execute("DELETE FROM consents WHERE id = $1", consent_id)


async def delete_user(conn: asyncpg.Connection, subject: str) -> None:
    """Delete a user of a crypto-shredded tenant."""
    await conn.execute("DELETE FROM users WHERE subject = $1", subject)

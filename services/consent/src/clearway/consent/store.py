"""asyncpg repositories for the consent schema."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

import asyncpg

from clearway.consent.domain import Change, Consent, Status

CLIENT_COLUMNS = (
    "client_id, tenant, name, scopes, auth_method, secret_hash, previous_secret_hash,"
    " previous_secret_valid_until, jwks, redirect_uris, status, failed_attempts,"
    " revoked_before, version"
)


async def get_client(conn: asyncpg.Connection, client_id: str, *, lock: bool = False) -> Any:
    sql = f"SELECT {CLIENT_COLUMNS} FROM clients WHERE client_id = $1"
    return await conn.fetchrow(sql + (" FOR UPDATE" if lock else ""), client_id)


async def insert_client(conn: asyncpg.Connection, **c: Any) -> None:
    await conn.execute(
        "INSERT INTO clients (client_id, tenant, name, scopes, auth_method, secret_hash, jwks,"
        " redirect_uris) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        c["client_id"],
        c["tenant"],
        c["name"],
        c["scopes"],
        c["auth_method"],
        c.get("secret_hash"),
        c.get("jwks"),
        c.get("redirect_uris", []),
    )


def _history(rows: list[dict[str, Any]]) -> list[Change]:
    return [
        Change(Status(h["status"]), datetime.fromisoformat(h["at"]), h["actor"], h.get("reason"))
        for h in rows
    ]


def _consent(row: Any) -> Consent:
    return Consent(
        id=row["id"],
        tenant=row["tenant"],
        client_id=row["client_id"],
        subject=row["subject"],
        purpose=row["purpose"],
        authorization_details=row["authorization_details"],
        scopes=list(row["scopes"]),
        terms_version=row["terms_version"],
        reference=row["reference"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        status=Status(row["status"]),
        version=row["version"],
        history=_history(row["history"]),
        evidence=row["evidence"],
    )


async def get_consent(
    conn: asyncpg.Connection, consent_id: str, *, lock: bool = False
) -> Consent | None:
    row = await conn.fetchrow(
        "SELECT * FROM consents WHERE id = $1" + (" FOR UPDATE" if lock else ""), consent_id
    )
    return _consent(row) if row else None


async def list_consents(
    conn: asyncpg.Connection,
    tenant: str,
    *,
    subject: str | None = None,
    status: Status | None = None,
    before: tuple[datetime, str] | None = None,
    limit: int = 50,
) -> list[Consent]:
    """A tenant's consents, newest first, before a ``(created_at, id)`` keyset position."""
    at, last_id = before if before is not None else (None, None)
    rows = await conn.fetch(
        "SELECT * FROM consents WHERE tenant = $1 AND ($2::text IS NULL OR subject = $2)"
        " AND ($3::text IS NULL OR status = $3)"
        " AND ($4::timestamptz IS NULL OR (created_at, id) < ($4, $5))"
        " ORDER BY created_at DESC, id DESC LIMIT $6",
        tenant,
        subject,
        None if status is None else str(status),
        at,
        last_id,
        limit,
    )
    return [_consent(r) for r in rows]


async def due_for_expiry(conn: asyncpg.Connection, now: datetime, limit: int = 100) -> list[str]:
    rows = await conn.fetch(
        "SELECT id FROM consents WHERE status IN ('AwaitingAuthorisation', 'Authorised')"
        " AND expires_at <= $1 ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED",
        now,
        limit,
    )
    return [r["id"] for r in rows]


def _history_json(consent: Consent) -> list[dict[str, Any]]:
    return [{**asdict(h), "status": str(h.status), "at": h.at.isoformat()} for h in consent.history]


async def save_consent(conn: asyncpg.Connection, consent: Consent) -> None:
    await conn.execute(
        "INSERT INTO consents (id, tenant, client_id, subject, purpose, authorization_details,"
        " scopes, terms_version, reference, status, version, history, evidence, created_at,"
        " expires_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15)"
        " ON CONFLICT (id) DO UPDATE SET subject = EXCLUDED.subject, status = EXCLUDED.status,"
        " version = EXCLUDED.version, history = EXCLUDED.history, evidence = EXCLUDED.evidence",
        consent.id,
        consent.tenant,
        consent.client_id,
        consent.subject,
        consent.purpose,
        consent.authorization_details,
        consent.scopes,
        consent.terms_version,
        consent.reference,
        str(consent.status),
        consent.version,
        _history_json(consent),
        consent.evidence,
        consent.created_at,
        consent.expires_at,
    )


async def record_token(conn: asyncpg.Connection, claims: dict[str, Any], code_hash: str | None):
    await conn.execute(
        "INSERT INTO issued_tokens (jti, client_id, tenant, subject, consent_id, code_hash,"
        " issued_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, to_timestamp($7),"
        " to_timestamp($8))",
        claims["jti"],
        claims["client_id"],
        claims["tenant"],
        claims["sub"],
        claims.get("consent_id"),
        code_hash,
        claims["iat"],
        claims["exp"],
    )


_PUSHED = "FROM pushed_requests WHERE handle_hash = $1 AND client_id = $2 AND expires_at > now()"


async def insert_pushed_request(
    conn: asyncpg.Connection,
    handle_hash: str,
    client_id: str,
    params: dict[str, Any],
    expires_at: datetime,
) -> None:
    await conn.execute(
        "INSERT INTO pushed_requests (handle_hash, client_id, params, expires_at)"
        " VALUES ($1, $2, $3, $4)",
        handle_hash,
        client_id,
        params,
        expires_at,
    )


async def pushed_request(
    conn: asyncpg.Connection, handle_hash: str, client_id: str, *, take: bool
) -> dict[str, Any] | None:
    """The parameters of a live pushed request; ``take`` deletes it (single use)."""
    if take:
        row = await conn.fetchrow(f"DELETE {_PUSHED} RETURNING params", handle_hash, client_id)
    else:
        row = await conn.fetchrow(f"SELECT params {_PUSHED}", handle_hash, client_id)
    return dict(row["params"]) if row else None


async def insert_authorization_code(
    conn: asyncpg.Connection,
    code_hash: str,
    par: dict[str, Any],
    tenant: str,
    subject: str,
    consent_id: str,
    expires_at: datetime,
) -> None:
    await conn.execute(
        "INSERT INTO authorization_codes (code_hash, client_id, tenant, subject, consent_id,"
        " redirect_uri, code_challenge, scopes, resource, expires_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        code_hash,
        par["client_id"],
        tenant,
        subject,
        consent_id,
        par["redirect_uri"],
        par["code_challenge"],
        par["scopes"],
        par.get("resource", []),
        expires_at,
    )


async def get_user(conn: asyncpg.Connection, username: str) -> Any:
    """A development-identity user (``subject``, ``tenant``, ``password_hash``) or None."""
    return await conn.fetchrow(
        "SELECT subject, tenant, password_hash FROM users WHERE username = $1", username
    )


async def insert_user(
    conn: asyncpg.Connection,
    subject: str,
    tenant: str,
    username: str,
    display_name: str,
    password_hash: str,
) -> None:
    """A development-identity user; an existing subject is left as it is."""
    await conn.execute(
        "INSERT INTO users (subject, tenant, username, display_name, password_hash)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (subject) DO NOTHING",
        subject,
        tenant,
        username,
        display_name,
        password_hash,
    )

"""asyncpg repositories for the consent schema."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

import asyncpg

from clearway.consent.domain import FINAL, Change, Consent, Status
from clearway.consent.personal import PersonalData

CLIENT_COLUMNS = (
    "client_id, tenant, name, scopes, auth_method, secret_hash, previous_secret_hash,"
    " previous_secret_valid_until, jwks, redirect_uris, status, failed_attempts,"
    " revoked_before, version, api_version"
)


async def get_client(conn: asyncpg.Connection, client_id: str, *, lock: bool = False) -> Any:
    sql = f"SELECT {CLIENT_COLUMNS} FROM clients WHERE client_id = $1"
    return await conn.fetchrow(sql + (" FOR UPDATE" if lock else ""), client_id)


async def insert_client(conn: asyncpg.Connection, **c: Any) -> None:
    await conn.execute(
        "INSERT INTO clients (client_id, tenant, name, scopes, auth_method, secret_hash, jwks,"
        " redirect_uris, api_version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        c["client_id"],
        c["tenant"],
        c["name"],
        c["scopes"],
        c["auth_method"],
        c.get("secret_hash"),
        c.get("jwks"),
        c.get("redirect_uris", []),
        c["api_version"],
    )


def _history(rows: list[dict[str, Any]]) -> list[Change]:
    return [
        Change(Status(h["status"]), datetime.fromisoformat(h["at"]), h["actor"], h.get("reason"))
        for h in rows
    ]


# Personal values of a consent are sealed per column (docs/design.md §9): the subject
# (with its blind index), the purpose, the authorization details (creditor names and
# IBANs), the status history (actors and reasons) and the evidence of the approval.
_CONSENT_COLUMNS = (
    "id, tenant, client_id, subject, purpose, authorization_details, scopes, terms_version,"
    " reference, status, version, history, evidence, created_at, expires_at"
)
_T = "consents"


def opened_values(pii: PersonalData, row: Any) -> dict[str, Any]:
    """The clear ``subject``, ``purpose``, ``authorization_details``, ``history`` (JSON)
    and ``evidence`` of a consent row (the inverse of :func:`sealed_values`)."""
    cid, tenant = row["id"], row["tenant"]

    def opened(column: str) -> Any:
        sealed = row[column]
        return None if sealed is None else pii.open_json(_T, column, cid, tenant, sealed)

    subject = row["subject"]
    return {
        "subject": None if subject is None else pii.open(_T, "subject", cid, tenant, subject),
        "purpose": pii.open(_T, "purpose", cid, tenant, row["purpose"]),
        "authorization_details": opened("authorization_details"),
        "history": opened("history"),
        "evidence": opened("evidence"),
    }


def _consent(row: Any, pii: PersonalData) -> Consent:
    clear = opened_values(pii, row)
    return Consent(
        id=row["id"],
        tenant=row["tenant"],
        client_id=row["client_id"],
        subject=clear["subject"],
        purpose=clear["purpose"],
        authorization_details=clear["authorization_details"],
        scopes=list(row["scopes"]),
        terms_version=row["terms_version"],
        reference=row["reference"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        status=Status(row["status"]),
        version=row["version"],
        history=_history(clear["history"]),
        evidence=clear["evidence"],
    )


def sealed_values(
    pii: PersonalData, cid: str, tenant: str, values: dict[str, Any]
) -> dict[str, bytes | None]:
    """The sealed columns of one consent from its clear ``subject``, ``purpose``,
    ``authorization_details``, ``history`` (JSON) and ``evidence`` (the subject also
    as its blind index)."""
    subject, evidence = values["subject"], values["evidence"]
    return {
        "subject": None if subject is None else pii.seal(_T, "subject", cid, tenant, subject),
        "subject_index": None if subject is None else pii.index(_T, "subject", tenant, subject),
        "purpose": pii.seal(_T, "purpose", cid, tenant, values["purpose"]),
        "authorization_details": pii.seal_json(
            _T, "authorization_details", cid, tenant, values["authorization_details"]
        ),
        "history": pii.seal_json(_T, "history", cid, tenant, values["history"]),
        "evidence": (
            None if evidence is None else pii.seal_json(_T, "evidence", cid, tenant, evidence)
        ),
    }


async def get_consent(
    conn: asyncpg.Connection, consent_id: str, pii: PersonalData, *, lock: bool = False
) -> Consent | None:
    """The consent ``consent_id``, or None when there is none or its tenant was
    crypto-shredded (its personal values are unreadable: the consent is gone with them,
    docs/design.md §9)."""
    row = await conn.fetchrow(
        f"SELECT {_CONSENT_COLUMNS} FROM consents WHERE id = $1" + (" FOR UPDATE" if lock else ""),
        consent_id,
    )
    if row is None:
        return None
    await pii.ensure(row["tenant"])
    return None if pii.shredded(row["tenant"]) else _consent(row, pii)


async def list_consents(
    conn: asyncpg.Connection,
    tenant: str,
    pii: PersonalData,
    *,
    subject: str | None = None,
    status: Status | None = None,
    before: tuple[datetime, str] | None = None,
    limit: int = 50,
) -> list[Consent]:
    """A tenant's consents, newest first, before a ``(created_at, id)`` keyset position;
    ``subject`` is matched through its blind index; none of a crypto-shredded tenant."""
    await pii.ensure(tenant)
    if pii.shredded(tenant):
        return []
    at, last_id = before if before is not None else (None, None)
    index = None if subject is None else pii.index(_T, "subject", tenant, subject)
    rows = await conn.fetch(
        f"SELECT {_CONSENT_COLUMNS} FROM consents WHERE tenant = $1"
        " AND ($2::bytea IS NULL OR subject_index = $2)"
        " AND ($3::text IS NULL OR status = $3)"
        " AND ($4::timestamptz IS NULL OR (created_at, id) < ($4, $5))"
        " ORDER BY created_at DESC, id DESC LIMIT $6",
        tenant,
        index,
        None if status is None else str(status),
        at,
        last_id,
        limit,
    )
    return [_consent(r, pii) for r in rows]


async def due_for_expiry(conn: asyncpg.Connection, now: datetime, limit: int = 100) -> list[str]:
    """Consents past their expiry still awaiting or authorised; a crypto-shredded
    tenant's are left (nothing of them can be sealed again), so they never block others."""
    rows = await conn.fetch(
        "SELECT id FROM consents WHERE status IN ('AwaitingAuthorisation', 'Authorised')"
        " AND expires_at <= $1 AND tenant NOT IN (SELECT tenant FROM tenant_keys"
        " WHERE sealed IS NULL) ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED",
        now,
        limit,
    )
    return [r["id"] for r in rows]


def _history_json(consent: Consent) -> list[dict[str, Any]]:
    return [{**asdict(h), "status": str(h.status), "at": h.at.isoformat()} for h in consent.history]


async def insert_consent(conn: asyncpg.Connection, consent: Consent, pii: PersonalData) -> None:
    values = {
        "subject": consent.subject,
        "purpose": consent.purpose,
        "authorization_details": consent.authorization_details,
        "history": _history_json(consent),
        "evidence": consent.evidence,
    }
    sealed = sealed_values(pii, consent.id, consent.tenant, values)
    await conn.execute(
        "INSERT INTO consents (id, tenant, client_id, subject, subject_index, purpose,"
        " authorization_details, scopes, terms_version, reference, status, version, history,"
        " evidence, created_at, expires_at)"
        " VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16)",
        consent.id,
        consent.tenant,
        consent.client_id,
        sealed["subject"],
        sealed["subject_index"],
        sealed["purpose"],
        sealed["authorization_details"],
        consent.scopes,
        consent.terms_version,
        consent.reference,
        str(consent.status),
        consent.version,
        sealed["history"],
        sealed["evidence"],
        consent.created_at,
        consent.expires_at,
    )


async def update_consent(conn: asyncpg.Connection, consent: Consent, pii: PersonalData) -> None:
    """Save what a transition changes (the purpose and authorization details never do,
    so they are not sealed again)."""
    cid, tenant, subject = consent.id, consent.tenant, consent.subject
    evidence = consent.evidence
    await conn.execute(
        "UPDATE consents SET subject = $2, subject_index = $3, status = $4, version = $5,"
        " history = $6, evidence = $7, ended_at = $8 WHERE id = $1",
        cid,
        None if subject is None else pii.seal(_T, "subject", cid, tenant, subject),
        None if subject is None else pii.index(_T, "subject", tenant, subject),
        str(consent.status),
        consent.version,
        pii.seal_json(_T, "history", cid, tenant, _history_json(consent)),
        None if evidence is None else pii.seal_json(_T, "evidence", cid, tenant, evidence),
        # when it ended, for its retention (docs/design.md §9); a final status is final
        consent.history[-1].at if consent.status in FINAL else None,
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
    consent_id: str | None,
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


async def get_user(conn: asyncpg.Connection, username: str, pii: PersonalData) -> Any:
    """A development-identity user (``subject``, ``tenant``, ``password_hash``) or None,
    found by the blind index of the username."""
    return await conn.fetchrow(
        "SELECT subject, tenant, password_hash FROM users WHERE username_index = $1",
        pii.index("users", "username", "", username),
    )


async def insert_user(
    conn: asyncpg.Connection,
    pii: PersonalData,
    subject: str,
    tenant: str,
    username: str,
    display_name: str,
    password_hash: str,
) -> None:
    """A development-identity user, username and display name sealed; an existing
    subject is left as it is. Usernames are unique across tenants (sign-in names no
    tenant), so their blind index is not per tenant."""
    await conn.execute(
        "INSERT INTO users (subject, tenant, username, username_index, display_name,"
        " password_hash) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (subject) DO NOTHING",
        subject,
        tenant,
        pii.seal("users", "username", subject, tenant, username),
        pii.index("users", "username", "", username),
        pii.seal("users", "display_name", subject, tenant, display_name),
        password_hash,
    )


# ------------------------------------------------------------------ retention
# Only consents in a final status are ever touched: an active one (awaiting or
# authorised) has no ``ended_at`` and is never selected, whatever its rule says.
_ENDED_BEFORE = "ended_at < $1 AND status = ANY($3::text[])"
_FINAL = sorted(str(s) for s in FINAL)


async def purge_consents(conn: asyncpg.Connection, cutoff: datetime, limit: int) -> int:
    """Record class ``consents`` (docs/design.md §9): at most ``limit`` consents that
    ended before ``cutoff``, deleted with every sealed value they hold (evidence
    included) and their spent authorization codes. Their events stay in the audit trail."""
    ids = [
        r["id"]
        for r in await conn.fetch(
            f"SELECT id FROM consents WHERE {_ENDED_BEFORE} ORDER BY ended_at, id LIMIT $2"
            " FOR UPDATE SKIP LOCKED",
            cutoff,
            limit,
            _FINAL,
        )
    ]
    if not ids:
        return 0
    await conn.execute("DELETE FROM authorization_codes WHERE consent_id = ANY($1::text[])", ids)
    result = await conn.execute("DELETE FROM consents WHERE id = ANY($1::text[])", ids)
    return int(result.split()[-1])


async def purge_evidence(conn: asyncpg.Connection, cutoff: datetime, limit: int) -> int:
    """Record class ``consent_evidence``: the sealed approval evidence (what the user was
    shown, their user agent) of at most ``limit`` consents that ended before ``cutoff``;
    the consent itself stays until its own rule, and the audit trail keeps the
    evidence's SHA-256 (``evidence_hash`` of ``consent.authorised``)."""
    result = await conn.execute(
        "UPDATE consents SET evidence = NULL WHERE id IN (SELECT id FROM consents"
        f" WHERE evidence IS NOT NULL AND {_ENDED_BEFORE} ORDER BY ended_at, id LIMIT $2"
        " FOR UPDATE SKIP LOCKED)",
        cutoff,
        limit,
        _FINAL,
    )
    return int(result.split()[-1])

"""asyncpg repositories for who may debit what: the account registry, the projection of
payment consents and the consents' uses (docs/design.md §5, §7)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg

from clearway.transfer.domain import Account, ConsentState, ConsentUse, Owner

Executor = asyncpg.Connection | asyncpg.Pool


async def register_accounts(conn: Executor, accounts: Sequence[Account]) -> None:
    """Add accounts to the registry; an account that exists takes the owner given."""
    await conn.executemany(
        "INSERT INTO accounts (tenant, id, owner, user_id, iban) VALUES ($1,$2,$3,$4,$5)"
        " ON CONFLICT (tenant, id) DO UPDATE SET owner = EXCLUDED.owner,"
        " user_id = EXCLUDED.user_id, iban = EXCLUDED.iban",
        [(a.tenant, a.id, a.owner.value, a.user_id, a.iban) for a in accounts],
    )


async def accounts_of(conn: Executor, tenant: str, ids: Sequence[str]) -> dict[str, Account]:
    """The tenant's registered accounts among ``ids``, by id."""
    rows = await conn.fetch(
        "SELECT tenant, id, owner, user_id, iban FROM accounts WHERE tenant=$1 AND id = ANY($2)",
        tenant,
        list(ids),
    )
    return {
        r["id"]: Account(r["tenant"], r["id"], Owner(r["owner"]), r["user_id"], r["iban"])
        for r in rows
    }


async def consent(conn: Executor, consent_id: str) -> ConsentState | None:
    """The projection's view of a consent, or None when no event about it arrived yet."""
    row = await conn.fetchrow(
        "SELECT id, tenant, subject, status, expires_at FROM consents WHERE id=$1",
        consent_id,
    )
    if row is None:
        return None
    # no authorization details: they come from the consent-bound token (ADR 0039)
    return ConsentState(
        row["id"], row["tenant"], row["subject"], row["status"], (), row["expires_at"]
    )


async def apply_consent(
    conn: asyncpg.Connection,
    consent_id: str,
    tenant: str,
    stage: int,
    status: str,
    subject: str | None,
    expires_at: datetime | None,
) -> None:
    """Move the projection to ``stage`` unless it is already there or beyond; what an
    event does not carry (expiry, subject) is kept from earlier ones, and is filled in
    even by an event that arrives late."""
    await conn.execute(
        "INSERT INTO consents (id, tenant, subject, status, stage, expires_at)"
        " VALUES ($1,$2,$3,$4,$5,$6)"
        " ON CONFLICT (id) DO UPDATE SET"
        " status = CASE WHEN EXCLUDED.stage > consents.stage"
        "   THEN EXCLUDED.status ELSE consents.status END,"
        " subject = CASE WHEN EXCLUDED.stage > consents.stage"
        "   THEN coalesce(EXCLUDED.subject, consents.subject)"
        "   ELSE coalesce(consents.subject, EXCLUDED.subject) END,"
        " stage = greatest(consents.stage, EXCLUDED.stage),"
        " expires_at = coalesce(consents.expires_at, EXCLUDED.expires_at),"
        " updated_at = now()",
        consent_id,
        tenant,
        subject,
        status,
        stage,
        expires_at,
    )


async def use_consent(
    conn: asyncpg.Connection, use: ConsentUse, tenant: str, transfer_id: str
) -> bool:
    """Record that ``transfer_id`` uses the consent, in the transfer's transaction.

    A single-use consent gets one row: a second use finds it (after the first
    transaction commits, concurrent ones wait on the primary key) and gets False.
    A recurring consent's row counts its uses.
    """
    used = await conn.fetchval(
        "INSERT INTO consent_uses (consent_id, tenant, single_use, first_transfer_id)"
        " VALUES ($1,$2,$3,$4)"
        " ON CONFLICT (consent_id) DO UPDATE SET uses = consent_uses.uses + 1,"
        " last_used_at = now() WHERE NOT consent_uses.single_use AND NOT EXCLUDED.single_use"
        " RETURNING true",
        use.consent_id,
        tenant,
        use.single_use,
        transfer_id,
    )
    return bool(used)

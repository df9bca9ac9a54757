"""Charges in the ``rail`` schema."""

from __future__ import annotations

from typing import Any

import asyncpg

from clearway.rail.domain import Charge, ChargeStatus

_COLUMNS = (
    "reference, charge_id, amount, currency, source, destination, status, created_at,"
    " card_brand, card_last4"
)


def charge_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "reference": row["reference"],
        "charge_id": row["charge_id"],
        "amount": row["amount"],
        "currency": row["currency"],
        "source": row["source"],
        "destination": row["destination"],
        "status": row["status"],
        "created_at": row["created_at"].isoformat(),
        "card": {"brand": row["card_brand"], "last4": row["card_last4"]}
        if row["card_last4"]
        else None,
    }


async def ping(pool: asyncpg.Pool) -> bool:
    """Whether the database answers (the readiness check)."""
    return bool(await pool.fetchval("SELECT true"))


async def create_or_get(pool: asyncpg.Pool, charge: Charge) -> tuple[dict[str, Any], bool]:
    """Insert ``charge`` unless its reference exists; returns (charge, created)."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "INSERT INTO charges (reference, charge_id, amount, currency, source, destination,"
            " status, card_brand, card_last4) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)"
            " ON CONFLICT (reference) DO NOTHING"
            f" RETURNING {_COLUMNS}",
            charge.reference,
            charge.charge_id,
            charge.amount,
            charge.currency,
            charge.source,
            charge.destination,
            str(charge.status),
            charge.card.brand if charge.card else None,
            charge.card.last4 if charge.card else None,
        )
        created = row is not None
        if row is None:
            row = await conn.fetchrow(
                f"SELECT {_COLUMNS} FROM charges WHERE reference = $1", charge.reference
            )
        await conn.execute(
            "INSERT INTO charge_requests (reference, created) VALUES ($1, $2)",
            charge.reference,
            created,
        )
    assert row is not None
    return charge_json(row), created


async def get(pool: asyncpg.Pool, reference: str) -> dict[str, Any] | None:
    row = await pool.fetchrow(f"SELECT {_COLUMNS} FROM charges WHERE reference = $1", reference)
    return charge_json(row) if row else None


async def forget(pool: asyncpg.Pool, reference: str) -> bool:
    return (
        await pool.fetchval("DELETE FROM charges WHERE reference = $1 RETURNING true", reference)
        is not None
    )


async def settlement_report(pool: asyncpg.Pool, after: str | None, limit: int) -> list[dict]:
    """Settled charges ordered by reference (keyset pagination after ``after``)."""
    rows = await pool.fetch(
        f"SELECT {_COLUMNS} FROM charges WHERE status = $1 AND reference > $2"
        " ORDER BY reference LIMIT $3",
        str(ChargeStatus.SETTLED),
        after or "",
        limit,
    )
    return [charge_json(r) for r in rows]

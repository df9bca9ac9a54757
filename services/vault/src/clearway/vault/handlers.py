"""The vault's use cases: tokenize, look up, detokenize (audited), and a refusal record.

Each runs in one transaction with its audit event as an outbox row (docs/design.md §4):
a detokenization whose event could not be written did not happen.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from clearway.shared.actor import Actor
from clearway.shared.crypto import Context, Envelope
from clearway.shared.crypto.tenant_keys import TenantKeys, TenantShredded
from clearway.shared.event_writer import EventWriter
from clearway.shared.retention import Retention
from clearway.vault import store
from clearway.vault.domain import CardSecret, new_card

SERVICE = "vault"
_FINGERPRINT_KEY = Context(SERVICE, "fingerprint_keys", "sealed", "current")


def _sealed_card(token: str, tenant: str) -> Context:
    # bound to token and tenant: a ciphertext moved to another row or tenant does not open
    return Context(SERVICE, "cards", "sealed", token, tenant)


class CardNotFound(LookupError):
    """No card with this token for this tenant (another tenant's token included)."""


@dataclass
class Vault:
    """What the use cases need, wired once by the bootstrap."""

    pool: asyncpg.Pool
    envelope: Envelope
    events: EventWriter
    fingerprint_key: bytes = b""
    #: cards are bound to their tenant's key, so offboarding shreds them (ADR 0027)
    tenant_keys: TenantKeys | None = None

    async def tenant_key(self, tenant: str) -> None:
        """Load ``tenant``'s key before sealing or opening its cards;
        :class:`TenantShredded` for an offboarded tenant."""
        if self.tenant_keys is not None:
            await self.tenant_keys.ensure(tenant)
            if self.tenant_keys.shredded(tenant):
                raise TenantShredded(tenant)


async def load_fingerprint_key(pool: asyncpg.Pool, envelope: Envelope) -> bytes:
    """The HMAC key of card fingerprints: 32 random bytes made by the first replica,
    stored sealed under the vault's KEK (never a built-in key)."""
    async with pool.acquire() as conn:
        sealed = await store.fingerprint_key(conn)
        if sealed is None:
            fresh = envelope.seal(secrets.token_bytes(32), _FINGERPRINT_KEY)
            await store.insert_fingerprint_key(conn, fresh)
            sealed = await store.fingerprint_key(conn)
    assert sealed is not None
    return envelope.open(sealed, _FINGERPRINT_KEY)


def retention_rules(events: EventWriter) -> Retention:
    """The vault's record classes and their purges (docs/design.md §9)."""
    return Retention(SERVICE, events, {"vault_cards": store.purge_cards})


async def database_ready(vault: Vault) -> bool:
    """Readiness: the vault's database answers."""
    return await store.ping(vault.pool)


def card_view(row: Any) -> dict[str, Any]:
    """A card as the API shows it: never the number."""
    return {
        "id": row["token"],
        "brand": row["brand"],
        "bin": row["bin"],
        "last4": row["last4"],
        "exp_month": row["exp_month"],
        "exp_year": row["exp_year"],
        "fingerprint": row["fingerprint"],
        "created_at": row["created_at"].isoformat(),
    }


async def tokenize_card(
    vault: Vault,
    tenant: str,
    number: str,
    exp_month: int,
    exp_year: int,
    holder_name: str | None,
    actor: Actor,
) -> tuple[dict[str, Any], bool]:
    """``(card, created)``: the tenant's token for this card, new or existing.
    Raises :class:`~clearway.vault.domain.InvalidCard` naming the field at fault."""
    card, digits = new_card(
        tenant,
        number,
        exp_month,
        exp_year,
        fingerprint_key=vault.fingerprint_key,
        today=datetime.now(UTC).date(),
    )
    await vault.tenant_key(tenant)
    sealed = vault.envelope.seal(
        CardSecret(digits, holder_name).to_bytes(), _sealed_card(card.token, tenant)
    )
    async with vault.pool.acquire() as conn, conn.transaction():
        row, created = await store.insert_card(conn, card, sealed)
        if created:
            await vault.events.emit(
                conn,
                "vault.card_tokenized",
                subject=card.token,
                version=1,
                tenant=tenant,
                actor=actor,
                data={
                    "token": card.token,
                    "brand": card.brand,
                    "last4": card.last4,
                    "exp_month": card.exp_month,
                    "exp_year": card.exp_year,
                    "fingerprint": card.fingerprint,
                },
            )
    return card_view(row), created


async def find_card(vault: Vault, tenant: str, token: str) -> dict[str, Any]:
    """The tenant's card (no number); :class:`CardNotFound` otherwise."""
    row = await store.get_card(vault.pool, tenant, token)
    if row is None:
        raise CardNotFound(token)
    return card_view(row)


async def detokenize_card(
    vault: Vault, tenant: str, token: str, purpose: str, reference: str, actor: Actor
) -> dict[str, Any]:
    """The card number for one payment submission, recorded as a
    ``vault.card_detokenized`` event in the same transaction; an unknown token is
    recorded as refused and raises :class:`CardNotFound`; an offboarded tenant's cards
    raise :class:`TenantShredded` (their keys are destroyed)."""
    await vault.tenant_key(tenant)
    async with vault.pool.acquire() as conn, conn.transaction():
        row = await store.use_card(conn, tenant, token)
        if row is not None:
            secret = CardSecret.from_bytes(
                vault.envelope.open(row["sealed"], _sealed_card(token, tenant))
            )
            await vault.events.emit(
                conn,
                "vault.card_detokenized",
                subject=token,
                version=row["uses"],
                tenant=tenant,
                actor=actor,
                data={
                    "token": token,
                    "purpose": purpose,
                    "reference": reference,
                    "use": row["uses"],
                },
            )
    if row is None:
        await record_refusal(vault, tenant, token, "not_found", purpose, actor)
        raise CardNotFound(token)
    return {
        "id": token,
        "number": secret.number,
        "exp_month": row["exp_month"],
        "exp_year": row["exp_year"],
        "brand": row["brand"],
        "holder_name": secret.holder_name,
    }


async def record_refusal(
    vault: Vault,
    tenant: str | None,
    token: str | None,
    reason: str,
    purpose: str | None,
    actor: Actor | None,
) -> None:
    """Record a refused detokenization in the audit trail (docs/design.md §8)."""
    async with vault.pool.acquire() as conn, conn.transaction():
        await vault.events.emit(
            conn,
            "vault.detokenize_refused",
            subject=token or "vault",
            aggregate=f"refusal:{uuid.uuid4()}",
            version=1,
            tenant=tenant,
            actor=actor,
            data={"token": token, "reason": reason, "purpose": purpose},
        )

"""Consent use cases: each one loads, applies a domain rule, and saves state plus
events in one transaction (the relay publishes)."""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from clearway.consent import events, store, store_personal
from clearway.consent.domain import Consent, ConsentError, Status
from clearway.consent.scopes import sign_in_scopes
from clearway.consent.service import Service
from clearway.shared.actor import Actor
from clearway.shared.event_writer import EventWriter
from clearway.shared.retention import Retention


class NotFound(Exception):
    pass


class UnknownClient(Exception):
    """The caller's token names a client this service has no record of (deleted, or of
    another deployment): nothing is created for it."""


async def _ready(svc: Service, tenant: str | None) -> None:
    """Load the caller's tenant key before a connection is held (the key is read on a
    connection of its own); :class:`TenantShredded` for an offboarded tenant."""
    if tenant:
        await svc.pii.ready(tenant)


def retention_rules(events: EventWriter) -> Retention:
    """The consent service's record classes and their purges (docs/design.md §9): the
    evidence of an ended consent goes first, the consent itself later."""
    return Retention(
        "consent",
        events,
        {"consent_evidence": store.purge_evidence, "consents": store.purge_consents},
    )


@dataclass(frozen=True)
class CreateConsent:
    tenant: str
    client_id: str
    subject: str | None
    purpose: str
    authorization_details: list[dict[str, Any]]
    scopes: list[str]
    terms_version: str
    ttl_s: int
    actor: Actor


async def create_consent(svc: Service, cmd: CreateConsent) -> Consent:
    consent = Consent.create(
        tenant=cmd.tenant,
        client_id=cmd.client_id,
        subject=cmd.subject,
        purpose=cmd.purpose,
        authorization_details=cmd.authorization_details,
        scopes=cmd.scopes,
        terms_version=cmd.terms_version,
        now=datetime.now(UTC),
        ttl=timedelta(seconds=cmd.ttl_s),
        actor=cmd.actor.as_data(),
    )
    # the client is in the global database: no foreign key reaches it (docs/design.md §9)
    if await find_client(svc, cmd.client_id) is None:
        raise UnknownClient(cmd.client_id)
    await svc.pii.ready(cmd.tenant)  # an offboarded tenant's data is never sealed again
    async with svc.pool.acquire() as conn, conn.transaction():
        await store.insert_consent(conn, consent, svc.pii)
        await svc.events.write(conn, *events.consent_events(svc.events, consent))
    return consent


async def get_consent(svc: Service, tenant: str | None, consent_id: str) -> Consent:
    """The tenant's consent; :class:`TenantShredded` when the tenant was offboarded."""
    await _ready(svc, tenant)
    async with svc.pool.acquire() as conn:
        consent = await store.get_consent(conn, consent_id, svc.pii)
    if consent is None or consent.tenant != tenant:
        raise NotFound(consent_id)  # another tenant's consent does not exist for you
    return consent


async def revoke_consent(
    svc: Service,
    tenant: str | None,
    consent_id: str,
    actor: Actor,
    reason: str | None,
    *,
    subject: str | None = None,
    admin: bool = False,
    approver: str | None = None,
) -> Consent:
    """Revoke (idempotent when already revoked); ``subject`` limits it to the user's own.

    ``admin`` also records a ``consent.admin_action`` (with ``approver``).
    """
    await _ready(svc, tenant)
    async with svc.pool.acquire() as conn, conn.transaction():
        consent = await store.get_consent(conn, consent_id, svc.pii, lock=True)
        if consent is None or consent.tenant != tenant:
            raise NotFound(consent_id)
        if subject is not None and consent.subject != subject:
            raise NotFound(consent_id)
        if consent.status is Status.REVOKED:
            return consent
        consent.revoke(datetime.now(UTC), actor.as_data(), reason)
        await store.update_consent(conn, consent, svc.pii)
        out = events.consent_events(svc.events, consent)
        if admin:
            out.append(
                events.admin_action(
                    svc.events,
                    actor,
                    "revoke_consent",
                    consent.id,
                    consent.version,
                    reason or "",
                    approver,
                    tenant,
                )
            )
        await svc.events.write(conn, *out)
    return consent


async def consume_consent(
    svc: Service, tenant: str | None, consent_id: str, actor: Actor
) -> Consent:
    await _ready(svc, tenant)
    async with svc.pool.acquire() as conn, conn.transaction():
        consent = await store.get_consent(conn, consent_id, svc.pii, lock=True)
        if consent is None or consent.tenant != tenant:
            raise NotFound(consent_id)
        consent.consume(datetime.now(UTC), actor.as_data())
        await store.update_consent(conn, consent, svc.pii)
        await svc.events.write(conn, *events.consent_events(svc.events, consent))
    return consent


async def consume_for_transfer(
    svc: Service,
    conn: asyncpg.Connection,
    tenant: str,
    consent_id: str,
    at: datetime,
    actor: Actor,
) -> bool:
    """A transfer was made under ``consent_id`` (``transfer.created``): mark a single
    payment consent ``Consumed`` in the caller's (inbox) transaction.

    The transfer service already decided the use, atomically with the transfer
    (docs/design.md §7); here the consent's own record catches up. A recurring
    consent, one already consumed, or one no longer authorised (revoked after the
    transfer was accepted) stays as it is. Returns whether the consent changed.
    """
    consent = await store.get_consent(conn, consent_id, svc.pii, lock=True)
    if consent is None or consent.tenant != tenant or consent.status is not Status.AUTHORISED:
        return False
    if consent.is_recurring:
        return False
    try:
        consent.consume(at, actor.as_data())  # at: when the transfer was made
    except ConsentError:
        return False
    await store.update_consent(conn, consent, svc.pii)
    await svc.events.write(conn, *events.consent_events(svc.events, consent))
    return True


def evidence_of(consent: Consent, subject: str, user_agent: str | None, now: datetime) -> dict:
    """What the user saw and did, hashed so the audit trail can hold the fingerprint."""
    shown = {
        "consent_id": consent.id,
        "reference": consent.reference,
        "purpose": consent.purpose,
        "authorization_details": consent.authorization_details,
        "terms_version": consent.terms_version,
        "subject": subject,
        "approved_at": now.isoformat(),
        "user_agent": (user_agent or "")[:200],
        "method": "consent-page/dev-identity",
    }
    digest = hashlib.sha256(json.dumps(shown, sort_keys=True).encode()).hexdigest()
    return {**shown, "hash": digest}


async def decide(
    svc: Service,
    par: dict[str, Any],
    subject: str,
    tenant: str,
    approve: bool,
    user_agent: str | None,
) -> str | None:
    """Approve (returns a fresh authorization code) or reject (returns None) the consent
    a pushed authorization request points at."""
    now = datetime.now(UTC)
    actor = Actor(subject).as_data()  # the user, at the consent page
    await svc.pii.ready(tenant)
    async with svc.pool.acquire() as conn, conn.transaction():
        consent = await store.get_consent(conn, par["consent_id"], svc.pii, lock=True)
        if consent is None or consent.tenant != tenant:
            raise NotFound(par["consent_id"])
        if not approve:
            consent.reject(subject, now, actor)
            await store.update_consent(conn, consent, svc.pii)
            await svc.events.write(conn, *events.consent_events(svc.events, consent))
            return None
        consent.approve(subject, now, evidence_of(consent, subject, user_agent, now), actor)
        await store.update_consent(conn, consent, svc.pii)
        await svc.events.write(conn, *events.consent_events(svc.events, consent))
        code = secrets.token_urlsafe(32)
        await store.insert_authorization_code(
            conn,
            hashlib.sha256(code.encode()).hexdigest(),
            par,
            consent.tenant,
            subject,
            consent.id,
            now + timedelta(seconds=min(svc.settings.code_ttl_s, 60)),
        )
    return code


async def sign_in(svc: Service, par: dict[str, Any], subject: str, tenant: str) -> str | None:
    """A code for a pushed sign-in request (no consent) of a signed-in user: its scopes
    are the requested ones the user's role allows (docs/design.md §7); None when none is
    left (the user has no role the client asked for)."""
    scopes = sorted(set(par["scopes"]) & sign_in_scopes(tenant))
    if not scopes:
        return None
    code = secrets.token_urlsafe(32)
    async with svc.pool.acquire() as conn:
        await store.insert_authorization_code(
            conn,
            hashlib.sha256(code.encode()).hexdigest(),
            {**par, "scopes": scopes},
            tenant,
            subject,
            None,
            datetime.now(UTC) + timedelta(seconds=min(svc.settings.code_ttl_s, 60)),
        )
    return code


async def expire_due(svc: Service) -> int:
    """Mark consents past their expiry ``Expired`` (run periodically)."""
    now = datetime.now(UTC)
    async with svc.pool.acquire() as conn, conn.transaction():
        ids = await store.due_for_expiry(conn, now)
        for consent_id in ids:
            consent = await store.get_consent(conn, consent_id, svc.pii)
            assert consent is not None
            try:
                consent.expire(now)
            except ConsentError:
                continue
            await store.update_consent(conn, consent, svc.pii)
            await svc.events.write(conn, *events.consent_events(svc.events, consent))
    return len(ids)


async def list_consents(
    svc: Service,
    tenant: str,
    *,
    subject: str | None = None,
    status: Status | None = None,
    after: tuple[Any, ...] | None = None,
    limit: int = 50,
) -> list[Consent]:
    """The tenant's consents, newest first, after a ``(created_at, id)`` position;
    :class:`TenantShredded` when the tenant was offboarded."""
    await svc.pii.ready(tenant)
    async with svc.pool.acquire() as conn:
        return await store.list_consents(
            conn,
            tenant,
            svc.pii,
            subject=subject,
            status=status,
            before=None if after is None else (after[0], after[1]),
            limit=limit,
        )


async def find_user(svc: Service, username: str) -> Any:
    """The development identity's user record for a sign-in, or None (also when the
    user's tenant was crypto-shredded: its users are gone with their data)."""
    async with svc.pool.acquire() as conn:
        user = await store.get_user(conn, username, svc.pii)
    if user is not None:
        await svc.pii.ensure(user["tenant"])
        if svc.pii.shredded(user["tenant"]):
            return None
    return user


async def find_client(svc: Service, client_id: str) -> Any:
    """A registered client (any status) or None."""
    async with svc.global_pool.acquire() as conn:
        return await store.get_client(conn, client_id)


async def register_users(
    svc: Service, users: list[tuple[str, str, str, str]], password_hash: str
) -> None:
    """Add development-identity users ``(subject, tenant, username, display_name)`` with
    one password hash; subjects that exist are kept as they are."""
    async with svc.pool.acquire() as conn:
        for subject, tenant, username, display_name in users:
            await svc.pii.ensure(tenant)
            if svc.pii.shredded(tenant):
                continue  # an offboarded tenant gets no users again
            await store.insert_user(
                conn, svc.pii, subject, tenant, username, display_name, password_hash
            )


async def open_personal_data(svc: Service, batch: int = 200) -> int:
    """At start: load the blind-index key, then seal the personal values still in clear
    (rows written before they were sealed) and re-seal those sealed under the KEK alone
    under their tenant's key (rows written before ADR 0027 reached the consent store), so
    crypto-shredding reaches every row (docs/design.md §9); returns how many rows.

    Rows of a tenant already shredded cannot be bound to its destroyed key: they are
    deleted, which is what its offboarding asked for. Each batch commits on its own, so
    an interrupted start resumes with what is left; replicas take turns (advisory lock)
    and none serves such rows once it returns.
    """
    async with svc.pool.acquire() as conn:
        await svc.pii.load(conn)
    done = 0
    while True:
        async with svc.pool.acquire() as conn, conn.transaction():
            await store_personal.lock_legacy(conn)
            consents = await store_personal.legacy_consents(conn, batch)
            await _seal_consents(svc, conn, consents, lambda r: dict(r))
            users = await store_personal.legacy_users(conn, batch)
            await _seal_users(svc, conn, users, lambda u: (u["username"], u["display_name"]))
            kek_consents = await store_personal.kek_sealed_consents(conn, batch)
            await _seal_consents(svc, conn, kek_consents, lambda r: store.opened_values(svc.pii, r))
            kek_users = await store_personal.kek_sealed_users(conn, batch)
            await _seal_users(svc, conn, kek_users, lambda u: _opened_user(svc, u))
        rows = (consents, users, kek_consents, kek_users)
        done += sum(len(r) for r in rows)
        if all(len(r) < batch for r in rows):
            return done


async def _seal_consents(
    svc: Service, conn: asyncpg.Connection, rows: list[Any], clear: Callable[[Any], dict]
) -> None:
    for r in rows:
        await svc.pii.ensure(r["tenant"])
        if svc.pii.shredded(r["tenant"]):
            await store_personal.delete_consent(conn, r["id"])
            continue
        sealed = store.sealed_values(svc.pii, r["id"], r["tenant"], clear(r))
        await store_personal.seal_legacy_consent(conn, r["id"], sealed)


async def _seal_users(
    svc: Service, conn: asyncpg.Connection, rows: list[Any], clear: Callable[[Any], tuple]
) -> None:
    for u in rows:
        subject, tenant = u["subject"], u["tenant"]
        await svc.pii.ensure(tenant)
        if svc.pii.shredded(tenant):
            await store_personal.delete_user(conn, subject)
            continue
        username, display_name = clear(u)
        await store_personal.seal_legacy_user(
            conn,
            subject,
            svc.pii.seal("users", "username", subject, tenant, username),
            svc.pii.index("users", "username", "", username),
            svc.pii.seal("users", "display_name", subject, tenant, display_name),
        )


def _opened_user(svc: Service, u: Any) -> tuple[str, str]:
    subject, tenant = u["subject"], u["tenant"]
    return (
        svc.pii.open("users", "username", subject, tenant, u["username"]),
        svc.pii.open("users", "display_name", subject, tenant, u["display_name"]),
    )

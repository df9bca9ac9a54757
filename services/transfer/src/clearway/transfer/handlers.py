"""Use cases: initiate (HTTP and Kafka intents share it), read, list, cancel, the executor's
submit/settle/fail, key recovery and purge.

Every change loads the ``Transfer`` (row locked), calls the aggregate, and saves it
with its recorded events as outbox rows in the same transaction (docs/design.md §4).

Initiation is two short transactions (docs/design.md §5): first the idempotency key is
claimed *in flight*, then the check of who may debit the source, the transfer row,
the use of its consent, its ``transfer.created`` outbox row and the completed key
(status + body) commit together; a refusal commits nothing and frees the key. A
crash between the two leaves an in-flight key and no transfer: recovery sees that no
effect happened.
A crash after the second leaves a transfer: recovery completes the key from it.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

import asyncpg

from clearway.shared.actor import Actor
from clearway.shared.backoff import RetriesExhausted, retry
from clearway.shared.event_writer import EventWriter
from clearway.shared.events import Event
from clearway.shared.http import PageRequest
from clearway.shared.mode import Mode
from clearway.shared.money import money
from clearway.shared.retention import Retention
from clearway.shared.versions import CURRENT_VERSION, upgrade
from clearway.transfer import store, store_accounts
from clearway.transfer.domain import (
    CONSUMED,
    TRANSFERS_ROUTE,
    Account,
    ConsentState,
    ConsentUse,
    KeyDecision,
    KeyState,
    Refused,
    Status,
    Transfer,
    TransferError,
    TransferRequest,
    check_consent,
    check_tenant_debit,
    consent_stage,
    current_consent,
    decide,
    fingerprint,
    in_flight_wait,
    reference_for,
)
from clearway.transfer.events import intent_result, transfer_event
from clearway.transfer.rail_client import RailClient
from clearway.transfer.reconciliation import Report, compare, new_run_id
from clearway.transfer.vault_client import (
    UnknownCardToken,
    VaultClient,
    VaultUnavailable,
    is_card_token,
)

log = logging.getLogger(__name__)


@dataclass
class Core:
    """What the use cases need, wired once by the bootstrap."""

    pool: asyncpg.Pool
    claims: asyncpg.Pool  # synchronous_commit=off: see store.claim_key
    events: EventWriter  # the transfer events topic
    reference_secret: bytes
    lock_timeout_s: float = 30.0
    retention: timedelta = timedelta(days=7)
    vault: VaultClient | None = None  # checks card tokens (docs/design.md §9)
    records: Retention | None = None  # the retention rules of the schema (docs/design.md §9)


def retention_rules(events: EventWriter, key_retention: timedelta) -> Retention:
    """The record classes the transfer service owns and purges (docs/design.md §9);
    ``CLEARWAY_TRANSFER_KEY_RETENTION`` is the default of ``idempotency_keys``."""
    return Retention(
        "transfer",
        events,
        {"idempotency_keys": store.purge_idempotency_keys},
        defaults={"idempotency_keys": key_retention},
    )


@dataclass(frozen=True)
class InitiateTransfer:
    tenant: str
    client_id: str
    key: str
    request: TransferRequest
    actor: Actor
    correlation_id: str | None = None
    consent: ConsentState | None = None
    """The consent the caller's token is bound to, as the token states it; None for
    client credentials (and intents), which debit only the tenant's own accounts."""


@dataclass(frozen=True)
class Outcome:
    """The answer to an initiation: the exact bytes sent the first time, and on every
    replay of the key (at the current dated version; the edge downgrades them)."""

    status_code: int
    content: bytes
    replayed: bool

    @cached_property
    def body(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.content)
        return parsed


def render(body: dict[str, Any]) -> bytes:
    """A response body serialised once: these bytes are stored with the key and
    replayed as they are, so a retry sees byte for byte what the first call would
    have (the JSON of a JSONB column comes back with its keys reordered)."""
    return json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def stored_answer(seen: asyncpg.Record) -> Outcome:
    """The replay of a completed key. A body stored under an older current version
    (before a deploy added a dated version) is upgraded to today's current version,
    so that the edge's downgrade for the caller's version starts from the right
    shape; otherwise the stored bytes are answered untouched."""
    content: bytes = seen["response_bytes"]
    if seen["response_version"] != CURRENT_VERSION:
        doc = upgrade(json.loads(content), CURRENT_VERSION, since=seen["response_version"])
        content = render(doc)
    return Outcome(seen["status_code"], content, True)


class KeyInFlight(TransferError):
    def __init__(self, retry_after: int) -> None:
        super().__init__("a request with this idempotency key is still in flight")
        self.retry_after = retry_after


class KeyReused(TransferError):
    def __init__(self) -> None:
        super().__init__("the idempotency key was used with a different request")


class TransferNotFound(TransferError):
    pass


class IntentInFlight(ConnectionError):
    """Another request holds the key for longer than we wait: retry the message later.

    A ``ConnectionError`` so that the kit's consumer retries it instead of
    dead-lettering it."""


async def initiate_transfer(core: Core, cmd: InitiateTransfer) -> Outcome:
    """Create the transfer once per (tenant, client, key); replay it afterwards."""
    fp = fingerprint("POST", TRANSFERS_ROUTE, cmd.request.body())
    ref = reference_for(core.reference_secret, cmd.tenant, cmd.client_id, cmd.key)
    async with core.claims.acquire() as claims:
        seen = await store.claim_key(
            claims, cmd.tenant, cmd.client_id, cmd.key, fp, ref, core.retention
        )
        if seen is not None:
            decision = decide(
                KeyState(seen["state"]),
                seen["fingerprint"],
                fp,
                seen["age_s"],
                core.lock_timeout_s,
            )
            if decision is KeyDecision.REPLAY:
                return stored_answer(seen)
            if decision is KeyDecision.MISMATCH:
                raise KeyReused()
            if decision is KeyDecision.IN_FLIGHT:
                raise KeyInFlight(max(1, math.ceil(core.lock_timeout_s - seen["age_s"])))
            if not await store.take_over(
                claims, cmd.tenant, cmd.client_id, cmd.key, seen["locked_at"]
            ):
                raise KeyInFlight(1)
            log.info("recovering a stale in-flight idempotency key (reference %s)", ref)
    async with core.pool.acquire() as conn:
        try:
            await _check_source(core, cmd)
            return await _create(conn, core, cmd, fp, ref)
        except KeyReused:
            raise
        except BaseException:
            # No effect committed (or the key is already completed): free the claim so a
            # retry is not stuck behind a lock nobody holds.
            try:
                await store.release_key(conn, cmd.tenant, cmd.client_id, cmd.key)
            except Exception:
                log.warning("could not release an in-flight key; recovery will", exc_info=True)
            raise


async def _check_source(core: Core, cmd: InitiateTransfer) -> None:
    """A card token must be a card of the tenant at the vault (``UnknownCardToken``);
    without an answer from the vault no transfer is created (``VaultUnavailable``)."""
    if not is_card_token(cmd.request.source):
        return
    if core.vault is None:
        raise VaultUnavailable("no vault configured to check card tokens")
    await core.vault.check(cmd.tenant, cmd.request.source)


async def _create(
    conn: asyncpg.Connection, core: Core, cmd: InitiateTransfer, fp: str, ref: str
) -> Outcome:
    now = datetime.now(UTC)
    async with conn.transaction():
        use = await _authorise(conn, cmd, now)  # Refused: nothing written, the claim is freed
        transfer = Transfer.create(
            tenant=cmd.tenant,
            client_id=cmd.client_id,
            reference=ref,
            fingerprint=fp,
            request=cmd.request,
            actor=cmd.actor,
            now=now,
            correlation_id=cmd.correlation_id,
            consent_id=use.consent_id if use else None,
        )
        body = transfer_view(transfer)
        content = render(body)
        # one statement inserts the transfer and completes the key with its answer
        completed = store.KeyCompletion(cmd.client_id, cmd.key, 201, content, CURRENT_VERSION, body)
        if await store.insert_transfer(conn, transfer, completed):
            # The consent's use commits with the transfer or not at all; concurrent
            # uses of a single-use consent wait on its row and find it taken.
            if use and not await store_accounts.use_consent(conn, use, cmd.tenant, transfer.id):
                raise Refused("consent-consumed", "the consent was already used", status=CONSUMED)
            await _write_events(conn, core, transfer)
            return Outcome(201, content, False)
        # The key was purged or its claim recovered: the transfer already exists.
        found = await store.transfer_by_reference(conn, cmd.tenant, ref)
        assert found is not None
        reused = found.fingerprint != fp
        body = transfer_view(found)
        content = render(body)
        if reused:  # committed before KeyReused is raised, so the claim is freed
            await store.release_key(conn, cmd.tenant, cmd.client_id, cmd.key)
        else:
            await store.complete_key(
                conn, cmd.tenant, cmd.client_id, cmd.key, 201, content, CURRENT_VERSION, body
            )
    if reused:
        raise KeyReused()
    return Outcome(201, content, True)


async def _authorise(
    conn: asyncpg.Connection, cmd: InitiateTransfer, now: datetime
) -> ConsentUse | None:
    """May the caller debit the source? Client credentials: the tenant's own accounts
    only; a consent-bound token: what the consent allows (docs/design.md §7)."""
    req = cmd.request
    accounts = await store_accounts.accounts_of(conn, cmd.tenant, [req.source, req.destination])
    if cmd.consent is None:
        check_tenant_debit(cmd.tenant, req.source, accounts.get(req.source))
        return None
    known = await store_accounts.consent(conn, cmd.consent.id)
    consent = current_consent(known, cmd.consent)
    return check_consent(
        consent, cmd.tenant, req, accounts.get(req.source), accounts.get(req.destination), now
    )


async def register_accounts(core: Core, accounts: list[Account]) -> None:
    """Add accounts to the registry (the demo seed, tests; an onboarding API later)."""
    await store_accounts.register_accounts(core.pool, accounts)


async def apply_consent_event(conn: asyncpg.Connection, event: Event) -> None:
    """Fold one ``consent.*`` event into the projection (the inbox transaction ``conn``)."""
    data = event.data
    if not event.tenant or not isinstance(data.get("consent_id"), str):
        return
    expires_at = data.get("expires_at")
    await store_accounts.apply_consent(
        conn,
        data["consent_id"],
        event.tenant,
        consent_stage(data["status"]),
        data["status"],
        data.get("subject"),
        datetime.fromisoformat(expires_at) if isinstance(expires_at, str) else None,
    )


async def accept_intent(
    core: Core, conn: asyncpg.Connection, intent: Event, cmd: InitiateTransfer
) -> None:
    """Apply a ``transfer.intent`` like ``POST /v1/transfers``; its one result event
    (``transfer.accepted`` or ``transfer.rejected``) joins the inbox transaction ``conn``."""
    try:
        # bounded: past the lock timeout the key is recovered by the next claim
        outcome = await retry(
            lambda: initiate_transfer(core, cmd),
            in_flight_wait(core.lock_timeout_s),
            what=f"intent {intent.id} waiting for its idempotency key",
            retry_on=(KeyInFlight,),
            retry_level=logging.DEBUG,
        )
    except KeyReused:
        reason = "key already used with a different request"
        return await reject_intent(core, conn, intent, "idempotency_key", reason)
    except UnknownCardToken:
        reason = "unknown card token for this tenant"
        return await reject_intent(core, conn, intent, "source", reason)
    except Refused as e:
        return await reject_intent(core, conn, intent, e.field, e.reason)
    except RetriesExhausted:
        raise IntentInFlight("idempotency key still in flight") from None
    body = outcome.body
    data = {
        "intent_id": intent.id,
        "idempotency_key": cmd.key,
        "transfer_id": body["id"],
        "reference": body["reference"],
        "status": body["status"],
        "replayed": outcome.replayed,
    }
    await core.events.write(
        conn, intent_result(core.events, "transfer.accepted", intent, body["id"], data)
    )


async def reject_intent(
    core: Core, conn: asyncpg.Connection, intent: Event, field: str | None, reason: str
) -> None:
    """Answer an intent that cannot become a transfer with ``transfer.rejected``."""
    key = intent.data.get("idempotency_key")
    data = {
        "intent_id": intent.id,
        "idempotency_key": key if isinstance(key, str) else None,
        "field": field,
        "reason": reason,
    }
    await core.events.write(
        conn, intent_result(core.events, "transfer.rejected", intent, intent.subject, data)
    )


async def get_transfer(core: Core, tenant: str, transfer_id: str) -> dict[str, Any]:
    transfer = await store.transfer_by_id(core.pool, transfer_id, tenant)
    if transfer is None:
        raise TransferNotFound(transfer_id)
    return transfer_view(transfer)


async def list_transfers(
    core: Core, tenant: str, reference: str | None, page: PageRequest
) -> dict[str, Any]:
    """One page of the tenant's transfers, oldest first, in the kit's list shape; the
    cursor is bound to the tenant and the ``reference`` filter (a 422 otherwise)."""
    filters = {"reference": reference}
    after = page.after(tenant, filters)
    found = await store.list_transfers(
        core.pool, tenant, reference, str(after[0]) if after else None, page.fetch_limit
    )
    return page.page(
        found, tenant=tenant, filters=filters, position=lambda t: (t.id,), render=transfer_view
    )


async def cancel_transfer(
    core: Core, tenant: str, transfer_id: str, actor: Actor
) -> dict[str, Any]:
    """Cancel a pending transfer; canceling a canceled one answers the same again."""
    async with core.pool.acquire() as conn, conn.transaction():
        transfer = await _load(conn, transfer_id, tenant)
        if transfer.status is not Status.CANCELED:
            transfer.cancel(actor)  # InvalidTransition once it was submitted
            await _save(conn, core, transfer)
        return transfer_view(transfer)


async def submit_transfer(core: Core, transfer_id: str) -> Transfer:
    """Mark a pending transfer submitted before the rail is called. A transfer that is
    no longer pending is returned as it is: a redelivered job, the sweep or another
    replica got there first (or it was canceled)."""
    async with core.pool.acquire() as conn, conn.transaction():
        transfer = await _load(conn, transfer_id)
        if transfer.status is Status.PENDING:
            transfer.submit()
            await _save(conn, core, transfer)
        return transfer


async def settle_transfer(core: Core, transfer_id: str, rail_charge_id: str) -> Transfer:
    """Record the rail's settlement and post the balanced ledger legs."""
    async with core.pool.acquire() as conn, conn.transaction():
        transfer = await _load(conn, transfer_id)
        if transfer.status is Status.SUBMITTED:  # else someone else finished it
            transfer.settle(rail_charge_id)
            await store.post_ledger(conn, transfer.id, transfer.postings())
            await _save(conn, core, transfer)
        return transfer


async def fail_transfer(core: Core, transfer_id: str, reason: str) -> Transfer:
    """Record that the rail refused the transfer for good (no ledger legs)."""
    async with core.pool.acquire() as conn, conn.transaction():
        transfer = await _load(conn, transfer_id)
        if transfer.status is Status.SUBMITTED:  # else someone else finished it
            transfer.fail(reason)
            await _save(conn, core, transfer)
        return transfer


async def open_transfers(core: Core, older_than_s: float, limit: int) -> list[str]:
    """Ids of pending or submitted transfers nobody touched for ``older_than_s``."""
    return await store.open_transfers(core.pool, older_than_s, limit)


async def _load(conn: asyncpg.Connection, transfer_id: str, tenant: str | None = None) -> Transfer:
    # FOR UPDATE: load → act → save of one transfer never interleaves with another.
    transfer = await store.transfer_by_id(conn, transfer_id, tenant, for_update=True)
    if transfer is None:
        raise TransferNotFound(transfer_id)
    return transfer


async def _save(conn: asyncpg.Connection, core: Core, transfer: Transfer) -> None:
    """The transfer's new state and the events it recorded, in the caller's transaction."""
    await store.save_transfer(conn, transfer)
    await _write_events(conn, core, transfer)


async def _write_events(conn: asyncpg.Connection, core: Core, transfer: Transfer) -> None:
    events = [transfer_event(core.events, ev) for ev in transfer.collect_events()]
    await core.events.write(conn, *events)


def transfer_view(t: Transfer) -> dict[str, Any]:
    """The public representation of a transfer (what the API answers and replays), at
    the current dated version: the edge downgrades it for older ones (docs/design.md §10)."""
    return {
        "id": t.id,
        "reference": t.reference,
        "status": t.status.value,
        "amount": money(t.amount, t.currency),
        "source": t.source,
        "destination": t.destination,
        "description": t.description,
        "metadata": dict(t.metadata),
        "failure_reason": t.failure_reason,
        "created_at": t.created_at.isoformat().replace("+00:00", "Z"),
    }


async def reconcile_settlements(
    core: Core, rail: RailClient, modes: tuple[Mode, ...] = tuple(Mode)
) -> Report:
    """Match the rail's settlement report against the settled transfers of ``modes``
    (those the rail carries, docs/design.md §10); store the run and its breaks and
    write ``transfer.reconciled`` in one transaction."""
    charges = {c["reference"]: c for c in await rail.settlement_report()}
    settled = await store.settled_by_reference(core.pool, modes)
    report = compare(settled, charges, new_run_id())
    data = {"run_id": report.run_id, **report.counts(), "breaks": report.breaks}
    async with core.pool.acquire() as conn, conn.transaction():
        await store.record_reconciliation(conn, report.run_id, report.counts(), report.breaks)
        await core.events.emit(
            conn, "transfer.reconciled", subject=report.run_id, version=1, data=data
        )
    return report


async def recover_stale_keys(core: Core) -> int:
    """Settle in-flight keys older than the lock timeout by looking at the transfers,
    never by re-running anything: a transfer means the effect happened."""
    recovered = 0
    async with core.pool.acquire() as conn:
        for k in await store.stale_keys(conn, core.lock_timeout_s):
            async with conn.transaction():
                if not await store.take_over(
                    conn, k["tenant"], k["client_id"], k["key"], k["locked_at"]
                ):
                    continue
                found = await store.transfer_by_reference(conn, k["tenant"], k["reference"])
                if found is not None and found.fingerprint == k["fingerprint"]:
                    body = transfer_view(found)
                    await store.complete_key(
                        conn,
                        k["tenant"],
                        k["client_id"],
                        k["key"],
                        201,
                        render(body),
                        CURRENT_VERSION,
                        body,
                    )
                else:
                    await store.release_key(conn, k["tenant"], k["client_id"], k["key"])
                recovered += 1
    return recovered


async def purge_records(core: Core) -> dict[str, int]:
    """The retention job: records past their rule removed, each purge audited."""
    return await core.records.purge(core.pool) if core.records is not None else {}

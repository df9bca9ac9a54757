"""Transfer rules: money, references, request fingerprints, who may debit an account
(ownership and consents), the ``Transfer`` aggregate, the ledger.

A transfer's life (docs/design.md §5)::

    pending ─submit─▶ submitted ─settle─▶ settled
       │                  └──────fail───▶ failed
       └──cancel─▶ canceled

Every change is made by a method of :class:`Transfer`, which checks the move,
bumps the version and records a past-tense event (``TransferSubmitted``, …);
handlers save the transfer and turn those events into outbox rows.

Pure: no database, broker or web framework here.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar

import rfc8785

from clearway.shared.actor import Actor
from clearway.shared.backoff import Backoff

#: ISO 4217 active alphabetic codes this platform moves money in.
CURRENCIES = frozenset(
    "AED AUD BGN BRL CAD CHF CLP CNY COP CZK DKK EGP EUR GBP HKD HUF IDR ILS INR ISK JPY KES "
    "KRW MAD MXN MYR NGN NOK NZD PEN PHP PKR PLN QAR RON SAR SEK SGD THB TRY TWD UAH USD VND "
    "ZAR".split()
)
#: ISO 20022 EndToEndId is at most 35 characters.
REFERENCE_MAX = 35
TRANSFERS_ROUTE = "/v1/transfers"
SOURCE = "/clearway/transfer"


class TransferError(Exception):
    """Base of the transfer domain's errors."""


class InvalidField(TransferError, ValueError):
    """A request field breaks a rule; ``field`` names it (the value is never quoted)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class Status(StrEnum):
    PENDING = "pending"
    SUBMITTED = "submitted"
    SETTLED = "settled"
    FAILED = "failed"
    CANCELED = "canceled"


class InvalidTransition(TransferError):
    def __init__(self, current: Status, wanted: Status) -> None:
        super().__init__(f"cannot move a {current} transfer to {wanted}")
        self.current = current
        self.wanted = wanted


_NEXT: Mapping[Status, frozenset[Status]] = {
    Status.PENDING: frozenset({Status.SUBMITTED, Status.CANCELED}),
    Status.SUBMITTED: frozenset({Status.SETTLED, Status.FAILED}),
    Status.SETTLED: frozenset(),
    Status.FAILED: frozenset(),
    Status.CANCELED: frozenset(),
}


def check_transition(current: Status, wanted: Status) -> None:
    """Raise :class:`InvalidTransition` unless ``current → wanted`` is allowed."""
    if wanted not in _NEXT[current]:
        raise InvalidTransition(current, wanted)


def new_transfer_id() -> str:
    """``tr_`` + 48-bit milliseconds + 80 random bits: unique and roughly time-ordered."""
    return f"tr_{int(time.time() * 1000):012x}{os.urandom(10).hex()}"


@dataclass(frozen=True)
class TransferRequest:
    """What a client asks for, already checked against the money rules."""

    amount: int
    currency: str
    source: str
    destination: str
    description: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.amount, bool) or not isinstance(self.amount, int) or self.amount <= 0:
            raise InvalidField("amount", "must be a positive integer in minor units")
        if self.currency not in CURRENCIES:
            raise InvalidField("currency", "must be an ISO 4217 currency code")
        if self.source == self.destination:
            raise InvalidField("destination", "must differ from source")

    def body(self) -> dict[str, Any]:
        """The request as the JSON body a client sends (used for the fingerprint)."""
        out: dict[str, Any] = {
            "amount": self.amount,
            "currency": self.currency,
            "source": self.source,
            "destination": self.destination,
        }
        if self.description is not None:
            out["description"] = self.description
        if self.metadata:
            out["metadata"] = dict(self.metadata)
        return out


@dataclass(frozen=True)
class Posting:
    """One leg of a double-entry journal entry: debits negative, credits positive."""

    account: str
    leg: str
    amount: int
    currency: str


def settlement_postings(source: str, destination: str, amount: int, currency: str) -> list[Posting]:
    """The balanced postings of a settled transfer: the source pays, the destination gets."""
    legs = [
        Posting(source, "debit", -amount, currency),
        Posting(destination, "credit", amount, currency),
    ]
    assert sum(p.amount for p in legs) == 0
    return legs


# --- who may debit an account (docs/design.md §5, §7) ------------------------------


class Owner(StrEnum):
    TENANT = "tenant"  # the tenant's own (treasury) account
    USER = "user"  # one user's account at the tenant
    EXTERNAL = "external"  # a counterparty known by its IBAN: a creditor, never a source


@dataclass(frozen=True)
class Account:
    """An entry of the account registry: an account id of a tenant and its owner."""

    tenant: str
    id: str
    owner: Owner
    user_id: str | None = None
    iban: str | None = None


#: Consent statuses as the consent service names them (docs/design.md §7).
AUTHORISED = "Authorised"
CONSUMED = "Consumed"
EXPIRED = "Expired"
PAYMENT_INITIATION = "payment_initiation"


@dataclass(frozen=True)
class ConsentState:
    """What the transfer service knows of a payment consent: from its projection of
    ``consent.*`` events, or from the signed token bound to it when the projection
    has not seen the consent yet."""

    id: str
    tenant: str
    subject: str | None
    status: str
    authorization_details: tuple[Mapping[str, Any], ...]
    expires_at: datetime | None


def consent_stage(status: str) -> int:
    """How far a consent has come: 1 awaiting, 2 authorised, 3 a final status. A
    consent reaches one final status at most, so the projection keeps the highest."""
    return {"AwaitingAuthorisation": 1, AUTHORISED: 2}.get(status, 3)


def current_consent(known: ConsentState | None, token: ConsentState) -> ConsentState:
    """The consent's state for a request bound to it: the projection's, unless it has
    not yet seen the consent authorised. A token is issued only from an ``Authorised``
    consent, so the token itself carries that write to us (read-your-writes); the
    projection's later news (consumed, revoked, expired) wins over it. The
    authorization details always come from the token (RFC 9396, signed by the issuer
    at redemption): they are personal data, which ``consent.*`` events do not carry
    (ADR 0039), so the projection has none."""
    if known is None or consent_stage(known.status) < 2:
        return token
    return ConsentState(
        known.id,
        known.tenant,
        known.subject,
        known.status,
        token.authorization_details,
        known.expires_at,
    )


class Refused(TransferError):
    """The caller may not make this transfer (403): ``slug`` says why, ``field`` where."""

    def __init__(
        self, slug: str, reason: str, field: str | None = None, status: str | None = None
    ) -> None:
        super().__init__(reason)
        self.slug = slug
        self.reason = reason
        self.field = field
        self.status = status


@dataclass(frozen=True)
class ConsentUse:
    """The consent a transfer is made under and whether that use consumes it."""

    consent_id: str
    single_use: bool


def check_tenant_debit(tenant: str, source: str, account: Account | None) -> None:
    """Client credentials (no consent) debit only the tenant's own accounts.

    A card token (``tok_…``) is not an account of the registry; its checks are the
    vault's. Unknown and counterparty accounts are refused alike, so the answer does
    not tell which accounts exist.
    """
    if source.startswith("tok_"):
        return
    if account is not None and account.tenant == tenant and account.owner is Owner.USER:
        raise Refused(
            "consent-required",
            "a user's account is debited only with a token bound to the user's consent",
            "source",
        )
    if account is None or account.tenant != tenant or account.owner is not Owner.TENANT:
        raise Refused("source-not-permitted", "not an account your tenant may debit", "source")


def check_consent(
    consent: ConsentState,
    tenant: str,
    request: TransferRequest,
    source: Account | None,
    destination: Account | None,
    now: datetime,
) -> ConsentUse:
    """The transfer must match one ``payment_initiation`` detail of an ``Authorised``,
    unexpired consent of the caller's tenant (RFC 9396): the source is the consenting
    user's account (and the stated ``debtorAccount``), the destination the stated
    ``creditorAccount``, the currency, and the amount exactly, or up to the
    ``recurring.maximumAmount`` of a recurring consent. Raises :class:`Refused`.
    """
    if consent.tenant != tenant:
        raise Refused("consent-mismatch", "the consent belongs to another tenant", "consent_id")
    status = consent.status
    if status == AUTHORISED and consent.expires_at is not None and now >= consent.expires_at:
        status = EXPIRED
    if status == CONSUMED:
        raise Refused("consent-consumed", "the consent was already used", status=status)
    if status != AUTHORISED:
        raise Refused("consent-not-authorised", f"the consent is {status}", status=status)
    details = [d for d in consent.authorization_details if d.get("type") == PAYMENT_INITIATION]
    if not details:
        raise Refused("consent-mismatch", "the consent allows no payment", "consent_id")
    misses = [_mismatch(d, consent.subject, request, source, destination) for d in details]
    for detail, miss in zip(details, misses, strict=True):
        if miss is None:
            recurring = isinstance(detail.get("recurring"), Mapping)
            return ConsentUse(consent.id, single_use=not recurring)
    first = misses[0]
    assert first is not None
    raise Refused("consent-mismatch", first[1], first[0])


def _mismatch(
    detail: Mapping[str, Any],
    subject: str | None,
    request: TransferRequest,
    source: Account | None,
    destination: Account | None,
) -> tuple[str, str] | None:
    """The first field of ``request`` that ``detail`` does not allow, with why."""
    debtor = (detail.get("debtorAccount") or {}).get("iban")
    if (
        subject is None
        or source is None
        or source.owner is not Owner.USER
        or source.user_id != subject
        or (debtor is not None and source.iban != debtor)
    ):
        return "source", "is not the consenting user's account the consent names"
    creditor = (detail.get("creditorAccount") or {}).get("iban")
    if destination is None or creditor is None or destination.iban != creditor:
        return "destination", "is not the creditor account the consent names"
    recurring = detail.get("recurring")
    limit = recurring.get("maximumAmount") if isinstance(recurring, Mapping) else None
    capped = isinstance(limit, Mapping)
    allowed = limit if capped else detail.get("instructedAmount") or {}
    if request.currency != allowed.get("currency"):
        return "currency", "is not the currency the consent names"
    if capped:
        if request.amount > allowed.get("amount", 0):
            return "amount", "exceeds the maximum amount of the recurring consent"
    elif request.amount != allowed.get("amount"):
        return "amount", "is not the amount the consent names"
    return None


# --- the aggregate's events -----------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class TransferEvent:
    """Something that happened to a transfer: what every ``transfer.*`` event carries.

    ``version`` is the transfer's version *after* the change, so (transfer id,
    version, type) names the event for good (docs/design.md §3).
    """

    type: ClassVar[str]
    transfer_id: str
    version: int
    tenant: str
    correlation_id: str | None
    reference: str
    amount: int
    currency: str
    status: Status


@dataclass(frozen=True, kw_only=True)
class TransferCreated(TransferEvent):
    type: ClassVar[str] = "transfer.created"
    source: str
    destination: str
    description: str | None
    actor: Actor | None
    consent_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class TransferSubmitted(TransferEvent):
    type: ClassVar[str] = "transfer.submitted"


@dataclass(frozen=True, kw_only=True)
class TransferSettled(TransferEvent):
    type: ClassVar[str] = "transfer.settled"
    rail_charge_id: str


@dataclass(frozen=True, kw_only=True)
class TransferFailed(TransferEvent):
    type: ClassVar[str] = "transfer.failed"
    reason: str


@dataclass(frozen=True, kw_only=True)
class TransferCanceled(TransferEvent):
    type: ClassVar[str] = "transfer.canceled"
    actor: Actor | None


# --- the aggregate ----------------------------------------------------------------------


@dataclass
class Transfer:
    """One transfer: money from ``source`` to ``destination`` under a stable reference.

    ``events`` holds what happened since the transfer was created or loaded, in
    order; the handler that saves the transfer writes them to the outbox in the
    same transaction and then clears them (:meth:`collect_events`).
    """

    id: str
    tenant: str
    client_id: str
    reference: str
    fingerprint: str
    amount: int
    currency: str
    source: str
    destination: str
    created_at: datetime
    description: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    actor: Actor | None = None
    correlation_id: str | None = None
    consent_id: str | None = None
    status: Status = Status.PENDING
    version: int = 1
    rail_charge_id: str | None = None
    failure_reason: str | None = None
    events: list[TransferEvent] = field(default_factory=list, repr=False)

    @classmethod
    def create(
        cls,
        *,
        tenant: str,
        client_id: str,
        reference: str,
        fingerprint: str,
        request: TransferRequest,
        actor: Actor,
        now: datetime,
        correlation_id: str | None = None,
        consent_id: str | None = None,
    ) -> Transfer:
        """A new pending transfer (version 1) that has recorded ``TransferCreated``;
        ``consent_id`` names the consent that allowed it (when one did)."""
        transfer = cls(
            id=new_transfer_id(),
            tenant=tenant,
            client_id=client_id,
            reference=reference,
            fingerprint=fingerprint,
            amount=request.amount,
            currency=request.currency,
            source=request.source,
            destination=request.destination,
            created_at=now,
            description=request.description,
            metadata=dict(request.metadata),
            actor=actor,
            correlation_id=correlation_id,
            consent_id=consent_id,
        )
        transfer.events.append(
            TransferCreated(
                **transfer._event_fields(),
                source=transfer.source,
                destination=transfer.destination,
                description=transfer.description,
                actor=actor,
                consent_id=consent_id,
            )
        )
        return transfer

    @property
    def saved_version(self) -> int:
        """The version the stored row holds: the one before the recorded changes.

        The store updates the row only while it still holds this version
        (optimistic concurrency); a created transfer has no row yet (0).
        """
        return self.events[0].version - 1 if self.events else self.version

    def submit(self) -> None:
        """Hand the transfer to the rail: ``pending → submitted``."""
        self._move(Status.SUBMITTED)
        self.events.append(TransferSubmitted(**self._event_fields()))

    def settle(self, rail_charge_id: str) -> None:
        """The rail settled it: ``submitted → settled``."""
        self._move(Status.SETTLED)
        self.rail_charge_id = rail_charge_id
        self.events.append(TransferSettled(**self._event_fields(), rail_charge_id=rail_charge_id))

    def fail(self, reason: str) -> None:
        """The rail refused it for good: ``submitted → failed``."""
        self._move(Status.FAILED)
        self.failure_reason = reason
        self.events.append(TransferFailed(**self._event_fields(), reason=reason))

    def cancel(self, actor: Actor) -> None:
        """The client withdrew it before submission: ``pending → canceled``."""
        self._move(Status.CANCELED)
        self.events.append(TransferCanceled(**self._event_fields(), actor=actor))

    def postings(self) -> list[Posting]:
        """The balanced ledger legs of this transfer once settled."""
        return settlement_postings(self.source, self.destination, self.amount, self.currency)

    def collect_events(self) -> list[TransferEvent]:
        """The events recorded since the last collection, in order; clears them."""
        out, self.events = self.events, []
        return out

    def _move(self, wanted: Status) -> None:
        check_transition(self.status, wanted)
        self.status = wanted
        self.version += 1

    def _event_fields(self) -> dict[str, Any]:
        return {
            "transfer_id": self.id,
            "version": self.version,
            "tenant": self.tenant,
            "correlation_id": self.correlation_id,
            "reference": self.reference,
            "amount": self.amount,
            "currency": self.currency,
            "status": self.status,
        }


def fingerprint(method: str, route: str, body: Any) -> str:
    """SHA-256 over method, route template and the RFC 8785 canonical JSON of the body,
    so that field order and whitespace do not matter (docs/design.md §5)."""
    h = hashlib.sha256()
    h.update(method.upper().encode() + b"\x1f" + route.encode() + b"\x1f")
    h.update(canonical_json(body))
    return h.hexdigest()


_SAFE_INT = 2**53 - 1  # integers JCS writes exactly (RFC 8785 §3.2.2.3: IEEE 754 doubles)


def canonical_json(value: Any) -> bytes:
    """The RFC 8785 (JCS) bytes of ``value``.

    For objects, arrays, ASCII strings, booleans, null and integers within ±(2^53 - 1),
    as most transfer bodies are, ``json.dumps`` with sorted keys and no whitespace
    writes the same bytes, in C: sorting by UTF-16 code units is sorting by code point
    for ASCII, both escape exactly ``"``, ``\\`` and the control characters (the same
    short forms, otherwise ``\\u00xx`` in lower case), and such integers print alike.
    Anything else (floats, non-ASCII text) takes the full ``rfc8785`` serialiser."""
    if _plain(value):
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return rfc8785.dumps(value)


def _plain(value: Any) -> bool:
    if value is None or isinstance(value, bool):
        return True
    if isinstance(value, str):
        return value.isascii()
    if isinstance(value, int):
        return -_SAFE_INT <= value <= _SAFE_INT
    if isinstance(value, dict):
        return all(isinstance(k, str) and k.isascii() and _plain(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    return False


def reference_for(secret: bytes, tenant: str, client_id: str, key: str) -> str:
    """The transfer's reference: ``CW`` + base32 of an HMAC-SHA256 over the scoped key.

    34 characters of A-Z and 2-7, so it fits an ISO 20022 ``EndToEndId`` in the
    SEPA character set; the same (tenant, client, key) always gives the same
    reference, across retries, restarts and key expiry.
    """
    msg = "\x1f".join((tenant, client_id, key)).encode()
    digest = hmac.new(secret, msg, hashlib.sha256).digest()[:20]
    ref = "CW" + base64.b32encode(digest).decode().rstrip("=")
    assert len(ref) <= REFERENCE_MAX
    return ref


class KeyState(StrEnum):
    IN_FLIGHT = "in_flight"
    COMPLETED = "completed"


class KeyDecision(StrEnum):
    """What to do with a request whose idempotency key already exists."""

    REPLAY = "replay"  # completed, same fingerprint: answer the stored response
    MISMATCH = "mismatch"  # same key, another request: 422
    IN_FLIGHT = "in_flight"  # the first request is still running: 409 + Retry-After
    RECOVER = "recover"  # in flight for longer than the lock timeout: recover it


def decide(
    state: KeyState, stored_fingerprint: str, fingerprint_: str, age_s: float, lock_timeout_s: float
) -> KeyDecision:
    """The IETF idempotency-key draft's rules for a key seen before."""
    if stored_fingerprint != fingerprint_:
        return KeyDecision.MISMATCH
    if state is KeyState.COMPLETED:
        return KeyDecision.REPLAY
    return KeyDecision.RECOVER if age_s >= lock_timeout_s else KeyDecision.IN_FLIGHT


#: Executor retries towards the rail: the wait after failed attempt n is the n-th step
#: (seconds, ±20 %); a rail's Retry-After is honoured up to 10 s. After the last
#: attempt the job goes back to the consumer, whose infrastructure backoff retries it.
RAIL_RETRY = Backoff.from_schedule(
    (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 2.0, 2.0), jitter=0.2, retry_after_cap=10.0
)


def in_flight_wait(lock_timeout_s: float) -> Backoff:
    """How an intent waits for its idempotency key while another request holds it:
    short steps (the holder usually finishes within milliseconds), bounded just past
    twice the lock timeout, after which a new claim recovers the key."""
    return Backoff(base=0.25, cap=0.25, jitter=0.2, max_attempts=int(lock_timeout_s * 8) + 8)

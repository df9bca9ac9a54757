"""Consents and their rules (pure: no I/O imports).

A consent records what one user agreed to let one client do: purpose, RFC 9396
authorization details, terms version, a human reference, status history with
timestamps and the evidence of the approval. Its life (docs/design.md §7)::

    AwaitingAuthorisation ─approve─▶ Authorised ─consume─▶ Consumed
            │                         │  └────revoke─▶ Revoked
            ├─reject─▶ Rejected       └──expire──▶ Expired
            ├─revoke─▶ Revoked
            └─expire─▶ Expired
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    AWAITING = "AwaitingAuthorisation"
    AUTHORISED = "Authorised"
    CONSUMED = "Consumed"
    REJECTED = "Rejected"
    REVOKED = "Revoked"
    EXPIRED = "Expired"


class ClientStatus(StrEnum):
    """An OAuth client's standing: ``locked`` after repeated failed authentications
    (a secret rotation reactivates it), ``disabled`` by an admin for good."""

    ACTIVE = "active"
    LOCKED = "locked"
    DISABLED = "disabled"


FINAL = frozenset({Status.CONSUMED, Status.REJECTED, Status.REVOKED, Status.EXPIRED})
_ALLOWED: dict[Status, frozenset[Status]] = {
    Status.AWAITING: frozenset(
        {Status.AUTHORISED, Status.REJECTED, Status.REVOKED, Status.EXPIRED}
    ),
    Status.AUTHORISED: frozenset({Status.CONSUMED, Status.REVOKED, Status.EXPIRED}),
}

#: Event each transition records (ce_type on clearway.consent.events.v2).
EVENT_OF = {
    Status.AUTHORISED: "consent.authorised",
    Status.CONSUMED: "consent.consumed",
    Status.REJECTED: "consent.rejected",
    Status.REVOKED: "consent.revoked",
    Status.EXPIRED: "consent.expired",
}


class ConsentError(Exception):
    """A rule of the consent was broken."""


class InvalidTransition(ConsentError):
    def __init__(self, current: Status, target: Status) -> None:
        super().__init__(f"consent is {current}, cannot become {target}")
        self.current = current
        self.target = target


class InvalidAuthorizationDetails(ConsentError):
    """RFC 9396 §5: answered with ``invalid_authorization_details``."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"authorization_details{field}: {reason}")
        self.field = f"authorization_details{field}"
        self.reason = reason


def same_text(given: str, expected: str) -> bool:
    """Constant-time equality of two strings as UTF-8 bytes.

    ``hmac.compare_digest`` raises ``TypeError`` on a ``str`` that is not ASCII; a
    form or cookie value is whatever the caller sent, so it is compared as bytes.
    """
    return hmac.compare_digest(
        given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
    )


def new_id(prefix: str) -> str:
    """A typed, prefixed random id (``cns_…``, ``cl_…``)."""
    return f"{prefix}_{secrets.token_hex(12)}"


# Crockford-like alphabet without look-alikes, for references read over the phone.
_REF_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


def new_reference() -> str:
    """A human reference such as ``CW-7K2M-QX9P``."""
    chars = "".join(secrets.choice(_REF_ALPHABET) for _ in range(8))
    return f"CW-{chars[:4]}-{chars[4:]}"


@dataclass(frozen=True)
class Change:
    status: Status
    at: datetime
    actor: dict[str, Any]
    reason: str | None = None


@dataclass
class Consent:
    id: str
    tenant: str
    client_id: str
    subject: str | None
    purpose: str
    authorization_details: list[dict[str, Any]]
    scopes: list[str]
    terms_version: str
    reference: str
    created_at: datetime
    expires_at: datetime
    status: Status = Status.AWAITING
    version: int = 1
    history: list[Change] = field(default_factory=list)
    evidence: dict[str, Any] | None = None
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list, repr=False)

    @classmethod
    def create(
        cls,
        *,
        tenant: str,
        client_id: str,
        subject: str | None,
        purpose: str,
        authorization_details: list[dict[str, Any]],
        scopes: list[str],
        terms_version: str,
        now: datetime,
        ttl: timedelta,
        actor: dict[str, Any],
    ) -> Consent:
        consent = cls(
            id=new_id("cns"),
            tenant=tenant,
            client_id=client_id,
            subject=subject,
            purpose=purpose,
            authorization_details=validate_authorization_details(authorization_details),
            scopes=scopes,
            terms_version=terms_version,
            reference=new_reference(),
            created_at=now,
            expires_at=now + ttl,
        )
        consent.history.append(Change(Status.AWAITING, now, actor))
        consent.events.append(("consent.created", {"actor": actor}))
        return consent

    @property
    def is_payment(self) -> bool:
        return any(d.get("type") == PAYMENT_INITIATION for d in self.authorization_details)

    @property
    def is_recurring(self) -> bool:
        """A recurring payment consent allows many payments up to its stated maximum,
        so a payment never consumes it (it ends by revocation or expiry)."""
        return any("recurring" in d for d in self.authorization_details)

    def approve(self, subject: str, now: datetime, evidence: dict[str, Any], actor: dict) -> None:
        if self.subject is not None and self.subject != subject:
            raise ConsentError("this consent was created for another user")
        self._check_not_expired(now)
        self._move(Status.AUTHORISED, now, actor)
        self.subject = subject
        self.evidence = evidence

    def reject(self, subject: str, now: datetime, actor: dict[str, Any]) -> None:
        if self.subject is not None and self.subject != subject:
            raise ConsentError("this consent was created for another user")
        self._move(Status.REJECTED, now, actor)
        self.subject = subject

    def revoke(self, now: datetime, actor: dict[str, Any], reason: str | None = None) -> None:
        self._move(Status.REVOKED, now, actor, reason)

    def consume(self, now: datetime, actor: dict[str, Any]) -> None:
        if not self.is_payment or self.is_recurring:
            raise ConsentError("only single payment consents are consumed")
        self._check_not_expired(now)
        self._move(Status.CONSUMED, now, actor)

    def expire(self, now: datetime) -> None:
        if now < self.expires_at:
            raise ConsentError("consent has not expired yet")
        self._move(Status.EXPIRED, now, {"subject": "system:expiry", "client_id": None})

    def usable(self, now: datetime) -> bool:
        return self.status is Status.AUTHORISED and now < self.expires_at

    def _check_not_expired(self, now: datetime) -> None:
        if now >= self.expires_at:
            raise ConsentError("consent has expired")

    def _move(
        self, target: Status, now: datetime, actor: dict[str, Any], reason: str | None = None
    ) -> None:
        if target not in _ALLOWED.get(self.status, frozenset()):
            raise InvalidTransition(self.status, target)
        self.status = target
        self.version += 1
        self.history.append(Change(target, now, actor, reason))
        self.events.append((EVENT_OF[target], {"actor": actor, "reason": reason}))


# --- RFC 9396 authorization details -------------------------------------------------

PAYMENT_INITIATION = "payment_initiation"
_MAX_MINOR_UNITS = 10**15


def validate_authorization_details(details: Any) -> list[dict[str, Any]]:
    """The details in canonical form, or :class:`InvalidAuthorizationDetails` naming the field.

    Only ``payment_initiation`` is known: ``instructedAmount`` (``amount`` in integer
    minor units, ISO 4217 ``currency``) and ``creditorName`` / ``creditorAccount.iban``;
    optionally ``debtorAccount.iban`` (the user's account to pay from) and, for a
    recurring consent, ``recurring.maximumAmount`` (each payment up to it, in the
    instructed currency). Transfers match these (docs/design.md §7).
    """
    if not isinstance(details, list) or not details:
        raise InvalidAuthorizationDetails("", "must be a non-empty JSON array")
    return [_payment(i, d) for i, d in enumerate(details)]


def _payment(i: int, d: Any) -> dict[str, Any]:
    at = f"[{i}]"
    if not isinstance(d, dict):
        raise InvalidAuthorizationDetails(at, "must be an object")
    if d.get("type") != PAYMENT_INITIATION:
        raise InvalidAuthorizationDetails(f"{at}.type", "must be 'payment_initiation'")
    amount = d.get("instructedAmount")
    if not isinstance(amount, dict):
        raise InvalidAuthorizationDetails(f"{at}.instructedAmount", "is required")
    value = amount.get("amount")
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < _MAX_MINOR_UNITS:
        raise InvalidAuthorizationDetails(
            f"{at}.instructedAmount.amount", "must be a positive integer of minor units"
        )
    currency = amount.get("currency")
    if not (isinstance(currency, str) and len(currency) == 3 and currency.isalpha()):
        raise InvalidAuthorizationDetails(
            f"{at}.instructedAmount.currency", "must be an ISO 4217 code"
        )
    creditor = d.get("creditorName")
    if not isinstance(creditor, str) or not 0 < len(creditor.strip()) <= 140:
        raise InvalidAuthorizationDetails(f"{at}.creditorName", "is required (≤ 140 chars)")
    out: dict[str, Any] = {
        "type": PAYMENT_INITIATION,
        "instructedAmount": {"amount": value, "currency": currency.upper()},
        "creditorName": creditor.strip(),
        "creditorAccount": {"iban": _iban(d.get("creditorAccount"), f"{at}.creditorAccount")},
    }
    if d.get("debtorAccount") is not None:
        out["debtorAccount"] = {"iban": _iban(d["debtorAccount"], f"{at}.debtorAccount")}
    if d.get("recurring") is not None:
        out["recurring"] = _recurring(d["recurring"], f"{at}.recurring", value, currency.upper())
    if isinstance(d.get("remittanceInformation"), str):
        out["remittanceInformation"] = d["remittanceInformation"][:140]
    return out


def _iban(account: Any, at: str) -> str:
    iban = account.get("iban") if isinstance(account, dict) else None
    if not (
        isinstance(iban, str) and 15 <= len(iban.replace(" ", "")) <= 34 and iban[:2].isalpha()
    ):
        raise InvalidAuthorizationDetails(f"{at}.iban", "must be an IBAN")
    return iban.replace(" ", "").upper()


def _recurring(recurring: Any, at: str, instructed: int, currency: str) -> dict[str, Any]:
    """``{"maximumAmount": {"amount", "currency"}}``: at least the instructed amount, in
    the instructed currency."""
    cap = recurring.get("maximumAmount") if isinstance(recurring, dict) else None
    amount = cap.get("amount") if isinstance(cap, dict) else None
    if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount < _MAX_MINOR_UNITS:
        raise InvalidAuthorizationDetails(
            f"{at}.maximumAmount.amount", "must be a positive integer of minor units"
        )
    if amount < instructed:
        raise InvalidAuthorizationDetails(
            f"{at}.maximumAmount.amount", "must be at least the instructed amount"
        )
    if not isinstance(cap, dict) or str(cap.get("currency", "")).upper() != currency:
        raise InvalidAuthorizationDetails(
            f"{at}.maximumAmount.currency", "must be the instructed currency"
        )
    return {"maximumAmount": {"amount": amount, "currency": currency}}

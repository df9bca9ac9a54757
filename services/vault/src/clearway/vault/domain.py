"""The vault's rules: which card numbers are accepted, what a token looks like, and the
keyed fingerprint that lets a tenant deduplicate cards without seeing them.

Pure: no I/O (docs/design.md §9). The card number itself only ever leaves this module
as the plaintext handed to the envelope, and as the detokenized value for the rail.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import string
from dataclasses import dataclass
from datetime import date

from clearway.shared.cards import luhn_valid

#: Tokens are ``tok_`` and 24 letters. No digits on purpose: a token can never look
#: like (part of) a card number to a scanner of logs, tables or topics.
TOKEN = re.compile(r"^tok_[A-Za-z]{24}$")
_TOKEN_ALPHABET = string.ascii_letters
#: Separators a person may type between digit groups; anything else is refused.
_SEPARATORS = re.compile(r"[ \-]")
#: The brands the sandbox rail accepts, by IIN range (ISO/IEC 7812) and lengths.
SUPPORTED_BRANDS = ("visa", "mastercard", "amex")


class InvalidCard(ValueError):
    """A card the vault refuses; ``field`` names the request field at fault."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def brand_of(digits: str) -> str | None:
    """The brand of a card number by its IIN prefix and length; ``None`` when the
    vault does not support it."""
    n = len(digits)
    if digits.startswith("4") and n in (13, 16, 19):
        return "visa"
    if n == 16 and (51 <= int(digits[:2]) <= 55 or 2221 <= int(digits[:4]) <= 2720):
        return "mastercard"
    if n == 15 and digits[:2] in ("34", "37"):
        return "amex"
    return None


def normalise_number(text: str) -> str:
    """The digits of a card number as typed (single spaces or dashes between groups
    allowed); :class:`InvalidCard` on ``number`` when it is not 13-19 digits, fails
    the Luhn check or is of an unsupported brand. Messages never echo the number."""
    digits = _SEPARATORS.sub("", text)
    if not digits.isascii() or not digits.isdigit():
        raise InvalidCard("number", "must be digits, optionally grouped by spaces or dashes")
    if not 13 <= len(digits) <= 19:
        raise InvalidCard("number", "must be 13 to 19 digits long")
    if not luhn_valid(digits):
        raise InvalidCard("number", "fails the Luhn check digit (mistyped?)")
    if brand_of(digits) is None:
        raise InvalidCard(
            "number", f"unsupported card brand (supported: {', '.join(SUPPORTED_BRANDS)})"
        )
    return digits


def check_expiry(month: int, year: int, today: date) -> None:
    """A card is valid through the last day of its expiry month."""
    if not 1 <= month <= 12:
        raise InvalidCard("exp_month", "must be 1 to 12")
    if not 2000 <= year <= 2099:
        raise InvalidCard("exp_year", "must be a four-digit year")
    if (year, month) < (today.year, today.month):
        raise InvalidCard("exp_year", "the card has expired")


def bin_of(digits: str) -> str:
    """The issuer identification number shown with a token: the first 8 digits of a
    16-19 digit number, the first 6 of a shorter one (PCI DSS 3.4 truncation)."""
    return digits[:8] if len(digits) >= 16 else digits[:6]


def new_token() -> str:
    """A fresh random token id (143 bits)."""
    return "tok_" + "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(24))


def fingerprint(key: bytes, tenant: str, digits: str) -> str:
    """HMAC-SHA256 of the card number under the vault's fingerprint key, bound to the
    tenant: equal for the same card of one tenant, unrelated across tenants, and of
    no use for guessing numbers without the key (RFC 2104)."""
    mac = hmac.new(key, f"{tenant}\x00{digits}".encode(), hashlib.sha256).digest()
    return "fp_" + base64.urlsafe_b64encode(mac[:18]).decode()


@dataclass(frozen=True)
class CardSecret:
    """What is sealed: the number and the holder's name (personal data)."""

    number: str
    holder_name: str | None = None

    def to_bytes(self) -> bytes:
        return json.dumps({"number": self.number, "holder_name": self.holder_name}).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> CardSecret:
        doc = json.loads(raw)
        return cls(doc["number"], doc.get("holder_name"))


@dataclass(frozen=True)
class Card:
    """A tokenized card as the vault stores it in the clear (no number)."""

    token: str
    tenant: str
    fingerprint: str
    brand: str
    bin: str
    last4: str
    exp_month: int
    exp_year: int


def new_card(
    tenant: str,
    number: str,
    exp_month: int,
    exp_year: int,
    *,
    fingerprint_key: bytes,
    today: date,
) -> tuple[Card, str]:
    """Validate a card and describe it: ``(card, digits)``; :class:`InvalidCard` naming
    the field otherwise. The token is new; the store keeps the tenant's existing one
    when the fingerprint is already known."""
    digits = normalise_number(number)
    check_expiry(exp_month, exp_year, today)
    brand = brand_of(digits)
    assert brand is not None  # normalise_number refused the others
    card = Card(
        token=new_token(),
        tenant=tenant,
        fingerprint=fingerprint(fingerprint_key, tenant, digits),
        brand=brand,
        bin=bin_of(digits),
        last4=digits[-4:],
        exp_month=exp_month,
        exp_year=exp_year,
    )
    return card, digits

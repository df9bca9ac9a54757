"""The sandbox rail's rules: charges keyed by reference, declines, and fault plans.

Pure: no I/O. The rail stands in for an external bank; it settles a charge at
once unless the source account is one the sandbox declines.
"""

from __future__ import annotations

import random
import re
import uuid
from dataclasses import dataclass
from enum import StrEnum

from clearway.shared.cards import luhn_valid

#: ISO 20022 EndToEndId: at most 35 characters of the SEPA character set.
REFERENCE = re.compile(r"[A-Za-z0-9/?:().,'+ -]{1,35}")
#: Sandbox convention: a source account whose id starts with this is declined.
DECLINED_SOURCE_PREFIX = "acct_nsf"


class ChargeStatus(StrEnum):
    SETTLED = "settled"
    DECLINED = "declined"


class InvalidCharge(ValueError):
    """A charge request that breaks the rail's rules; ``field`` names the culprit."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class CardUsed:
    """What the rail keeps of a card it charged: never the number (docs/design.md §9)."""

    brand: str
    last4: str


@dataclass(frozen=True)
class Charge:
    reference: str
    charge_id: str
    amount: int
    currency: str
    source: str
    destination: str
    status: ChargeStatus
    card: CardUsed | None = None


def card_used(number: str, brand: str) -> CardUsed:
    """Check a card number as a scheme would (13-19 digits, Luhn) and keep only its
    brand and last four digits; :class:`InvalidCharge` on ``card.number`` otherwise."""
    if not (13 <= len(number) <= 19 and luhn_valid(number)):
        raise InvalidCharge("card.number", "must be a 13-19 digit card number passing Luhn")
    return CardUsed(brand, number[-4:])


def new_charge(
    reference: str,
    amount: int,
    currency: str,
    source: str,
    destination: str,
    card: CardUsed | None = None,
) -> Charge:
    """A fresh charge; settled at once unless the sandbox declines the source. A card
    charge's ``source`` is the payer's card token, ``card`` what the rail keeps of it."""
    if not REFERENCE.fullmatch(reference):
        raise InvalidCharge("reference", "must be 1-35 characters of the SEPA character set")
    if amount <= 0:
        raise InvalidCharge("amount", "must be a positive integer in minor units")
    status = (
        ChargeStatus.DECLINED if source.startswith(DECLINED_SOURCE_PREFIX) else ChargeStatus.SETTLED
    )
    return Charge(
        reference, f"ch_{uuid.uuid4().hex}", amount, currency, source, destination, status, card
    )


class FaultAction(StrEnum):
    NONE = "none"
    ERROR = "error"  # answer 503 before doing anything
    LOSE_RESPONSE = "lose_response"  # do the work, commit, then drop the connection
    CRASH = "crash"  # do the work, commit, then exit the process


@dataclass(frozen=True)
class FaultPlan:
    """What the rail does wrong, switched per test over HTTP (``PUT /v1/faults``).

    Rates are probabilities per charge request; latency is added to every one.
    """

    latency_ms: int = 0
    error_rate: float = 0.0
    lose_response_rate: float = 0.0
    crash_rate: float = 0.0

    def __post_init__(self) -> None:
        for name in ("error_rate", "lose_response_rate", "crash_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise InvalidCharge(name, "must be between 0 and 1")
        if not 0 <= self.latency_ms <= 60_000:
            raise InvalidCharge("latency_ms", "must be between 0 and 60000")

    def draw(self, rng: random.Random) -> FaultAction:
        """The fault for one request (at most one)."""
        roll = rng.random()
        for action, rate in (
            (FaultAction.ERROR, self.error_rate),
            (FaultAction.LOSE_RESPONSE, self.lose_response_rate),
            (FaultAction.CRASH, self.crash_rate),
        ):
            if roll < rate:
                return action
            roll -= rate
        return FaultAction.NONE

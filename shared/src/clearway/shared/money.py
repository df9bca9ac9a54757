"""Money in minor units and as a decimal string, per ISO 4217 minor units.

Transfers and events carry an integer of minor units (cents) and a currency;
the public API from ``2026-12-01`` renders money as ``{"value": "125.00",
"currency": "EUR"}`` (docs/design.md §10). The conversion lives here once.
"""

from __future__ import annotations

from decimal import Decimal

#: ISO 4217 currencies whose minor unit is not 1/100; every other code has two digits.
_EXPONENTS = {
    "BHD": 3, "CLP": 0, "IQD": 3, "ISK": 0, "JOD": 3, "JPY": 0, "KRW": 0, "KWD": 3,
    "LYD": 3, "OMR": 3, "TND": 3, "UGX": 0, "VND": 0, "XAF": 0, "XOF": 0,
}  # fmt: skip


def exponent(currency: str) -> int:
    """Digits after the decimal point in ``currency`` (ISO 4217 minor unit)."""
    return _EXPONENTS.get(currency, 2)


def to_decimal_string(minor: int, currency: str) -> str:
    """``12500`` EUR → ``"125.00"``; ``500`` JPY → ``"500"`` (exact, no float)."""
    digits = exponent(currency)
    return str((Decimal(minor) / (Decimal(10) ** digits)).quantize(Decimal(1).scaleb(-digits)))


def to_minor(value: str, currency: str) -> int:
    """``"125.00"`` EUR → ``12500``; raises ``ValueError`` for a value with more
    precision than the currency's minor unit or that is not a decimal number."""
    try:
        scaled = Decimal(value).scaleb(exponent(currency))
    except ArithmeticError:  # InvalidOperation, Overflow
        raise ValueError(f"{value!r} is not a decimal amount") from None
    if not scaled.is_finite():
        raise ValueError(f"{value!r} is not a decimal amount")
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{value!r} has more digits than {currency} allows")
    return int(scaled)


def money(minor: int, currency: str) -> dict[str, str]:
    """The money object of the public API: ``{"value": "125.00", "currency": "EUR"}``."""
    return {"value": to_decimal_string(minor, currency), "currency": currency}

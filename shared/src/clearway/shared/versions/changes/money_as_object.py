"""``2026-12-01``: money is an object ``{"value": "125.00", "currency": "EUR"}``.

Until ``2026-11-01`` an amount was an integer of minor units with the
currency in a sibling field, which every client had to scale by the
currency's ISO 4217 minor unit (two digits for EUR, none for JPY) and which
left amounts without a currency wherever the sibling was not copied along.
A decimal string keeps precision exact in every JSON parser (no float), and
the currency travels with the value.
"""

from __future__ import annotations

from typing import Any

from clearway.shared.money import money, to_minor
from clearway.shared.versions.change import Document, VersionChange

DESCRIPTION = """\
Money is an object: `"amount": {"value": "125.00", "currency": "EUR"}` replaces
`"amount": 12500` with a sibling `"currency": "EUR"`. `value` is a decimal string
with exactly the currency's ISO 4217 minor-unit digits (`"500"` for JPY); the
top-level `currency` field is gone. This applies to every HTTP response that
carries an amount (transfers: create, read, list, cancel) and to webhook
payloads (`transfer.*` events).

**To upgrade:** read `amount.value` as a decimal (never a float) and
`amount.currency` instead of `amount` (minor units) and `currency`; then send
`Clearway-Version: 2026-12-01` (or ask for your client's pin to be moved).
Request bodies are unchanged: `POST /v1/transfers` still takes `amount` in minor
units and `currency`.
"""


def _is_currency(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 3 and value.isalpha() and value.isupper()


def upgrade(doc: Document) -> Document:
    """``{"amount": 12500, "currency": "EUR"}`` → ``{"amount": {"value": "125.00", …}}``."""
    if isinstance(doc, list):
        return [upgrade(item) for item in doc]
    if not isinstance(doc, dict):
        return doc
    out = {key: upgrade(value) for key, value in doc.items()}
    amount, currency = doc.get("amount"), doc.get("currency")
    if type(amount) is int and isinstance(currency, str) and _is_currency(currency):
        out["amount"] = money(amount, currency)
        del out["currency"]
    return out


def downgrade(doc: Document) -> Document:
    """``{"amount": {"value": "125.00", "currency": "EUR"}}`` → ``{"amount": 12500, …}``."""
    if isinstance(doc, list):
        return [downgrade(item) for item in doc]
    if not isinstance(doc, dict):
        return doc
    out = {key: downgrade(value) for key, value in doc.items()}
    amount = doc.get("amount")
    if (
        isinstance(amount, dict)
        and set(amount) == {"value", "currency"}
        and isinstance(amount["value"], str)
        and _is_currency(amount["currency"])
    ):
        out["amount"] = to_minor(amount["value"], amount["currency"])
        out["currency"] = amount["currency"]
    return out


CHANGE = VersionChange(
    version="2026-12-01",
    title="Money as an object",
    description=DESCRIPTION,
    upgrade=upgrade,
    downgrade=downgrade,
)

"""``2026-12-01``: money is an object ``{"value": "125.00", "currency": "EUR"}``.

Until ``2026-11-01`` an amount was an integer of minor units with the
currency in a sibling field, which every client had to scale by the
currency's ISO 4217 minor unit (two digits for EUR, none for JPY) and which
left amounts without a currency wherever the sibling was not copied along.
A decimal string keeps precision exact in every JSON parser (no float), and
the currency travels with the value.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

from clearway.shared.money import money, to_minor
from clearway.shared.versions.change import Document, VersionChange

DESCRIPTION = """\
Money is an object: `"amount": {"value": "125.00", "currency": "EUR"}` replaces
`"amount": 12500` with a sibling `"currency": "EUR"`. `value` is a decimal string
with exactly the currency's ISO 4217 minor-unit digits (`"500"` for JPY); the
top-level `currency` field is gone. This applies to transfers in HTTP
responses (create, read, list, cancel) and to the `data` of `transfer.*`
webhook payloads. Amounts nested in other objects keep their shape: a consent's
`instructedAmount`, the breaks of `transfer.reconciled`.

**To upgrade:** read `amount.value` as a decimal (never a float) and
`amount.currency` instead of `amount` (minor units) and `currency`; then send
`Clearway-Version: 2026-12-01` (or ask for your client's pin to be moved).
Request bodies are unchanged: `POST /v1/transfers` still takes `amount` in minor
units and `currency`.
"""


def _is_currency(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 3 and value.isalpha() and value.isupper()


def _resources(doc: Document, convert: Callable[[dict[str, Any]], dict[str, Any]]) -> Document:
    """``convert`` applied to the resource a document is: the object itself, or each item
    of a list body's ``data``. Nested amounts (a consent's ``instructedAmount``, the
    breaks of a reconciliation) are other resources' fields and keep their shape."""
    if not isinstance(doc, dict):
        return doc
    out = convert(doc)
    items = out.get("data")
    if isinstance(items, list):
        out = {**out, "data": [convert(i) if isinstance(i, dict) else i for i in items]}
    return out


def _to_object(resource: dict[str, Any]) -> dict[str, Any]:
    amount, currency = resource.get("amount"), resource.get("currency")
    if type(amount) is not int or not isinstance(currency, str) or not _is_currency(currency):
        return resource
    out = {k: v for k, v in resource.items() if k != "currency"}
    out["amount"] = money(amount, currency)
    return out


def _to_minor_units(resource: dict[str, Any]) -> dict[str, Any]:
    amount = resource.get("amount")
    if not (
        isinstance(amount, dict)
        and set(amount) == {"value", "currency"}
        and isinstance(amount["value"], str)
        and _is_currency(amount["currency"])
    ):
        return resource
    return {
        **resource,
        "amount": to_minor(amount["value"], amount["currency"]),
        "currency": amount["currency"],
    }


def upgrade(doc: Document) -> Document:
    """``{"amount": 12500, "currency": "EUR"}`` → ``{"amount": {"value": "125.00", …}}``."""
    return _resources(doc, _to_object)


def downgrade(doc: Document) -> Document:
    """``{"amount": {"value": "125.00", "currency": "EUR"}}`` → ``{"amount": 12500, …}``."""
    return _resources(doc, _to_minor_units)


#: The OpenAPI component of the money object (``clearway.shared.http.Money``).
MONEY_SCHEMA = "#/components/schemas/Money"
_MINOR_UNITS = {
    "type": "integer",
    "description": "Minor units of `currency` (ISO 4217 minor unit: cents for EUR).",
}
_CURRENCY = {"type": "string", "pattern": "^[A-Z]{3}$", "description": "ISO 4217 code."}


def downgrade_schema(openapi: Document) -> Document:
    """An OpenAPI document of ``2026-12-01`` as of ``2026-11-01``: every component
    schema whose ``amount`` is the money object gets minor units and a sibling
    ``currency`` (its examples downgraded like responses); ``Money`` goes once unused.

    The resources with such an ``amount`` are the ones ``downgrade`` converts (today
    transfers, alone or as list items); nested amounts are other schemas."""
    doc = copy.deepcopy(openapi)
    schemas = doc.get("components", {}).get("schemas", {})
    for schema in schemas.values():
        properties = schema.get("properties", {})
        amount = properties.get("amount")
        if not isinstance(amount, dict) or amount.get("$ref") != MONEY_SCHEMA:
            continue
        schema["properties"] = _after_amount(properties, _MINOR_UNITS, _CURRENCY)
        if "amount" in schema.get("required", []):
            schema["required"] = list(_after_amount(dict.fromkeys(schema["required"]), 1, 1))
        if "examples" in schema:
            schema["examples"] = [downgrade(e) for e in schema["examples"]]
    if json.dumps(doc).count(f'"{MONEY_SCHEMA}"') == 0:
        schemas.pop("Money", None)
    return doc


def _after_amount(fields: dict[str, Any], amount: Any, currency: Any) -> dict[str, Any]:
    """``fields`` in their order with ``amount`` replaced and ``currency`` right after it."""
    out: dict[str, Any] = {}
    for name, value in fields.items():
        if name == "amount":
            out["amount"], out["currency"] = amount, currency
        elif name != "currency":
            out[name] = value
    return out


CHANGE = VersionChange(
    version="2026-12-01",
    title="Money as an object",
    description=DESCRIPTION,
    upgrade=upgrade,
    downgrade=downgrade,
    downgrade_schema=downgrade_schema,
)

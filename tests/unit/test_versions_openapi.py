"""One OpenAPI document per dated version (docs/design.md §10): the money step's schema
transform on its own, the version, header and deprecation every document states, and
the two published transfer documents differ exactly in how money is shaped."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from clearway.shared.versions import CURRENT_VERSION, INITIAL_VERSION, SUNSETS
from clearway.shared.versions.changes.money_as_object import MONEY_SCHEMA, downgrade_schema
from clearway.shared.versions.openapi import HEADER, PARAMETER, for_version

ROOT = Path(__file__).resolve().parents[2]
MONEY = {
    "type": "object",
    "properties": {"value": {"type": "string"}, "currency": {"type": "string"}},
    "required": ["value", "currency"],
}
CONSENT = {"type": "object", "properties": {"instructedAmount": {"type": "object"}}}


def document(**schemas: dict) -> dict:
    return {
        "openapi": "3.1.0",
        "info": {"title": "t", "version": "1.0.0"},
        "paths": {
            "/v1/things": {
                "get": {"responses": {}},
                "post": {"parameters": [{"name": "x", "in": "query"}], "responses": {}},
            }
        },
        "components": {"schemas": {"Money": MONEY, "Consent": CONSENT, **schemas}},
    }


def thing() -> dict:
    return {
        "type": "object",
        "properties": {"id": {"type": "string"}, "amount": {"$ref": MONEY_SCHEMA}},
        "required": ["id", "amount"],
        "examples": [{"id": "tr_1", "amount": {"value": "125.00", "currency": "EUR"}}],
    }


def test_money_step_gives_a_money_amount_minor_units_and_a_currency():
    new = document(Thing=thing())
    before = copy.deepcopy(new)
    old = downgrade_schema(new)
    assert new == before  # the input is not changed
    schema = old["components"]["schemas"]["Thing"]
    assert list(schema["properties"]) == ["id", "amount", "currency"]
    assert schema["properties"]["amount"]["type"] == "integer"
    assert schema["properties"]["currency"]["pattern"] == "^[A-Z]{3}$"
    assert schema["required"] == ["id", "amount", "currency"]
    assert schema["examples"] == [{"id": "tr_1", "amount": 12500, "currency": "EUR"}]
    assert "Money" not in old["components"]["schemas"]  # no longer used
    assert old["components"]["schemas"]["Consent"] == CONSENT  # other amounts keep their shape
    assert old["paths"] == new["paths"]


def test_money_stays_while_another_schema_still_refers_to_it():
    total = {"type": "object", "properties": {"total": {"$ref": MONEY_SCHEMA}}}
    old = downgrade_schema(document(Thing=thing(), Report=total))
    assert old["components"]["schemas"]["Money"] == MONEY
    assert old["components"]["schemas"]["Report"] == total


def test_each_document_states_its_version_and_header_and_a_deprecation_with_its_sunset():
    new = document(Thing=thing())
    for version in (INITIAL_VERSION, CURRENT_VERSION):
        doc = for_version(new, version)
        assert doc["info"]["version"] == version
        parameter = doc["components"]["parameters"][PARAMETER]
        assert (parameter["name"], parameter["in"]) == (HEADER, "header")
        assert parameter["required"] is False
        assert parameter["schema"]["enum"] == [version]
        for operation in doc["paths"]["/v1/things"].values():
            assert {"$ref": f"#/components/parameters/{PARAMETER}"} in operation["parameters"]
        assert doc["paths"]["/v1/things"]["post"]["parameters"][0]["name"] == "x"
    deprecated = for_version(new, INITIAL_VERSION)["info"]
    assert deprecated["x-deprecated"] is True
    assert deprecated["x-sunset"] == SUNSETS[INITIAL_VERSION].isoformat()
    assert SUNSETS[INITIAL_VERSION].isoformat() in deprecated["description"]
    current = for_version(new, CURRENT_VERSION)
    assert "x-deprecated" not in current["info"]
    assert current["components"]["schemas"] == new["components"]["schemas"]


def test_the_two_transfer_documents_differ_exactly_in_the_money_shape():
    old, new = (
        json.loads((ROOT / "docs" / "openapi" / "transfer" / f"{v}.json").read_text())
        for v in (INITIAL_VERSION, CURRENT_VERSION)
    )
    assert old["paths"] == new["paths"]
    old_schemas, new_schemas = old["components"].pop("schemas"), new["components"].pop("schemas")
    assert old["components"].pop("parameters") != new["components"].pop("parameters")  # enum
    assert old["components"] == new["components"]
    assert set(new_schemas) - set(old_schemas) == {"Money"}
    changed = {n for n, s in old_schemas.items() if s != new_schemas[n]}
    assert changed == {"Transfer"}
    was, now = old_schemas["Transfer"], new_schemas["Transfer"]
    assert now["properties"]["amount"] == {"$ref": MONEY_SCHEMA}
    assert "currency" not in now["properties"]
    assert was["properties"]["amount"]["type"] == "integer"
    assert was["properties"]["currency"]["type"] == "string"
    assert {k: v for k, v in was["properties"].items() if k not in ("amount", "currency")} == {
        k: v for k, v in now["properties"].items() if k != "amount"
    }
    assert was["required"] == [*now["required"][:4], "currency", *now["required"][4:]]
    assert was["examples"][0]["amount"] == 12500
    assert now["examples"][0]["amount"] == {"value": "125.00", "currency": "EUR"}
    # list items are transfers: the list schema itself is the same in both
    assert old_schemas["TransferList"]["properties"]["data"]["items"] == {
        "$ref": "#/components/schemas/Transfer"
    }

"""The schema registry: loading schemas/, validating payloads, the JSON view."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from clearway.shared.schemas import (
    SCHEMAS_DIR_ENV,
    SchemaLoadError,
    SchemaRegistry,
    SchemaValidationError,
    UnknownSchemaError,
    avro_to_json_schema,
    default_registry,
)

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "schemas" / "platform" / "platform.test_event"


def write(root: Path, relative: str, content: dict[str, Any] | str) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def record(name: str, fields: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"type": "record", "name": name, "doc": "Test.", "fields": fields, **extra}


@pytest.fixture
def registry() -> SchemaRegistry:
    return SchemaRegistry.load(REPO)


@pytest.fixture
def nested(tmp_path: Path) -> SchemaRegistry:
    payer = record("Payer", [{"name": "account", "type": "long"}])
    line = record("Line", [{"name": "sku", "type": "string"}, {"name": "qty", "type": "int"}])
    schema = record(
        "TransferSettledV1",
        [
            {"name": "id", "type": "string"},
            {"name": "payer", "type": payer},
            {"name": "lines", "type": {"type": "array", "items": line}},
            {
                "name": "fee",
                "type": [
                    "null",
                    {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2},
                ],
                "default": None,
            },
        ],
        namespace="clearway.transfer",
    )
    write(tmp_path, "schemas/transfer/transfer.settled/v1.avsc", schema)
    return SchemaRegistry.load(tmp_path)


def settled(**overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "id": "tr_1",
        "payer": {"account": 42},
        "lines": [{"sku": "a", "qty": 1}],
    }
    return {**payload, **overrides}


def test_the_sample_schema_is_found_by_event_type_and_major(registry: SchemaRegistry) -> None:
    schema = registry.get("platform.test_event", 1)
    assert schema.domain == "platform"
    assert schema.avro["name"] == "PlatformTestEventV1"


def test_dataschema_is_the_cloudevents_path_without_extension(registry: SchemaRegistry) -> None:
    schema = registry.get("platform.test_event", 1)
    assert schema.dataschema == "schemas/platform/platform.test_event/v1"


def test_an_unknown_event_type_or_major_is_a_lookup_error(registry: SchemaRegistry) -> None:
    with pytest.raises(UnknownSchemaError):
        registry.get("platform.test_event", 9)
    with pytest.raises(LookupError):
        registry.get("nobody.knows", 1)


def test_validation_fills_in_the_default_of_an_absent_optional_field(
    registry: SchemaRegistry,
) -> None:
    payload = {"id": "evt_1", "amount": 1250}
    completed = registry.validate("platform.test_event", 1, payload)
    assert completed == {"id": "evt_1", "amount": 1250, "note": None}
    assert payload == {"id": "evt_1", "amount": 1250}


def test_validation_names_the_field_of_the_wrong_type(registry: SchemaRegistry) -> None:
    with pytest.raises(SchemaValidationError) as caught:
        registry.validate("platform.test_event", 1, {"id": "evt_1", "amount": "12.50"})
    assert caught.value.field_path == "amount"
    assert str(caught.value) == (
        "platform.test_event v1: field 'amount' expected long, got str '12.50'"
    )


def test_validation_names_a_missing_required_field(registry: SchemaRegistry) -> None:
    with pytest.raises(SchemaValidationError) as caught:
        registry.validate("platform.test_event", 1, {"amount": 1})
    assert (caught.value.field_path, caught.value.reason) == ("id", "is required but missing")


def test_validation_refuses_a_field_the_schema_does_not_declare(
    registry: SchemaRegistry,
) -> None:
    with pytest.raises(SchemaValidationError) as caught:
        registry.validate("platform.test_event", 1, {"id": "e", "amount": 1, "pan": "4111"})
    assert caught.value.field_path == "pan"


def test_validation_refuses_null_for_a_required_field(registry: SchemaRegistry) -> None:
    with pytest.raises(SchemaValidationError) as caught:
        registry.validate("platform.test_event", 1, {"id": None, "amount": 1})
    assert caught.value.field_path == "id"
    assert "must not be null" in caught.value.reason


def test_validation_names_the_path_of_a_nested_field(nested: SchemaRegistry) -> None:
    with pytest.raises(SchemaValidationError) as caught:
        nested.validate("transfer.settled", 1, settled(payer={"account": "x"}))
    assert caught.value.field_path == "payer.account"


def test_validation_names_the_path_inside_an_array(nested: SchemaRegistry) -> None:
    with pytest.raises(SchemaValidationError) as caught:
        nested.validate("transfer.settled", 1, settled(lines=[{"sku": "a"}]))
    assert caught.value.field_path == "lines[0].qty"
    with pytest.raises(SchemaValidationError) as caught:
        nested.validate("transfer.settled", 1, settled(lines=[{"sku": "a", "qty": "1"}]))
    assert caught.value.field_path == "lines[].qty"


def test_a_decimal_travels_as_a_string(nested: SchemaRegistry) -> None:
    completed = nested.validate("transfer.settled", 1, settled(fee="1.25"))
    assert completed["fee"] == "1.25"
    with pytest.raises(SchemaValidationError) as caught:
        nested.validate("transfer.settled", 1, settled(fee="lots"))
    assert caught.value.field_path == "fee"
    with pytest.raises(SchemaValidationError, match="2 after the point"):
        nested.validate("transfer.settled", 1, settled(fee="1.255"))


def test_the_catalog_lists_each_event_type_with_its_versions(tmp_path: Path) -> None:
    directory = "schemas/platform/platform.test_event"
    for major in (1, 2):
        write(tmp_path, f"{directory}/v{major}.avsc", (SAMPLE / "v1.avsc").read_text())
    write(tmp_path, f"{directory}/CHANGELOG.md", "## v1\n\n- First.\n\n## v2\n\n- Second.\n")
    [info] = SchemaRegistry.load(tmp_path).event_types()
    assert (info.event_type, info.domain, info.versions) == (
        "platform.test_event",
        "platform",
        (1, 2),
    )
    assert info.doc.startswith("A small event")
    assert info.json_schema["title"] == "PlatformTestEventV1"
    assert "## v2" in info.changelog


def test_the_sample_catalog_entry_carries_its_changelog(registry: SchemaRegistry) -> None:
    [info] = [i for i in registry.event_types() if i.event_type == "platform.test_event"]
    assert "## v1" in info.changelog


def test_a_schema_that_is_not_valid_avro_fails_to_load(tmp_path: Path) -> None:
    write(tmp_path, "schemas/a/a.b/v1.avsc", {"type": "record", "name": "X", "fields": [{}]})
    with pytest.raises(SchemaLoadError, match=r"v1\.avsc"):
        SchemaRegistry.load(tmp_path)


def test_files_that_are_not_major_versions_are_ignored(tmp_path: Path) -> None:
    sample = (SAMPLE / "v1.avsc").read_text()
    write(tmp_path, "schemas/platform/platform.test_event/v1.avsc", sample)
    write(tmp_path, "schemas/platform/platform.test_event/history/v1/old.avsc", sample)
    write(tmp_path, "schemas/platform/platform.test_event/v1.draft.avsc", "{")
    assert [s.major for s in SchemaRegistry.load(tmp_path).schemas()] == [1]


@pytest.fixture
def schemas_dir_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    write(tmp_path, "platform/platform.test_event/v1.avsc", (SAMPLE / "v1.avsc").read_text())
    monkeypatch.setenv(SCHEMAS_DIR_ENV, str(tmp_path))
    default_registry.cache_clear()
    yield tmp_path
    default_registry.cache_clear()


def test_the_default_registry_honours_the_environment(schemas_dir_env: Path) -> None:
    assert default_registry().schemas_dir == schemas_dir_env
    assert default_registry() is default_registry()


def test_the_default_registry_finds_the_repository_schemas() -> None:
    default_registry.cache_clear()
    try:
        assert default_registry().get("platform.test_event", 1).path == SAMPLE / "v1.avsc"
    finally:
        default_registry.cache_clear()


# --- the JSON Schema view ------------------------------------------------------------------


def test_the_json_view_of_the_sample_schema() -> None:
    view = avro_to_json_schema(json.loads((SAMPLE / "v1.avsc").read_text()))
    assert view["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert view["title"] == "PlatformTestEventV1"
    assert view["type"] == "object"
    assert view["required"] == ["id", "amount"]
    assert view["additionalProperties"] is True
    properties = view["properties"]
    assert properties["id"]["type"] == "string"
    assert properties["amount"]["type"] == "integer"
    assert properties["note"]["type"] == ["string", "null"]
    assert properties["note"]["default"] is None


def test_the_committed_json_view_is_the_generated_one(registry: SchemaRegistry) -> None:
    committed = json.loads((SAMPLE / "v1.json").read_text())
    assert committed == registry.get("platform.test_event", 1).json_schema()


def test_the_json_view_accepts_valid_payloads_and_fields_added_later(
    registry: SchemaRegistry,
) -> None:
    view = registry.get("platform.test_event", 1).json_schema()
    jsonschema.Draft202012Validator.check_schema(view)
    validator = jsonschema.Draft202012Validator(view)
    assert validator.is_valid({"id": "e", "amount": 5, "note": None, "added_in_v1_1": True})
    assert not validator.is_valid({"id": "e", "amount": "5"})
    assert not validator.is_valid({"amount": 5})


def test_a_timestamp_is_an_integer_and_a_decimal_a_string_in_json() -> None:
    view = avro_to_json_schema(
        record(
            "X",
            [
                {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
                {
                    "name": "rate",
                    "type": {"type": "bytes", "logicalType": "decimal", "precision": 5, "scale": 2},
                },
                {"name": "ref", "type": {"type": "string", "logicalType": "uuid"}},
            ],
        )
    )
    at, rate, ref = (view["properties"][k] for k in ("at", "rate", "ref"))
    assert at["type"] == "integer" and "format" not in at
    assert "Milliseconds since the Unix epoch" in at["description"]
    assert rate["type"] == "string"
    validator = jsonschema.Draft202012Validator(rate)
    assert validator.is_valid("123.45") and not validator.is_valid("1234.5")
    assert ref == {"type": "string", "format": "uuid"}


def test_enums_arrays_maps_and_nullable_records_in_json() -> None:
    status = {"type": "enum", "name": "Status", "symbols": ["SETTLED", "FAILED"]}
    party = record("Party", [{"name": "name", "type": "string"}])
    view = avro_to_json_schema(
        record(
            "X",
            [
                {"name": "status", "type": status},
                {"name": "tags", "type": {"type": "array", "items": "string"}},
                {"name": "labels", "type": {"type": "map", "values": "long"}},
                {"name": "payer", "type": ["null", party], "default": None},
                {"name": "payee", "type": "Party"},
            ],
            namespace="clearway.test",
        )
    )
    props = view["properties"]
    assert props["status"]["enum"] == ["SETTLED", "FAILED"]
    assert props["tags"] == {"type": "array", "items": {"type": "string"}}
    assert props["labels"]["type"] == "object"
    assert props["labels"]["additionalProperties"]["type"] == "integer"
    assert props["payer"]["anyOf"][1] == {"type": "null"}
    assert props["payer"]["anyOf"][0]["properties"]["name"] == {"type": "string"}
    assert props["payee"] == {"$ref": "#/$defs/clearway.test.Party"}
    validator = jsonschema.Draft202012Validator(view)
    good: dict[str, Any] = {
        "status": "SETTLED",
        "tags": [],
        "labels": {},
        "payer": None,
        "payee": {"name": "b"},
    }
    assert validator.is_valid(good)
    assert not validator.is_valid({**good, "payee": {}})
    assert not validator.is_valid({**good, "status": "LOST"})

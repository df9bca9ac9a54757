"""The wire contract as code: Avro schemas under ``schemas/`` (docs/design.md §3).

Layout: ``schemas/<domain>/<event.type>/v<N>.avsc`` is the source of truth for
major version N, ``v<N>.json`` beside it is the generated JSON Schema view for
partners, and ``CHANGELOG.md`` has one ``## vN`` heading per major version.
Payloads travel as JSON; they are validated here before they reach the outbox.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import fastavro
from fastavro.validation import ValidationError
from fastavro.validation import validate as fastavro_validate

from clearway.shared.schemas.jsonschema_view import avro_to_json_schema

SCHEMAS_DIR_ENV = "CLEARWAY_SCHEMAS_DIR"
_VERSION_FILE = re.compile(r"^v([1-9][0-9]*)\.avsc$")


class SchemaError(Exception):
    """Base class of the schema registry's errors."""


class SchemaLoadError(SchemaError):
    """A schema file that cannot be read or is not valid Avro."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class UnknownSchemaError(SchemaError, LookupError):
    """No schema for this event type and major version."""

    def __init__(self, event_type: str, major: int) -> None:
        super().__init__(f"no schema for {event_type} v{major}")
        self.event_type = event_type
        self.major = major


class SchemaValidationError(SchemaError, ValueError):
    """A payload that does not match its schema; ``field_path`` names the field."""

    def __init__(self, event_type: str, major: int, field_path: str, reason: str) -> None:
        where = f"field '{field_path}'" if field_path else "payload"
        super().__init__(f"{event_type} v{major}: {where} {reason}")
        self.event_type = event_type
        self.major = major
        self.field_path = field_path
        self.reason = reason


class _Invalid(Exception):
    def __init__(self, path: str, reason: str) -> None:
        super().__init__(path, reason)
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class EventSchema:
    """One major version of one event type."""

    event_type: str
    domain: str
    major: int
    avro: Mapping[str, Any]
    path: Path
    _parsed: dict[str, Any] = field(repr=False, compare=False)

    @functools.cached_property
    def _has_decimals(self) -> bool:
        return '"decimal"' in json.dumps(self._parsed, default=str)

    @property
    def dataschema(self) -> str:
        """The CloudEvents ``dataschema``: ``schemas/<domain>/<event.type>/v<N>``."""
        return f"schemas/{self.domain}/{self.event_type}/v{self.major}"

    @property
    def doc(self) -> str:
        """The schema's ``doc``."""
        return str(self.avro.get("doc", ""))

    def json_schema(self) -> dict[str, Any]:
        """The JSON Schema 2020-12 view generated from the Avro schema."""
        return avro_to_json_schema(self.avro)

    def validate(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Validate ``payload``; return a copy with defaults filled in for absent fields.

        Fields not declared in the schema are refused: what is not in the
        contract must not leak onto the wire.
        """
        named: dict[str, Any] = self._parsed["__named_schemas"]
        try:
            completed = _complete(self._parsed, payload, "", named, for_avro=False)
            # the second walk only turns decimal strings into Decimals: without any
            # decimal in the schema it would return an equal copy
            datum = (
                _complete(self._parsed, completed, "", named, for_avro=True)
                if self._has_decimals
                else completed
            )
        except _Invalid as exc:
            raise SchemaValidationError(self.event_type, self.major, exc.path, exc.reason) from None
        # fastavro raises (and JSON-formats) an error for every union branch that does not
        # match, even when another does: ask for a verdict first, the explanation only
        # when the payload is invalid (the hot path of every emitted event).
        result: dict[str, Any] = completed
        if fastavro_validate(datum, self._parsed, raise_errors=False):
            return result
        try:
            fastavro_validate(datum, self._parsed, raise_errors=True)
        except ValidationError as exc:
            path, reason = _explain_fastavro(self._parsed, named, exc)
            raise SchemaValidationError(self.event_type, self.major, path, reason) from None
        return result


@dataclass(frozen=True)
class EventTypeInfo:
    """What the event catalog shows about one event type."""

    event_type: str
    domain: str
    versions: tuple[int, ...]
    doc: str
    json_schemas: Mapping[int, dict[str, Any]]
    changelog: str

    @property
    def json_schema(self) -> dict[str, Any]:
        """The JSON Schema view of the latest major version."""
        return self.json_schemas[self.versions[-1]]


class SchemaRegistry:
    """Every event schema of the repository, loaded from ``schemas/``."""

    def __init__(self, schemas_dir: Path, schemas: Mapping[tuple[str, int], EventSchema]) -> None:
        self.schemas_dir = schemas_dir
        self._schemas = dict(sorted(schemas.items()))

    @classmethod
    def load(cls, root: Path) -> SchemaRegistry:
        """Load ``root/schemas`` (or ``root`` itself when it is the schemas directory)."""
        schemas_dir = root / "schemas" if (root / "schemas").is_dir() else root
        if not schemas_dir.is_dir():
            raise SchemaLoadError(schemas_dir, "no such directory")
        schemas: dict[tuple[str, int], EventSchema] = {}
        for path in sorted(schemas_dir.glob("*/*/v*.avsc")):
            match = _VERSION_FILE.match(path.name)
            if match is None:
                continue
            schema = _load_schema(path, path.parent.parent.name, int(match[1]))
            schemas[(schema.event_type, schema.major)] = schema
        return cls(schemas_dir, schemas)

    def get(self, event_type: str, major: int) -> EventSchema:
        """The schema of ``event_type`` at major version ``major``."""
        try:
            return self._schemas[(event_type, major)]
        except KeyError:
            raise UnknownSchemaError(event_type, major) from None

    def schemas(self) -> list[EventSchema]:
        """Every schema, ordered by event type then major version."""
        return list(self._schemas.values())

    def changelog(self, event_type: str) -> str:
        """The text of the event type's ``CHANGELOG.md`` ("" when there is none)."""
        for (known, _), schema in self._schemas.items():
            if known == event_type:
                changelog = schema.path.parent / "CHANGELOG.md"
                return changelog.read_text(encoding="utf-8") if changelog.is_file() else ""
        raise UnknownSchemaError(event_type, 0)

    def event_types(self) -> list[EventTypeInfo]:
        """The event catalog: one entry per event type, versions ascending."""
        by_type: dict[str, list[EventSchema]] = {}
        for schema in self._schemas.values():
            by_type.setdefault(schema.event_type, []).append(schema)
        return [
            EventTypeInfo(
                event_type=event_type,
                domain=versions[-1].domain,
                versions=tuple(s.major for s in versions),
                doc=versions[-1].doc,
                json_schemas={s.major: s.json_schema() for s in versions},
                changelog=self.changelog(event_type),
            )
            for event_type, versions in by_type.items()
        ]

    def validate(self, event_type: str, major: int, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Validate a payload against its schema; see :meth:`EventSchema.validate`."""
        return self.get(event_type, major).validate(payload)


def find_schemas_dir(start: Path) -> Path | None:
    """The ``schemas/`` of the nearest directory above ``start`` that also has a pyproject."""
    for directory in (start, *start.parents):
        if (directory / "schemas").is_dir() and (directory / "pyproject.toml").is_file():
            return directory / "schemas"
    return None


def default_schemas_dir() -> Path:
    """``$CLEARWAY_SCHEMAS_DIR``, else the repository's ``schemas/`` above this file."""
    configured = os.environ.get(SCHEMAS_DIR_ENV)
    if configured:
        return Path(configured)
    found = find_schemas_dir(Path(__file__).resolve().parent)
    if found is None:
        raise SchemaLoadError(Path(__file__), f"no schemas/ directory found; set {SCHEMAS_DIR_ENV}")
    return found


@functools.cache
def default_registry() -> SchemaRegistry:
    """The repository's registry, loaded once per process."""
    return SchemaRegistry.load(default_schemas_dir())


def _load_schema(path: Path, domain: str, major: int) -> EventSchema:
    try:
        avro = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SchemaLoadError(path, f"not readable JSON: {exc}") from None
    if not isinstance(avro, dict):
        raise SchemaLoadError(path, "an event schema must be an Avro record")
    try:
        parsed = fastavro.parse_schema(copy.deepcopy(avro), named_schemas={})
    except Exception as exc:  # fastavro raises several unrelated types for a bad schema
        raise SchemaLoadError(path, f"not a valid Avro schema: {exc}") from None
    if not isinstance(parsed, dict) or parsed.get("type") != "record":
        raise SchemaLoadError(path, "an event schema must be an Avro record")
    return EventSchema(path.parent.name, domain, major, avro, path, parsed)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _resolve(schema: Any, named: Mapping[str, Any]) -> Any:
    return named.get(schema, schema) if isinstance(schema, str) else schema


def _complete(
    schema: Any, value: Any, path: str, named: Mapping[str, Any], *, for_avro: bool
) -> Any:
    """Walk ``value`` along the parsed schema: fill defaults, refuse unknown fields.

    With ``for_avro`` decimal strings (how JSON carries them) become ``Decimal``
    so that fastavro can check them.
    """
    schema = _resolve(schema, named)
    if isinstance(schema, list):
        branches = [_resolve(b, named) for b in schema]
        records = [b for b in branches if isinstance(b, dict) and b["type"] == "record"]
        if isinstance(value, Mapping) and len(records) == 1:
            return _complete(records[0], value, path, named, for_avro=for_avro)
        decimals = [
            b for b in branches if isinstance(b, dict) and b.get("logicalType") == "decimal"
        ]
        if isinstance(value, str) and len(decimals) == 1 and "string" not in branches:
            return _complete(decimals[0], value, path, named, for_avro=for_avro)
        return value
    if not isinstance(schema, dict):
        return value
    kind = schema["type"]
    if kind == "record" and isinstance(value, Mapping):
        return _complete_record(schema, value, path, named, for_avro=for_avro)
    if kind == "array" and isinstance(value, list):
        items = schema["items"]
        return [
            _complete(items, v, f"{path}[{i}]", named, for_avro=for_avro)
            for i, v in enumerate(value)
        ]
    if kind == "map" and isinstance(value, Mapping):
        values = schema["values"]
        return {
            k: _complete(values, v, _join(path, str(k)), named, for_avro=for_avro)
            for k, v in value.items()
        }
    if for_avro and schema.get("logicalType") == "decimal" and isinstance(value, str):
        return _decimal(schema, value, path)
    return value


def _decimal(schema: Mapping[str, Any], value: str, path: str) -> Decimal:
    precision, scale = int(schema["precision"]), int(schema.get("scale", 0))
    reason = f"must be a decimal string with at most {precision} digits, {scale} after the point"
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise _Invalid(path, f"{reason}, got {value!r}") from None
    exponent = number.as_tuple().exponent
    too_long = number != 0 and number.adjusted() >= precision - scale
    if not isinstance(exponent, int) or -exponent > scale or too_long:
        raise _Invalid(path, f"{reason}, got {value!r}")
    return number


def _complete_record(
    schema: Mapping[str, Any],
    value: Mapping[str, Any],
    path: str,
    named: Mapping[str, Any],
    *,
    for_avro: bool,
) -> dict[str, Any]:
    fields = schema["fields"]
    unknown = sorted(set(value) - {f["name"] for f in fields}, key=str)
    if unknown:
        raise _Invalid(_join(path, str(unknown[0])), "is not declared in the schema")
    completed: dict[str, Any] = {}
    for f in fields:
        name, where = f["name"], _join(path, f["name"])
        if name in value:
            completed[name] = _complete(f["type"], value[name], where, named, for_avro=for_avro)
        elif "default" in f:
            completed[name] = copy.deepcopy(f["default"])
        else:
            raise _Invalid(where, "is required but missing")
    return completed


def _record_paths(schema: Any, named: Mapping[str, Any], path: str, out: dict[str, str]) -> None:
    """Map each record's full name to where it first occurs in the payload."""
    schema = _resolve(schema, named)
    if isinstance(schema, list):
        for branch in schema:
            _record_paths(branch, named, path, out)
    elif isinstance(schema, dict):
        kind = schema["type"]
        if kind == "record" and schema["name"] not in out:
            out[schema["name"]] = path
            for f in schema["fields"]:
                _record_paths(f["type"], named, _join(path, f["name"]), out)
        elif kind == "array":
            _record_paths(schema["items"], named, f"{path}[]", out)
        elif kind == "map":
            _record_paths(schema["values"], named, f"{path}{{}}", out)


def _type_label(schema: Any) -> str:
    if isinstance(schema, dict):
        return str(schema.get("logicalType") or schema.get("name") or schema.get("type"))
    return str(schema)


def _explain_fastavro(
    schema: Mapping[str, Any], named: Mapping[str, Any], error: ValidationError
) -> tuple[str, str]:
    """Turn fastavro's ``<record full name>.<field>`` into a payload path and a reason."""
    prefixes: dict[str, str] = {}
    _record_paths(schema, named, "", prefixes)
    expected: dict[str, list[str]] = {}
    got: dict[str, Any] = {}
    for data in error.errors:
        record, _, name = str(data.field).rpartition(".")
        path = _join(prefixes.get(record, record), name)
        expected.setdefault(path, []).append(_type_label(data.schema))
        got[path] = data.datum
    # A union reports every branch; the deepest path is the one that went wrong.
    path = max(expected, key=lambda p: (p.count(".") + p.count("["), len(p)))
    value = got[path]
    if value is None:
        return path, f"must not be null (expected {' or '.join(expected[path])})"
    return path, (f"expected {' or '.join(expected[path])}, got {type(value).__name__} {value!r}")

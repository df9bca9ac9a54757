"""The JSON Schema (2020-12) view of an Avro schema, for partners.

Avro stays the source of truth; this view describes the same payload as it
travels in JSON. Objects keep ``additionalProperties: true`` because a minor
revision may add fields, and that must not break a partner's validator.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

_PRIMITIVES: dict[str, dict[str, Any]] = {
    "null": {"type": "null"},
    "boolean": {"type": "boolean"},
    "int": {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1},
    "long": {"type": "integer", "minimum": -(2**63), "maximum": 2**63 - 1},
    "float": {"type": "number"},
    "double": {"type": "number"},
    "bytes": {"type": "string"},
    "string": {"type": "string"},
}

# Logical types that keep their underlying JSON type. Timestamps stay integers:
# the value on the wire is a number, so "format: date-time" would be a lie.
_LOGICAL: dict[tuple[str, str], dict[str, Any]] = {
    ("string", "uuid"): {"type": "string", "format": "uuid"},
    ("int", "date"): {"type": "integer", "description": "Days since 1970-01-01."},
    ("int", "time-millis"): {
        "type": "integer",
        "minimum": 0,
        "maximum": 86_399_999,
        "description": "Milliseconds after midnight.",
    },
    ("long", "time-micros"): {
        "type": "integer",
        "minimum": 0,
        "maximum": 86_399_999_999,
        "description": "Microseconds after midnight.",
    },
    ("long", "timestamp-millis"): {
        "type": "integer",
        "description": "Milliseconds since the Unix epoch (1970-01-01T00:00:00Z).",
    },
    ("long", "timestamp-micros"): {
        "type": "integer",
        "description": "Microseconds since the Unix epoch (1970-01-01T00:00:00Z).",
    },
    ("long", "timestamp-nanos"): {
        "type": "integer",
        "description": "Nanoseconds since the Unix epoch (1970-01-01T00:00:00Z).",
    },
    ("long", "local-timestamp-millis"): {
        "type": "integer",
        "description": "Milliseconds since 1970-01-01T00:00:00 in local time (no time zone).",
    },
    ("long", "local-timestamp-micros"): {
        "type": "integer",
        "description": "Microseconds since 1970-01-01T00:00:00 in local time (no time zone).",
    },
}

_NAMED = ("record", "error", "enum", "fixed")


def avro_to_json_schema(avro: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON Schema 2020-12 view of an Avro schema (normally a record).

    Named types used more than once are referenced through ``$defs``; a field
    with an Avro default is optional in JSON, since events written before the
    field existed (and replayed later) do not carry it.
    """
    converter = _Converter()
    body = converter.convert(avro, "")
    name = _fullname(str(avro.get("name", "")), str(avro.get("namespace", "")))
    source = f"the Avro schema {name}" if name else "an Avro schema"
    view: dict[str, Any] = {
        "$schema": JSON_SCHEMA_DIALECT,
        "$comment": f"Generated from {source}; edit the .avsc and run `clearway-schemas generate`.",
        **body,
    }
    if converter.defs:
        view["$defs"] = converter.defs
    return view


def _fullname(name: str, namespace: str) -> str:
    if "." in name or not namespace or not name:
        return name
    return f"{namespace}.{name}"


class _Converter:
    def __init__(self) -> None:
        self.named: dict[str, dict[str, Any]] = {}
        self.defs: dict[str, dict[str, Any]] = {}
        self.root: str | None = None

    def convert(self, schema: Any, namespace: str) -> dict[str, Any]:
        if isinstance(schema, str):
            if schema in _PRIMITIVES:
                return dict(_PRIMITIVES[schema])
            return self._reference(_fullname(schema, namespace))
        if isinstance(schema, list):
            return self._union(schema, namespace)
        kind = schema["type"]
        if kind in _NAMED:
            return self._named(schema, namespace)
        if kind == "array":
            return {"type": "array", "items": self.convert(schema["items"], namespace)}
        if kind == "map":
            return {
                "type": "object",
                "additionalProperties": self.convert(schema["values"], namespace),
            }
        logical = _LOGICAL.get((str(kind), str(schema.get("logicalType"))))
        if logical is not None:
            return dict(logical)
        if schema.get("logicalType") == "decimal" and kind == "bytes":
            return _decimal(schema)
        # Unknown or misplaced logical types fall back to the underlying type (Avro spec).
        return self.convert(kind, namespace)

    def _reference(self, fullname: str) -> dict[str, Any]:
        if fullname == self.root:
            return {"$ref": "#"}
        if fullname not in self.named:
            raise ValueError(f"unknown Avro type {fullname!r}")
        self.defs[fullname] = self.named[fullname]
        return {"$ref": f"#/$defs/{fullname}"}

    def _named(self, schema: Mapping[str, Any], namespace: str) -> dict[str, Any]:
        name = str(schema["name"])
        fullname = _fullname(name, str(schema.get("namespace", namespace)))
        namespace = fullname.rpartition(".")[0]
        # Registered before its fields are converted, so a recursive record can refer to itself.
        view: dict[str, Any] = {"title": fullname.rpartition(".")[2]}
        self.named[fullname] = view
        if self.root is None:
            self.root = fullname
        kind = schema["type"]
        if kind == "enum":
            body: dict[str, Any] = {"type": "string", "enum": list(schema["symbols"])}
        elif kind == "fixed" and schema.get("logicalType") == "decimal":
            body = _decimal(schema)
        elif kind == "fixed":
            body = {"type": "string", "description": f"{schema['size']} bytes."}
        else:
            body = self._record(schema, namespace)
        if "doc" in schema:
            view["description"] = _describe(str(schema["doc"]), body.pop("description", None))
        view.update(body)
        return dict(view)

    def _record(self, schema: Mapping[str, Any], namespace: str) -> dict[str, Any]:
        properties: dict[str, Any] = {}
        required: list[str] = []
        for f in schema["fields"]:
            prop = dict(self.convert(f["type"], namespace))
            if "doc" in f:
                prop["description"] = _describe(str(f["doc"]), prop.get("description"))
            if "default" in f:
                prop["default"] = f["default"]
            else:
                required.append(f["name"])
            properties[f["name"]] = prop
        record: dict[str, Any] = {"type": "object", "properties": properties}
        if required:
            record["required"] = required
        record["additionalProperties"] = True
        return record

    def _union(self, branches: list[Any], namespace: str) -> dict[str, Any]:
        views = [self.convert(b, namespace) for b in branches]
        others = [v for b, v in zip(branches, views, strict=True) if b != "null"]
        if len(others) == 1 and len(views) == 2:
            only = others[0]
            simple = isinstance(only.get("type"), str) and not {"enum", "$ref", "title"} & set(only)
            if simple:
                return {**only, "type": [only["type"], "null"]}
            return {"anyOf": [only, {"type": "null"}]}
        return {"anyOf": views}


def _decimal(schema: Mapping[str, Any]) -> dict[str, Any]:
    precision = int(schema["precision"])
    scale = int(schema.get("scale", 0))
    whole = f"[0-9]{{1,{precision - scale}}}" if precision > scale else "0"
    fraction = f"(\\.[0-9]{{1,{scale}}})?" if scale else ""
    return {
        "type": "string",
        "pattern": f"^-?{whole}{fraction}$",
        "description": f"Decimal number as a string: precision {precision}, scale {scale}.",
    }


def _describe(doc: str, detail: Any) -> str:
    return f"{doc.rstrip().rstrip('.')}. {detail}" if detail else doc

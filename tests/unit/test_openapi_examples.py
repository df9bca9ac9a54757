"""Every service's OpenAPI document shows what to send and what comes back
(docs/design.md §10, ADR 0035): each request body has an example, each success
response with a body a schema (properties or a ``$ref``); a success response declared
without ``content`` has no body.

The documents are those ``clearway-versions`` publishes (``service_documents``:
each app built from its own bootstrap, no database needed). ``NOT_YET`` names the
success responses still free-form; it only shrinks.
"""

from __future__ import annotations

from typing import Any

import pytest

from clearway.shared.versions.docs import service_documents

METHODS = ("get", "put", "post", "delete", "patch")
#: (service, METHOD path, status) of success responses still without a schema
NOT_YET: set[tuple[str, str, str]] = set()


@pytest.fixture(scope="module")
def documents() -> dict[str, dict[str, Any]]:
    return dict(service_documents())


def _schemas(schema: dict[str, Any], doc: dict[str, Any]) -> list[dict[str, Any]]:
    """``schema`` and, through ``$ref`` and ``anyOf``/``oneOf`` (an optional body), the
    component schemas it stands for."""
    found = [schema]
    if "$ref" in schema:
        found += _schemas(doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]], doc)
    for option in schema.get("anyOf", []) + schema.get("oneOf", []):
        found += _schemas(option, doc)
    return found


def _has_example(media: dict[str, Any], doc: dict[str, Any]) -> bool:
    if media.get("example") is not None or media.get("examples"):
        return True
    return any(s.get("examples") for s in _schemas(media.get("schema", {}), doc))


def _has_schema(media: dict[str, Any]) -> bool:
    schema = media.get("schema", {})
    return "$ref" in schema or bool(schema.get("properties"))


def _operations(doc: dict[str, Any]):
    for path, item in doc["paths"].items():
        for method in METHODS:
            if method in item:
                yield f"{method.upper()} {path}", item[method]


def test_every_request_body_has_an_example(documents):
    lacking = [
        f"{service} {operation} {media_type}"
        for service, doc in documents.items()
        for operation, spec in _operations(doc)
        for media_type, media in spec.get("requestBody", {}).get("content", {}).items()
        if not _has_example(media, doc)
    ]
    assert lacking == [], "request bodies without an example:\n" + "\n".join(lacking)


def test_every_success_response_with_a_body_has_a_schema(documents):
    lacking, fixed = [], []
    for service, doc in documents.items():
        for operation, spec in _operations(doc):
            for status, response in spec["responses"].items():
                if not status.startswith("2") or status == "204":
                    continue
                if "content" not in response:
                    # Declared bodyless (a response class without a media type: RFC 7009's
                    # revocation answers an empty 200); FastAPI gives every other a content.
                    continue
                content = response.get("content", {})
                ok = bool(content) and all(_has_schema(m) for m in content.values())
                name = (service, operation, status)
                if not ok and name not in NOT_YET:
                    lacking.append(" ".join(name))
                if ok and name in NOT_YET:
                    fixed.append(" ".join(name))
    assert lacking == [], "success responses without a schema:\n" + "\n".join(lacking)
    assert fixed == [], "documented now, remove from NOT_YET:\n" + "\n".join(fixed)

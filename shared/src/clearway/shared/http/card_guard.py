"""Card numbers refused at the HTTP edge, on decoded values (docs/design.md §9).

``EdgeMiddleware`` runs :func:`card_number_field` on every request before any
route or dependency: the path (percent-decoded, named by its route parameter),
each query parameter (decoded, names and values), each header value but the
credentials (``Authorization``, ``Proxy-Authorization``: a JWT there is not a
card number and is never logged either), and the body after decoding: JSON is
parsed and walked (keys and values, ``\\u`` escapes decoded by the parser), a
urlencoded form parsed, any other text scanned whole. What counts as a card
number is :mod:`clearway.shared.cards`, the one detector.

A refused request is a 422 ``card-number-refused`` naming the field
(``metadata.pan``, ``query.reference``, ``header.x-note``, ``path.transfer_id``);
the number is never echoed, logged or stored.

Default deny: the only exception is a route whose purpose is a card number (the
vault's ``POST /v1/cards``), declared with
``openapi_extra=accepts_card_numbers("number")`` naming the body fields that may
hold one (the OpenAPI document shows it). Only body fields can be allowed; the
operation is looked up only when a body holds a number.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Final

from starlette.routing import compile_path
from starlette.types import Scope

from clearway.shared.cards import card_locations, has_card
from clearway.shared.http.hygiene import parse_pairs
from clearway.shared.http.problems import FieldError, ValidationProblem, field_name

Loc = tuple[str | int, ...]

#: Header values never scanned: credentials (a JWT, a basic secret) are not card
#: numbers, and are redacted wherever they could be logged.
EXEMPT_HEADERS: Final = frozenset({b"authorization", b"proxy-authorization"})
#: The OpenAPI operation extension naming the body fields that take card numbers.
CARD_FIELDS_EXTENSION: Final = "x-clearway-card-fields"
_MALFORMED: Final[Loc] = ("body", "<malformed>")


def accepts_card_numbers(*fields: str) -> dict[str, Any]:
    """Declare the body fields (dotted, ``number`` or ``card.number``) of a route
    where a card number is the point; every other place stays refused.

    Pass the result as the route's ``openapi_extra``, so the OpenAPI document
    says so too (``x-clearway-card-fields``)::

        @router.post("/v1/cards", openapi_extra=accepts_card_numbers("number"))
        async def tokenize_card(...): ...
    """
    if not fields:
        raise ValueError("name at least one body field")
    return {CARD_FIELDS_EXTENSION: sorted(fields)}


def card_number_field(
    scope: Scope,
    operations: Callable[[], Mapping[str, Any]],
    content_type: str | None,
    body: bytes,
) -> Loc | None:
    """The location of the first card number in the request, or ``None``.

    ``operations`` gives the ``paths`` of the app's OpenAPI document, called only
    when a number is found: to name the path parameter holding it, or to read
    the body fields a route accepts card numbers in.
    """
    path: str = scope["path"]
    if has_card(path):
        return _path_field(path, operations())
    query: bytes = scope["query_string"]
    if query:
        loc = _pairs_field(parse_pairs(query), "query")
        if loc is not None:
            return loc
    for name, value in scope["headers"]:
        if name.lower() not in EXEMPT_HEADERS and has_card(value.decode("latin-1")):
            return ("header", name.decode("latin-1").lower())
    if not body:
        return None
    allowed: frozenset[str] | None = None
    for loc in _body_locations(content_type, body):
        if allowed is None:
            allowed = _allowed_fields(scope, operations)
        if loc == _MALFORMED and allowed:
            return None  # the route refuses a body it cannot parse; nothing is stored
        if field_name(loc) not in allowed:
            return ("body",) if loc == _MALFORMED else loc
    return None


def card_number_problem(loc: Loc) -> ValidationProblem:
    """The 422 for a card number at ``loc``; the value is never part of it."""
    field = field_name(loc)
    return ValidationProblem(
        FieldError(field, "card numbers are refused", "card_number"),
        type_slug="card-number-refused",
        title="Card numbers are refused",
        detail=f"Field '{field}' holds a card number; send a card token (tok_…) instead.",
    )


def _body_locations(content_type: str | None, body: bytes) -> Iterator[Loc]:
    media = (content_type or "").partition(";")[0].strip().lower()
    text = body.decode("utf-8", errors="replace")
    if media == "application/json" or media.endswith("+json"):
        try:
            doc = json.loads(text)
        except (ValueError, RecursionError):
            if has_card(text):  # refused unless the route takes card numbers (see above)
                yield _MALFORMED
            return
        yield from card_locations(doc, ("body",))
    elif media == "application/x-www-form-urlencoded":
        loc = _pairs_field(parse_pairs(body), "body")
        if loc is not None:
            yield loc
    elif has_card(text):
        yield ("body",)


def _allowed_fields(scope: Scope, operations: Callable[[], Mapping[str, Any]]) -> frozenset[str]:
    """The card fields the matching operation declares (none by default)."""
    path, method = scope["path"], scope["method"].lower()
    for template, ops in operations().items():
        if compile_path(template)[0].match(path) and isinstance(ops, Mapping):
            fields = ops.get(method, {}).get(CARD_FIELDS_EXTENSION)
            if isinstance(fields, list):
                return frozenset(str(f) for f in fields)
    return frozenset()


def _path_field(path: str, templates: Iterable[str]) -> Loc:
    for template in templates:
        match = compile_path(template)[0].match(path)
        if match is None:
            continue
        for name, value in match.groupdict().items():
            if has_card(value):
                return ("path", name)
    return ("path",)


def _pairs_field(pairs: list[tuple[str, str]], where: str) -> Loc | None:
    for name, value in pairs:
        if has_card(name):
            return (where,)
        if has_card(value):
            return (where, name)
    return None

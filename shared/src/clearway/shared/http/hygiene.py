"""Input hygiene at the HTTP edge: control characters and the request-body limit.

Every string a client sends (path, query, header, JSON or form body) ends up
in Postgres, logs or events. Postgres ``text`` cannot hold NUL at all (the
driver fails with a 500), and other control characters forge log lines or hide
text from reviewers. So the edge refuses them once, for every service, with a
422 naming the field and never echoing the value.

Which characters: Unicode ``Cc`` (C0 controls U+0000-U+001F, DEL U+007F and
C1 controls U+0080-U+009F) and unpaired surrogates (UTF-8 cannot encode them,
so the database driver fails on them as it does on NUL). Exceptions, where
they are ordinary text:

- in body strings (JSON and forms) TAB, LF and CR are kept: a description or
  a reason over several lines is legitimate, and HTML forms send CRLF for the
  newlines of a textarea (WHATWG HTML §4.10.21.8);
- in header values HTAB is kept: RFC 9110 §5.5 allows it inside a field value.
  Header values are bytes on the wire, so only the ASCII controls are checked
  there (bytes 0x80-0x9F are ``obs-text``, often halves of UTF-8 sequences).

The body is read here once, against ``max_body_bytes``, before any route or
dependency sees it: a declared ``Content-Length`` over the limit is refused at
once, and the stream itself is counted, so a chunked body (no length) cannot
exceed the limit either (RFC 9110 §15.5.14, 413 Content Too Large). The body is
then replayed to the application unchanged.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl

from starlette.routing import compile_path
from starlette.types import Message, Receive

from clearway.shared.http.problems import ProblemError, field_name

DEFAULT_MAX_BODY_BYTES = 1024 * 1024

Loc = tuple[str | int, ...]

# Cc (C0, DEL, C1) and lone surrogates; the body variant keeps TAB, LF and CR.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_BODY_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
_HEADER_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
# Cheap byte-level pre-filters: only a match makes the edge decode and walk the input.
# JSON: a raw control byte, a raw C1 in UTF-8, or a \u escape of a control or surrogate.
_JSON_SUSPECT = re.compile(
    rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|\xc2[\x80-\x9f]"
    rb"|\\u00(?:[0189][0-9a-fA-F]|7[fF])|\\u[dD][89a-fA-F]"
)
# URLs: a raw control byte, a raw C1 in UTF-8, or a percent-encoded one.
_URL_SUSPECT = re.compile(
    rb"[\x00-\x1f\x7f]|\xc2[\x80-\x9f]|%(?:[01][0-9a-fA-F]|7[fF]|[cC]2%[89][0-9a-fA-F])"
)


def has_control_characters(text: str, *, body: bool = False) -> bool:
    """Whether ``text`` holds a character the edge refuses (see the module doc).

    ``body=True`` applies the rule for body strings, where TAB, LF and CR are text.
    """
    return (_BODY_CONTROL if body else _CONTROL).search(text) is not None


def json_control_field(raw: bytes) -> Loc | None:
    """The location (``("body", "metadata", "note")``) of the first JSON string, or
    object key, holding a refused character; ``None`` when there is none.

    The pre-filter keeps this to one byte scan for ordinary bodies. A body that
    is not JSON at all is left to the route, which answers it as malformed. A
    key holding the character is reported as its parent object, so the key
    itself is never echoed.
    """
    if _JSON_SUSPECT.search(raw) is None:
        return None
    try:
        # strict=False accepts raw control characters inside strings, so that they
        # can be named as a field instead of a generic syntax error.
        doc = json.loads(raw, strict=False)
    except (ValueError, RecursionError):
        return None
    try:
        return _walk(doc, ("body",))
    except RecursionError:  # nested past what Python walks: not a document to accept
        return ("body",)


def form_control_field(raw: bytes) -> Loc | None:
    """The location (``("body", "username")``) of the first urlencoded form field
    whose name or value holds a refused character; ``None`` when there is none."""
    if _URL_SUSPECT.search(raw) is None:
        return None
    return _pairs_control_field(parse_pairs(raw), "body", body=True)


def query_control_field(query_string: bytes) -> Loc | None:
    """The location (``("query", "reference")``) of the first query parameter whose
    name or value holds a refused character; ``None`` when there is none."""
    if not query_string or _URL_SUSPECT.search(query_string) is None:
        return None
    return _pairs_control_field(parse_pairs(query_string), "query", body=False)


def header_control_field(headers: Iterable[tuple[bytes, bytes]]) -> Loc | None:
    """The location (``("header", "x-foo")``) of the first header value holding an
    ASCII control other than HTAB; ``None`` when there is none."""
    for name, value in headers:
        if _HEADER_CONTROL.search(value) is not None:
            return ("header", name.decode("latin-1").lower())
    return None


def path_control_field(path: str, templates: Iterable[str]) -> Loc | None:
    """The location (``("path", "transfer_id")``) of the path parameter holding a
    refused character, or ``("path",)`` when no route template names it; ``None``
    when the (already percent-decoded) ``path`` is clean.

    ``templates`` are route paths such as ``/v1/transfers/{transfer_id}``; they are
    only looked at when the path holds a refused character.
    """
    if not has_control_characters(path):
        return None
    for template in templates:
        regex, _, _ = compile_path(template)
        match = regex.match(path)
        if match is None:
            continue
        for name, value in match.groupdict().items():
            if has_control_characters(value):
                return ("path", name)
    return ("path",)


def control_character_problem(loc: Loc) -> ProblemError:
    """The 422 for a refused character at ``loc``; the value is never part of it."""
    field = field_name(loc)
    message = "must not contain control characters"
    return ProblemError(
        422,
        "validation-error",
        "Request validation failed",
        f"Field '{field}' is invalid: {message}.",
        errors=[{"field": field, "message": message, "type": "string_control_character"}],
    )


def body_too_large(limit: int) -> ProblemError:
    """The 413 for a request body over ``limit`` bytes."""
    return ProblemError(
        413,
        "payload-too-large",
        "Payload too large",
        f"Request bodies are limited to {limit} bytes.",
        max_body_bytes=limit,
    )


async def read_body(receive: Receive, limit: int, declared: str | None) -> list[Message]:
    """Read the whole request body from ``receive``, refusing it past ``limit`` bytes.

    Returns the messages to replay to the application: one ``http.request`` with
    the whole body, or the ``http.disconnect`` that ended the stream early.
    ``declared`` is the ``Content-Length`` header: a value over the limit is
    refused without reading, but the count of the stream is what is trusted.
    """
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise body_too_large(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away: pass that on
            return [message]
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise body_too_large(limit)
        if chunk:
            chunks.append(chunk)
        if not message.get("more_body", False):
            body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            return [{"type": "http.request", "body": body, "more_body": False}]


def body_control_field(content_type: str | None, body: bytes) -> Loc | None:
    """The refused field of a JSON or urlencoded-form ``body``, by its media type."""
    if not body or not content_type:
        return None
    media = content_type.partition(";")[0].strip().lower()
    if media == "application/json" or media.endswith("+json"):
        return json_control_field(body)
    if media == "application/x-www-form-urlencoded":
        return form_control_field(body)
    return None


def replay(messages: list[Message], receive: Receive) -> Receive:
    """A ``receive`` that hands out ``messages`` first, then defers to ``receive``
    (which later reports the client's disconnect)."""
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed


def parse_pairs(raw: bytes) -> list[tuple[str, str]]:
    """A query string or urlencoded form as decoded ``(name, value)`` pairs."""
    # The same decoding Starlette applies to query strings and forms (UTF-8, with
    # replacement), so the edge sees the strings the route would see.
    return parse_qsl(raw.decode("latin-1"), keep_blank_values=True, errors="replace")


def _pairs_control_field(pairs: list[tuple[str, str]], where: str, *, body: bool) -> Loc | None:
    for name, value in pairs:
        if has_control_characters(name, body=body):
            return (where,)
        if has_control_characters(value, body=body):
            return (where, name)
    return None


def _walk(doc: Any, loc: Loc) -> Loc | None:
    if isinstance(doc, str):
        return loc if has_control_characters(doc, body=True) else None
    if isinstance(doc, dict):
        for key, value in doc.items():
            if has_control_characters(key, body=True):
                return loc
            found = _walk(value, (*loc, key))
            if found is not None:
                return found
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            found = _walk(value, (*loc, index))
            if found is not None:
                return found
    return None

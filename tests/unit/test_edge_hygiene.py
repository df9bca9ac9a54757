"""Input hygiene at the kit's HTTP edge: control characters, the streamed body limit,
and dependencies that are down (503 instead of 500)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

import asyncpg
import httpx
import pytest
from aiokafka.errors import KafkaConnectionError
from fastapi import FastAPI, Form, Header, Request
from pydantic import BaseModel

from clearway.shared.http import PROBLEM_MEDIA_TYPE, create_app
from clearway.shared.http.hygiene import (
    form_control_field,
    has_control_characters,
    header_control_field,
    json_control_field,
    query_control_field,
    read_body,
)
from clearway.shared.http.problems import ProblemError

LIMIT = 1000


# ---------------------------------------------------------------- detection


@pytest.mark.parametrize("char", ["\x00", "\x01", "\x1b", "\x1f", "\x7f", "\x85", "\x9f"])
def test_controls_del_and_c1_are_refused_everywhere(char):
    assert has_control_characters(f"ab{char}c")
    assert has_control_characters(f"ab{char}c", body=True)


@pytest.mark.parametrize("char", ["\t", "\n", "\r"])
def test_tab_lf_cr_are_text_in_bodies_but_not_in_urls(char):
    assert has_control_characters(f"a{char}b")
    assert not has_control_characters(f"a{char}b", body=True)


def test_printable_and_non_latin_text_is_accepted():
    for text in ("Invoice 2026-1142", "Zahlung für Müller", "支付", "😀", "\xa0nbsp", ""):
        assert not has_control_characters(text)


@pytest.mark.parametrize(
    ("raw", "loc"),
    [
        (b'{"endpoint_id": "ep_\\u0000x"}', ("body", "endpoint_id")),
        (b'{"a": "ok", "metadata": {"note": "x\\u001By"}}', ("body", "metadata", "note")),
        (b'{"event_types": ["ok", "x\\u007f"]}', ("body", "event_types", 1)),
        (b'{"name": "x\\u0085"}', ("body", "name")),  # C1 as an escape
        (b'{"name": "x\xc2\x85"}', ("body", "name")),  # C1 as raw UTF-8
        (b'{"name": "x\x00y"}', ("body", "name")),  # a raw NUL inside a string
        (b'{"name": "x\\ud800"}', ("body", "name")),  # an unpaired surrogate
        (b'{"meta": {"k\\u0000": "v"}}', ("body", "meta")),  # the key is never echoed
        (b'"\\u0000"', ("body",)),
    ],
)
def test_json_bodies_name_the_field_holding_a_control_character(raw, loc):
    assert json_control_field(raw) == loc


@pytest.mark.parametrize(
    "raw",
    [
        b'{"amount": 12500, "currency": "EUR", "description": "Invoice 1142"}',
        b'{"description": "line one\\nline two\\ttabbed\\r\\n"}',
        b'{\n\t"description": "pretty printed"\r\n}',
        b'{"path": "C:\\\\u0000 is a literal backslash-u"}',
        b'{"emoji": "\\ud83d\\ude00"}',
        b"not json \x00 at all",  # left to the route: a 400 malformed body
    ],
)
def test_clean_json_bodies_pass(raw):
    assert json_control_field(raw) is None


def test_query_forms_and_headers_name_their_field():
    assert query_control_field(b"reference=%00abc&limit=5") == ("query", "reference")
    assert query_control_field(b"a=1&subject=x%C2%85") == ("query", "subject")
    assert query_control_field(b"x%00=1") == ("query",)
    assert query_control_field(b"reference=abc%20def&limit=5") is None
    assert query_control_field(b"note=a%0Ab") == ("query", "note")  # no newlines in URLs
    assert form_control_field(b"username=alice&password=x%00") == ("body", "password")
    assert form_control_field(b"reason=line+one%0D%0Aline+two") is None  # textarea CRLF
    assert header_control_field([(b"x-foo", b"a\x00b")]) == ("header", "x-foo")
    assert header_control_field([(b"X-Foo", b"a\rb")]) == ("header", "x-foo")
    assert header_control_field([(b"user-agent", b"a\tb"), (b"accept", b"*/*")]) is None


# ---------------------------------------------------------------- the app


class Note(BaseModel):
    endpoint_id: str
    text: str = ""


def build_app(**kw: Any) -> tuple[FastAPI, list[bytes]]:
    app = create_app("hygiene-test", title="hygiene", max_body_bytes=LIMIT, **kw)
    seen: list[bytes] = []

    @app.post("/v1/raw")
    async def raw(request: Request) -> dict[str, int]:
        body = await request.body()
        seen.append(body)
        return {"size": len(body)}

    @app.post("/v1/notes/{note_id}")
    async def note(note_id: str, body: Note, x_foo: Annotated[str | None, Header()] = None) -> Note:
        return body

    @app.get("/v1/items")
    async def items(reference: str | None = None) -> dict[str, str | None]:
        return {"reference": reference}

    @app.post("/v1/login")
    async def login(username: Annotated[str, Form()], reason: Annotated[str, Form()] = "") -> dict:
        return {"username": username, "reason": reason}

    @app.get("/v1/down/{kind}")
    async def down(kind: str) -> None:
        if kind == "refused":
            raise ConnectionRefusedError(111, "Connect call failed ('10.0.0.1', 5432) secret=x")
        if kind == "starting":
            raise asyncpg.CannotConnectNowError("the database system is starting up")
        if kind == "multi":  # asyncio's create_connection over several addresses
            raise OSError("Multiple exceptions: [Errno 111] Connect call failed")
        if kind == "kafka":
            raise KafkaConnectionError("Unable to bootstrap from [('127.0.0.1', 9)]")
        if kind == "wrapped":
            try:
                raise TimeoutError
            except TimeoutError as e:
                raise RuntimeError("acquire failed") from e
        if kind == "group":
            raise ExceptionGroup("tasks", [ValueError("x"), ConnectionResetError()])
        if kind == "file":
            raise FileNotFoundError(2, "No such file", "/etc/clearway/key")
        raise ProblemError(418, "teapot", "Teapot")

    return app, seen


@pytest.fixture
async def app_and_client() -> AsyncIterator[tuple[list[bytes], httpx.AsyncClient]]:
    app, seen = build_app()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        yield seen, c


def field_of(r: httpx.Response) -> str:
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith(PROBLEM_MEDIA_TYPE)
    assert "\x00" not in r.text and "\\u0000" not in r.text, "the value is never echoed"
    return str(r.json()["errors"][0]["field"])


async def test_nul_anywhere_is_a_422_naming_the_field(app_and_client):
    _, c = app_and_client
    ok = {"endpoint_id": "ep_1"}
    assert field_of(await c.get("/v1/items", params={"reference": "a\x00b"})) == "query.reference"
    assert field_of(await c.post("/v1/notes/n%00x", json=ok)) == "path.note_id"
    r = await c.post("/v1/notes/n1", json=ok, headers={"x-foo": "a\x00b"})
    assert field_of(r) == "header.x-foo"
    r = await c.post("/v1/notes/n1", json={"endpoint_id": "ep_\x00"})
    assert field_of(r) == "endpoint_id"
    r = await c.post("/v1/login", data={"username": "al\x00ice"})
    assert field_of(r) == "username"
    assert field_of(await c.get("/v1/nowhere/%00")) == "path"


async def test_legitimate_whitespace_and_text_pass_through(app_and_client):
    _, c = app_and_client
    text = "line one\nline two\ttab\r\nZahlung für Müller 😀"
    r = await c.post("/v1/notes/n1", json={"endpoint_id": "ep_1", "text": text})
    assert r.status_code == 200 and r.json()["text"] == text
    r = await c.post("/v1/login", data={"username": "alice", "reason": "a\r\nb"})
    assert r.status_code == 200 and r.json()["reason"] == "a\r\nb"
    assert (await c.get("/v1/items", params={"reference": "ref 42/ü"})).status_code == 200


async def test_a_chunked_body_over_the_limit_is_a_413_before_the_route_reads_it(app_and_client):
    seen, c = app_and_client

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(5):
            yield b"x" * 300

    r = await c.post("/v1/raw", content=chunks())
    assert "content-length" not in r.request.headers  # streamed: no length to trust
    assert r.status_code == 413 and r.headers["content-type"].startswith(PROBLEM_MEDIA_TYPE)
    assert r.json()["max_body_bytes"] == LIMIT
    assert seen == [], "the route never ran"


async def test_a_declared_length_over_the_limit_is_a_413(app_and_client):
    seen, c = app_and_client
    r = await c.post("/v1/raw", content=b"x" * (LIMIT + 1))
    assert r.status_code == 413 and seen == []


async def test_a_chunked_body_within_the_limit_reaches_the_route_whole(app_and_client):
    seen, c = app_and_client

    async def chunks() -> AsyncIterator[bytes]:
        for part in (b"a" * 400, b"", b"b" * 400, b"c" * 200):
            yield part

    r = await c.post("/v1/raw", content=chunks())
    assert r.status_code == 200 and r.json() == {"size": LIMIT}
    assert seen == [b"a" * 400 + b"b" * 400 + b"c" * 200]


async def test_the_stream_is_counted_even_when_the_declared_length_lies():
    sent = [
        {"type": "http.request", "body": b"x" * 600, "more_body": True},
        {"type": "http.request", "body": b"x" * 600, "more_body": False},
    ]

    async def receive() -> dict[str, Any]:
        return sent.pop(0)

    with pytest.raises(ProblemError) as refused:
        await read_body(receive, LIMIT, declared="10")
    assert refused.value.status == 413 and len(sent) == 0


async def test_a_disconnect_while_reading_is_handed_on():
    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    assert await read_body(receive, LIMIT, None) == [{"type": "http.disconnect"}]


@pytest.mark.parametrize("kind", ["refused", "starting", "multi", "kafka", "wrapped", "group"])
async def test_a_dependency_that_is_down_is_a_503_with_retry_after(app_and_client, kind, caplog):
    _, c = app_and_client
    with caplog.at_level(logging.WARNING):
        r = await c.get(f"/v1/down/{kind}")
    assert r.status_code == 503, r.text
    assert r.headers["content-type"].startswith(PROBLEM_MEDIA_TYPE)
    assert int(r.headers["retry-after"]) > 0
    assert r.json()["type"].endswith("/service-unavailable")
    records = [rec for rec in caplog.records if "dependency unavailable" in rec.getMessage()]
    assert len(records) == 1, "logged once"
    logged = records[0].getMessage() + json.dumps(str(records[0].exc_info))
    assert "secret" not in logged and "10.0.0.1" not in logged and "127.0.0.1" not in logged


async def test_a_local_file_error_is_still_a_500(app_and_client):
    _, c = app_and_client
    r = await c.get("/v1/down/file")
    assert r.status_code == 500 and "retry-after" not in r.headers

"""The one list shape: opaque cursors bound to tenant, route and filters; ``limit`` 1-100;
and the one validation-problem helper (same body as FastAPI's own 422s)."""

from __future__ import annotations

import base64
import secrets
from datetime import UTC, datetime
from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, Header, Query

from clearway.shared.http import (
    MAX_LIMIT,
    CursorCodec,
    CursorError,
    FieldError,
    PageRequest,
    ValidationProblem,
    create_app,
    invalid_field,
    page_request,
)
from clearway.shared.http.paging import cursor_key
from clearway.shared.settings import SettingsError

WHEN = datetime(2026, 11, 1, 12, 30, 15, 123456, tzinfo=UTC)
POS = (WHEN, "msg_01", 7)
BOUND: dict[str, Any] = {"tenant": "t_a", "scope": "/v1/things", "filters": {"status": "failed"}}


@pytest.fixture
def codec() -> CursorCodec:
    return CursorCodec(secrets.token_bytes(32))


def _flip(cursor: str, index: int) -> str:
    raw = bytearray(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    raw[index] ^= 0x01
    return base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")


def test_round_trip_keeps_every_component_and_type(codec: CursorCodec) -> None:
    cursor = codec.encode(POS, **BOUND)
    assert codec.decode(cursor, **BOUND) == POS
    assert "=" not in cursor and "+" not in cursor and "/" not in cursor  # URL-safe as is


def test_filters_bind_regardless_of_order_and_unset_values(codec: CursorCodec) -> None:
    cursor = codec.encode(POS, tenant="t", scope="/s", filters={"a": "1", "b": None, "c": "3"})
    assert codec.decode(cursor, tenant="t", scope="/s", filters={"c": "3", "a": "1"}) == POS


@pytest.mark.parametrize("index", [0, 5, -1])
def test_a_flipped_bit_anywhere_is_refused(codec: CursorCodec, index: int) -> None:
    with pytest.raises(CursorError):
        codec.decode(_flip(codec.encode(POS, **BOUND), index), **BOUND)


def test_a_truncated_or_garbage_cursor_is_refused(codec: CursorCodec) -> None:
    cursor = codec.encode(POS, **BOUND)
    for bad in (
        cursor[:-4],
        cursor[:10],
        "",
        "!!!!",
        "AQ",
        base64.urlsafe_b64encode(b"x").decode(),
    ):
        with pytest.raises(CursorError):
            codec.decode(bad, **BOUND)


def test_an_edited_position_with_the_old_mac_is_refused(codec: CursorCodec) -> None:
    cursor = codec.encode(POS, **BOUND)
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    forged = raw.replace(b"msg_01", b"msg_99")
    assert forged != raw
    with pytest.raises(CursorError):
        codec.decode(base64.urlsafe_b64encode(forged).decode(), **BOUND)


@pytest.mark.parametrize(
    "other",
    [
        {**BOUND, "tenant": "t_b"},
        {**BOUND, "scope": "/v1/other"},
        {**BOUND, "filters": {"status": "delivered"}},
        {**BOUND, "filters": {}},
    ],
    ids=["other-tenant", "other-route", "other-filter", "filter-dropped"],
)
def test_a_cursor_only_works_where_it_was_issued(codec: CursorCodec, other: Any) -> None:
    with pytest.raises(CursorError):
        codec.decode(codec.encode(POS, **BOUND), **other)


def test_another_key_does_not_accept_the_cursor(codec: CursorCodec) -> None:
    with pytest.raises(CursorError):
        CursorCodec(secrets.token_bytes(32)).decode(codec.encode(POS, **BOUND), **BOUND)


def test_the_configured_key_is_used_short_keys_are_refused_and_unset_is_random() -> None:
    key = secrets.token_bytes(32)
    assert cursor_key("audit", key) == key
    with pytest.raises(ValueError, match="at least 32"):
        cursor_key("audit", b"short")
    # Unset: a fresh random key per process (never a constant in the source).
    assert cursor_key("audit") != cursor_key("audit")
    with pytest.raises(ValueError):
        CursorCodec(b"too short")


def test_the_cursor_key_is_a_service_setting_required_in_production() -> None:
    from clearway.audit.settings import AuditSettings

    key = secrets.token_bytes(32)
    env = {"CLEARWAY_AUDIT_CURSOR_KEY": base64.b64encode(key).decode()}
    assert AuditSettings.from_env(env).cursor_secret == key
    assert AuditSettings.from_env({}).cursor_secret is None
    with pytest.raises(SettingsError) as refused:
        AuditSettings.from_env({"CLEARWAY_ENV": "production"})
    assert "CLEARWAY_AUDIT_CURSOR_KEY" in str(refused.value)


ROWS = [{"id": f"r{i:03d}"} for i in range(105)]


def build_app() -> FastAPI:
    app = create_app("paging-test", title="paging", cursor_secret=secrets.token_bytes(32))
    router = APIRouter(prefix="/v1")

    async def listing(page: PageRequest, tenant: str, kind: str | None) -> dict[str, Any]:
        filters = {"kind": kind}
        after = page.after(tenant, filters)
        start = 0 if after is None else int(str(after[0])[1:]) + 1
        rows = ROWS[start : start + page.fetch_limit]
        return page.page(
            rows,
            tenant=tenant,
            filters=filters,
            position=lambda r: (r["id"],),
            render=lambda r: r,
        )

    @router.get("/things")
    async def things(
        page: Annotated[PageRequest, Depends(page_request)],
        x_tenant: Annotated[str, Header()],
        kind: Annotated[str | None, Query()] = None,
    ) -> dict[str, Any]:
        return await listing(page, x_tenant, kind)

    @router.get("/others")
    async def others(
        page: Annotated[PageRequest, Depends(page_request)],
        x_tenant: Annotated[str, Header()],
    ) -> dict[str, Any]:
        return await listing(page, x_tenant, None)

    @router.get("/ranges")
    async def ranges(first: int, second: int) -> dict[str, int]:
        if first > second:
            raise invalid_field("first", "must not exceed second", "range")
        return {"first": first}

    app.include_router(router)
    return app


@pytest.fixture
async def client() -> Any:
    transport = httpx.ASGITransport(app=build_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


async def test_pages_walk_the_whole_list_in_the_one_shape(client: httpx.AsyncClient) -> None:
    seen: list[str] = []
    params: dict[str, Any] = {"limit": 20}
    pages = 0
    while True:
        r = await client.get("/v1/things", params=params, headers={"X-Tenant": "t_a"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) == {"data", "next_cursor", "has_more"}
        assert body["has_more"] is (body["next_cursor"] is not None)
        seen += [row["id"] for row in body["data"]]
        pages += 1
        if not body["has_more"]:
            break
        params["cursor"] = body["next_cursor"]
    assert seen == [r["id"] for r in ROWS] and pages == 6


async def test_default_limit_is_twenty(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/things", headers={"X-Tenant": "t_a"})
    assert len(r.json()["data"]) == 20 and r.json()["has_more"] is True


@pytest.mark.parametrize("limit", ["0", "-1", str(MAX_LIMIT + 1), "ten"])
async def test_limit_out_of_bounds_is_a_validation_problem(
    client: httpx.AsyncClient, limit: str
) -> None:
    r = await client.get("/v1/things", params={"limit": limit}, headers={"X-Tenant": "t_a"})
    assert r.status_code == 422
    assert [e["field"] for e in r.json()["errors"]] == ["query.limit"]


@pytest.mark.parametrize("limit", ["1", str(MAX_LIMIT)])
async def test_limit_bounds_are_inclusive(client: httpx.AsyncClient, limit: str) -> None:
    r = await client.get("/v1/things", params={"limit": limit}, headers={"X-Tenant": "t_a"})
    assert r.status_code == 200 and len(r.json()["data"]) == int(limit)


async def _first_cursor(client: httpx.AsyncClient) -> str:
    r = await client.get(
        "/v1/things", params={"limit": 5, "kind": "a"}, headers={"X-Tenant": "t_a"}
    )
    cursor: str = r.json()["next_cursor"]
    return cursor


@pytest.mark.parametrize(
    ("path", "tenant", "params"),
    [
        ("/v1/things", "t_b", {"kind": "a"}),  # another tenant replays it
        ("/v1/others", "t_a", {}),  # another route
        ("/v1/things", "t_a", {"kind": "b"}),  # another filter
    ],
    ids=["other-tenant", "other-route", "other-filter"],
)
async def test_misused_cursor_is_422_naming_cursor(
    client: httpx.AsyncClient, path: str, tenant: str, params: dict[str, str]
) -> None:
    cursor = await _first_cursor(client)
    r = await client.get(path, params={**params, "cursor": cursor}, headers={"X-Tenant": tenant})
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["type"].endswith("/validation-error")
    assert [e["field"] for e in body["errors"]] == ["query.cursor"]
    assert body["errors"][0]["type"] == "cursor_invalid"


@pytest.mark.parametrize("mangle", [lambda c: c[:-3], lambda c: _flip(c, 3), lambda c: "x" * 600])
async def test_tampered_cursor_is_422_never_500(client: httpx.AsyncClient, mangle: Any) -> None:
    bad = mangle(await _first_cursor(client))
    r = await client.get(
        "/v1/things", params={"kind": "a", "cursor": bad}, headers={"X-Tenant": "t_a"}
    )
    assert r.status_code == 422
    assert [e["field"] for e in r.json()["errors"]] == ["query.cursor"]


async def test_hand_raised_validation_problem_has_fastapis_shape(
    client: httpx.AsyncClient,
) -> None:
    ours = await client.get("/v1/ranges", params={"first": 2, "second": 1})
    theirs = await client.get("/v1/ranges", params={"first": "x", "second": 1})
    assert ours.status_code == theirs.status_code == 422
    assert ours.headers["content-type"] == theirs.headers["content-type"]
    a, b = ours.json(), theirs.json()
    assert set(a) == set(b)
    assert a["type"] == b["type"] and a["title"] == b["title"]
    assert a["errors"] == [{"field": "first", "message": "must not exceed second", "type": "range"}]
    assert a["detail"] == "Field 'first' is invalid: must not exceed second."
    assert set(b["errors"][0]) == {"field", "message", "type"}


def test_a_specific_422_keeps_the_errors_body_under_its_own_type() -> None:
    problem = ValidationProblem(
        FieldError(("header", "idempotency-key"), "reused", "reuse"),
        type_slug="idempotency-key-reused",
        title="Idempotency-Key reused",
    )
    assert problem.status == 422 and problem.type.endswith("/idempotency-key-reused")
    assert problem.extensions == {
        "errors": [{"field": "header.idempotency-key", "message": "reused", "type": "reuse"}]
    }
    assert problem.detail == "Field 'header.idempotency-key' is invalid: reused."

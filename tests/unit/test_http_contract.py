"""The OpenAPI contract the kit declares for every operation (``http.contract``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Form, Security
from pydantic import BaseModel

from clearway.shared.auth import require_platform_scope, require_scope
from clearway.shared.http import PROBLEM_MEDIA_TYPE, ApiVersions, create_app

PROBLEM = {"schema": {"$ref": "#/components/schemas/Problem"}}


class ThingIn(BaseModel):
    name: str


class OwnError(BaseModel):
    error: str


def build_app() -> FastAPI:
    app = create_app("contract-test", title="contract test", api_versions=ApiVersions())
    v1 = APIRouter(prefix="/v1")

    @v1.post("/things/{thing_id}", status_code=201, responses={409: {"description": "Taken"}})
    async def put_thing(
        thing_id: str, body: ThingIn, _p: Any = Security(require_scope("things:write"))
    ) -> dict[str, str]:
        return {"id": thing_id}

    @v1.get("/platform/things", dependencies=[Security(require_platform_scope("platform:x"))])
    async def platform_things() -> dict[str, str]:
        return {}

    @v1.get("/public")
    async def public() -> dict[str, str]:
        return {}

    @v1.post("/echo")
    async def echo(body: ThingIn) -> dict[str, str]:
        return {"name": body.name}

    @v1.post("/form")
    async def form(name: str = Form()) -> dict[str, str]:
        return {"name": name}

    @v1.post("/own", responses={400: {"model": OwnError, "description": "Its own format"}})
    async def own() -> dict[str, str]:
        return {}

    app.include_router(v1)
    return app


@pytest.fixture
def doc() -> dict[str, Any]:
    return build_app().openapi()


def test_every_operation_declares_the_edge_problems_as_problem_json(doc):
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            for status in ("400", "422", "500", "503"):
                assert status in operation["responses"], (method, path, status)
    responses = doc["components"]["responses"]
    for name, response in responses.items():
        assert set(response["content"]) == {PROBLEM_MEDIA_TYPE}, name
        example = response["content"][PROBLEM_MEDIA_TYPE]["example"]
        assert example["status"] == int(name.removeprefix("Problem"))
    assert responses["Problem503"]["headers"]["Retry-After"]
    assert "HTTPValidationError" not in str(doc)  # FastAPI's 422 is replaced, not kept
    problem = doc["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail", "instance", "correlation_id"} <= set(
        problem["required"]
    )


def test_scopes_come_from_the_routes_own_requirements(doc):
    scoped = doc["paths"]["/v1/things/{thing_id}"]["post"]
    assert scoped["security"] == [{"bearer": ["things:write"]}]
    assert "`things:write`" in scoped["description"]
    for status in ("401", "403", "404", "413", "415"):
        assert status in scoped["responses"], status
    platform = doc["paths"]["/v1/platform/things"]["get"]
    assert platform["security"] == [{"bearer": ["platform:x"]}]
    public = doc["paths"]["/v1/public"]["get"]
    assert "security" not in public
    assert not {"401", "403", "404", "413", "415"} & set(public["responses"])
    schemes = doc["components"]["securitySchemes"]
    assert schemes == {"bearer": schemes["bearer"]}
    assert schemes["bearer"]["scheme"] == "bearer"


def test_a_route_declared_problem_gets_the_problem_body(doc):
    conflict = doc["paths"]["/v1/things/{thing_id}"]["post"]["responses"]["409"]
    assert conflict == {"description": "Taken", "content": {PROBLEM_MEDIA_TYPE: PROBLEM}}


def test_a_routes_own_error_format_is_kept_next_to_the_edges_problem(doc):
    own = doc["paths"]["/v1/own"]["post"]["responses"]["400"]["content"]
    assert own["application/json"]["schema"] == {"$ref": "#/components/schemas/OwnError"}
    assert own[PROBLEM_MEDIA_TYPE] == PROBLEM


def test_probes_stay_out_of_the_document(doc):
    assert not {"/healthz", "/readyz", "/metrics"} & set(doc["paths"])


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as http:
        yield http


async def test_a_body_in_a_media_type_the_route_does_not_parse_is_a_415(client):
    r = await client.post("/v1/echo", content=b"name=x", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    assert r.headers["content-type"].startswith(PROBLEM_MEDIA_TYPE)
    assert r.headers["accept"] == "application/json"
    assert r.json()["type"].endswith("/unsupported-media-type")
    r = await client.post(
        "/v1/form", content=b'{"name": "x"}', headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 415
    assert "application/x-www-form-urlencoded" in r.headers["accept"]


async def test_json_and_plus_json_bodies_are_still_validated_as_422(client):
    r = await client.post("/v1/echo", json={"nom": "x"})
    assert r.status_code == 422
    r = await client.post(
        "/v1/echo", content=b'{"nom": "x"}', headers={"Content-Type": "application/merge+json"}
    )
    assert r.status_code == 422
    assert (await client.post("/v1/echo", json={"name": "x"})).status_code == 200
    assert (await client.post("/v1/form", data={"name": "x"})).status_code == 200

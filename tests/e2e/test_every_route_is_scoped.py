"""Every route of every resource service: the shared token check, route by route.

For each route that declares scopes (``route_scopes``): a token lacking the
route's scope gets 403 naming it; a token with it gets past authorisation (any
answer but 401/403); an expired, ``alg: none`` or wrong-audience token gets 401.
Routes without a scope must be on the short list of public ones. Each service
is built by its own bootstrap, with the verifier that wires (fed the test
issuer's JWK Set the way the service's own tests configure it), and nothing
past authorisation may answer 5xx. The consent service is the issuer itself;
its own suite runs the same matrix.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from fastapi import FastAPI

from clearway.shared.auth import PLATFORM_TENANT, route_scopes
from clearway.shared.testing.issuer import TestIssuer
from tests.e2e.apps import ISSUER, RESOURCE_SERVICES

pytestmark = pytest.mark.integration

PUBLIC = {
    "transfer": {"/healthz", "/readyz", "/metrics"},
    "webhooks": {
        "/healthz",
        "/readyz",
        "/metrics",
        "/v1/event-types",
        "/v1/webhooks/signing-keys",
    },
    "audit": {"/healthz", "/readyz", "/metrics", "/v1/audit/keys"},
    "rail": {"/healthz", "/readyz", "/metrics"},
    "vault": {"/healthz", "/readyz", "/metrics"},
}


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its own lifespan (so its own verifier), called in-process."""
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://svc"
        ) as http:
            yield http


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "does_not_exist_1", path)


@pytest.mark.parametrize("service", sorted(RESOURCE_SERVICES))
async def test_every_route_refuses_missing_scopes_and_bad_tokens_and_passes_with_its_scope(
    service, platform, tmp_path
):
    issuer = TestIssuer(ISSUER)
    app = RESOURCE_SERVICES[service](platform, issuer, tmp_path)
    scopes = route_scopes(app)
    public = {path for (_, path), need in scopes.items() if not need}
    assert public <= PUBLIC[service], f"routes without a scope: {public - PUBLIC[service]}"
    scoped = {k: v for k, v in scopes.items() if v}
    assert scoped, "a service with no scoped route is not protected at all"
    print(f"{service}: {len(scoped)} scoped routes, public {sorted(public)}")
    audience = f"clearway-{service}"  # the audience each service is registered under
    # Same issuer name, same claims, but a key the service was never given.
    impostor = TestIssuer(ISSUER)

    def token(scope: set[str], **kw) -> str:
        # platform routes (/v1/platform/…) also want a client of the operator tenant
        operator = any(s.startswith("platform:") for s in scope)
        return issuer.token(
            sub="usr_route_check",
            client_id="cli_route_check",
            scopes=sorted(scope),
            audience=kw.pop("audience", audience),
            tenant=PLATFORM_TENANT if operator else "tnt_route_check",
            **kw,
        )

    all_scopes = set().union(*scoped.values())
    async with running(app) as http:
        for (method, path), need in sorted(scoped.items()):
            url = concrete(path)
            body = {} if method in {"POST", "PUT", "PATCH"} else None
            headers = {"Idempotency-Key": "route-check"}

            async def call(tok: str | None):
                h = dict(headers)
                if tok is not None:
                    h["Authorization"] = f"Bearer {tok}"
                return await http.request(method, url, json=body, headers=h)

            without = await call(token(all_scopes - need or {"openid"}))
            assert without.status_code == 403, (method, path, without.text)
            assert sorted(need)[0] in without.text

            granted = await call(token(need))
            # Past authorisation an empty body or an unknown id is the client's
            # fault: a 4xx (or a success), never a crash.
            assert granted.status_code < 500, (method, path, granted.status_code, granted.text)
            assert granted.status_code not in (401, 403), (method, path, granted.text)

            for bad in (
                token(need, ttl_s=-120),
                token(need, audience="clearway-somebody-else"),
                impostor.token(
                    sub="usr_route_check",
                    client_id="cli_route_check",
                    scopes=sorted(need),
                    audience=audience,
                    tenant="tnt_route_check",
                ),
                issuer.alg_none_token(
                    "usr_route_check", "cli_route_check", sorted(need), audience, "tnt_route_check"
                ),
                None,
            ):
                r = await call(bad)
                assert r.status_code == 401, (method, path, r.text)
                assert r.headers["content-type"].startswith("application/problem+json")

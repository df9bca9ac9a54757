"""Service tokens (client credentials) between services: cached, refreshed before
expiry, fetched again when the callee refuses one, fetch retried with backoff.

Real HTTP on 127.0.0.1: a token endpoint signing with a test issuer and a callee
that verifies with the kit's ``TokenVerifier``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from fastapi import FastAPI, HTTPException, Security

from clearway.shared.auth import Principal, TokenVerifier, require_scope
from clearway.shared.auth.client_credentials import ServiceTokenSource, TokenUnavailable
from clearway.shared.backoff import Backoff
from clearway.shared.http import create_app
from clearway.shared.testing.helpers import serve
from clearway.shared.testing.issuer import TestIssuer
from clearway.shared.testing.token_endpoint import TokenEndpoint

pytestmark = pytest.mark.integration

AUDIENCE = "clearway-callee"
QUICK = Backoff(base=0.01, cap=0.02, max_attempts=3)


def callee(issuer: TestIssuer, refuse: set[str]) -> FastAPI:
    """A service protecting one route with ``callee:use``; tokens in ``refuse`` get a 401
    (as if revoked after the caller cached them)."""
    app = create_app("callee", title="callee")
    app.state.token_verifier = TokenVerifier(issuer.issuer, AUDIENCE, issuer.jwks())
    app.state.seen = []

    @app.get("/v1/thing")
    async def thing(principal: Principal = Security(require_scope("callee:use"))) -> dict:
        if principal.jti in refuse:
            raise HTTPException(401, detail="revoked", headers={"WWW-Authenticate": "Bearer"})
        app.state.seen.append(principal.jti)
        return {"client": principal.client_id}

    return app


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@asynccontextmanager
async def setup(ttl_s: float = 300, refuse: set[str] | None = None) -> AsyncIterator[tuple]:
    issuer = TestIssuer()
    endpoint = TokenEndpoint(issuer, ttl_s=ttl_s)
    secret = endpoint.register("clearway-caller", ["callee:use"], audience=AUDIENCE)
    app = callee(issuer, refuse if refuse is not None else set())
    async with serve(endpoint.app()) as token_url, serve(app) as url:
        yield endpoint, secret, f"{token_url}/oauth/token", url, app


async def test_a_token_is_cached_and_replaced_before_it_expires():
    clock = Clock()
    async with setup(ttl_s=100) as (endpoint, secret, token_url, url, app):
        source = ServiceTokenSource(
            token_url, "clearway-caller", secret, scope="callee:use", clock=clock
        )
        async with httpx.AsyncClient(base_url=url, auth=source) as http:
            for _ in range(5):
                assert (await http.get("/v1/thing")).status_code == 200
            assert endpoint.issued == 1, "one token for many calls"
            clock.now += 79  # within the first 80% of its lifetime
            assert (await http.get("/v1/thing")).status_code == 200
            assert endpoint.issued == 1
            clock.now += 2  # past 80%: replaced before it expires at 100
            assert (await http.get("/v1/thing")).status_code == 200
            assert endpoint.issued == 2
        await source.aclose()
        assert len(set(app.state.seen)) == 2


async def test_a_401_from_the_callee_fetches_a_fresh_token_and_repeats_the_call_once():
    refuse: set[str] = set()
    async with setup(refuse=refuse) as (endpoint, secret, token_url, url, app):
        source = ServiceTokenSource(token_url, "clearway-caller", secret, scope="callee:use")
        async with httpx.AsyncClient(base_url=url, auth=source) as http:
            assert (await http.get("/v1/thing")).status_code == 200
            refuse.add(app.state.seen[-1])  # the cached token is revoked
            r = await http.get("/v1/thing")
            assert r.status_code == 200 and endpoint.issued == 2
        await source.aclose()


async def test_an_unreachable_token_endpoint_is_retried_then_reported_as_unavailable():
    async with setup() as (endpoint, secret, token_url, _url, _app):
        source = ServiceTokenSource(
            token_url, "clearway-caller", secret, scope="callee:use", backoff=QUICK
        )
        endpoint.refusing = True
        with pytest.raises(TokenUnavailable):
            await source.token()
        assert endpoint.requests == 3, "retried with the backoff policy"
        endpoint.refusing = False
        assert await source.token()
        wrong = ServiceTokenSource(
            token_url, "clearway-caller", "not-the-secret", scope="callee:use", backoff=QUICK
        )
        before = endpoint.requests
        with pytest.raises(TokenUnavailable, match="invalid_client"):
            await wrong.token()
        assert endpoint.requests == before + 1, "a refused client is not retried"
        await source.aclose()
        await wrong.aclose()


async def test_a_scope_the_client_does_not_hold_is_refused_by_the_token_endpoint():
    async with setup() as (_endpoint, secret, token_url, _url, _app):
        source = ServiceTokenSource(token_url, "clearway-caller", secret, scope="admin:keys")
        with pytest.raises(TokenUnavailable, match="invalid_scope"):
            await source.token()
        await source.aclose()

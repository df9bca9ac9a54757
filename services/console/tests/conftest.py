"""Fixtures for the console's own tests: the console behind a real HTTP server, signing
in at a real local OAuth server that stands for the consent service (the whole platform
walk, with the real consent service, is tests/e2e/test_console.py)."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest_asyncio
from fastapi import FastAPI, Form, Request

from clearway.console.bootstrap import build_app
from clearway.console.settings import ConsoleSettings
from clearway.shared.testing.helpers import free_port, serve


def _b64(doc: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()


@dataclass
class Issuer:
    """What the stand-in authorization server saw and will answer."""

    url: str = ""
    pushed: list[dict[str, str]] = field(default_factory=list)
    redeemed: list[dict[str, str]] = field(default_factory=list)
    revoked: list[str] = field(default_factory=list)
    token_ttl_s: float = 300
    scope: str = "payments:read webhooks:read webhooks:replay audit:read consents:read"

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/oauth/par", status_code=201)
        async def par(request: Request) -> dict[str, Any]:
            self.pushed.append(dict(await request.form()))
            return {"request_uri": f"urn:ietf:params:oauth:request_uri:{len(self.pushed)}"}

        @app.post("/oauth/token")
        async def token(request: Request) -> dict[str, Any]:
            form = dict(await request.form())
            self.redeemed.append(form)
            claims = {
                "sub": "usr_alice",
                "tenant": "tnt_demo_alpha",
                "exp": time.time() + self.token_ttl_s,
                "scope": self.scope,
            }
            access = f"{_b64({'alg': 'none'})}.{_b64(claims)}.sig"
            return {"access_token": access, "scope": self.scope, "token_type": "Bearer"}

        @app.post("/oauth/revoke")
        async def revoke(token: str = Form(...)) -> dict[str, Any]:
            self.revoked.append(token)
            return {}

        return app


@dataclass
class Console:
    url: str
    issuer: Issuer
    http: httpx.AsyncClient

    async def sign_in(self, next_path: str = "/") -> httpx.Response:
        """Start a sign-in and come back to the callback as the issuer would send the
        browser; returns the callback's answer (its cookie is the session)."""
        start = await self.http.get("/auth/sign-in", params={"next": next_path})
        assert start.status_code == 303, start.text
        state = self.issuer.pushed[-1]["state"]
        return await self.http.get(
            "/auth/callback", params={"state": state, "code": "c0de", "iss": self.issuer.url}
        )


@pytest_asyncio.fixture
async def issuer() -> AsyncIterator[Issuer]:
    found = Issuer()
    async with serve(found.app()) as url:
        found.url = url
        yield found


@pytest_asyncio.fixture
async def console(issuer: Issuer) -> AsyncIterator[Console]:
    port = free_port()
    settings = ConsoleSettings(
        port=port,
        public_url=f"http://127.0.0.1:{port}",
        consent_url=issuer.url,
        client_secret="s3cret",
        # nothing listens here: the pages that read them are walked in tests/e2e
        transfer_url="http://127.0.0.1:9",
        webhooks_url="http://127.0.0.1:9",
        audit_url="http://127.0.0.1:9",
    )
    async with (
        serve(build_app(settings), port) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        yield Console(url, issuer, http)

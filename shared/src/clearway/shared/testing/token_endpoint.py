"""A token endpoint for tests: the client credentials grant of the consent service,
signed by a :class:`~clearway.shared.testing.issuer.TestIssuer`.

Serve it with :func:`~clearway.shared.testing.helpers.serve`; services under test
get ``<url>/oauth/token`` as their token URL and ``<url>/.well-known/jwks.json``
as their JWKS URL, so service-to-service calls carry real tokens over real HTTP::

    endpoint = TokenEndpoint(issuer, ttl_s=300)
    secret = endpoint.register("clearway-transfer", ["rail:charges"], audience="clearway-rail")
    async with serve(endpoint.app()) as url: ...
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from clearway.shared.testing.issuer import TestIssuer


@dataclass
class _Client:
    secret: str
    scopes: frozenset[str]
    audience: str | Mapping[str, str]

    def audience_for(self, scopes: set[str]) -> str | list[str]:
        """The token's ``aud``: fixed, or the services of the scopes asked for."""
        if isinstance(self.audience, str):
            return self.audience
        return sorted({self.audience[s] for s in scopes})


@dataclass
class TokenEndpoint:
    """Issues ``ttl_s``-second tokens to registered clients; counts what it issued."""

    issuer: TestIssuer
    ttl_s: float = 300
    requests: int = 0
    issued: int = 0
    refusing: bool = False
    """While true, every request gets a 503 (the token endpoint is down)."""
    _clients: dict[str, _Client] = field(default_factory=dict)

    def register(
        self, client_id: str, scopes: list[str], *, audience: str | Mapping[str, str]
    ) -> str:
        """Register a confidential client and return its new secret. ``audience`` is
        one audience, or scope → audience (as the consent service derives ``aud``
        from the scope catalog) for a client calling several services."""
        secret = secrets.token_urlsafe(24)
        self._clients[client_id] = _Client(secret, frozenset(scopes), audience)
        return secret

    def app(self) -> Starlette:
        """The ASGI app: ``POST /oauth/token`` and ``GET /.well-known/jwks.json``."""
        return Starlette(
            routes=[
                Route("/oauth/token", self._token, methods=["POST"]),
                Route("/.well-known/jwks.json", self._jwks),
            ]
        )

    async def _jwks(self, request: Request) -> JSONResponse:
        return JSONResponse(self.issuer.jwks())

    async def _token(self, request: Request) -> JSONResponse:
        self.requests += 1
        if self.refusing:
            return JSONResponse({"error": "temporarily_unavailable"}, status_code=503)
        form = await request.form()
        client_id, secret = _basic(request.headers.get("authorization", ""))
        client = self._clients.get(client_id)
        if client is None or not secrets.compare_digest(client.secret, secret):
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        if form.get("grant_type") != "client_credentials":
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        wanted = set(str(form.get("scope") or "").split()) or set(client.scopes)
        if not wanted <= client.scopes:
            return JSONResponse({"error": "invalid_scope"}, status_code=400)
        token = self.issuer.token(
            sub=client_id,
            client_id=client_id,
            scopes=sorted(wanted),
            audience=client.audience_for(wanted),
            ttl_s=self.ttl_s,
        )
        self.issued += 1
        body = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": self.ttl_s,
            "scope": " ".join(sorted(wanted)),
        }
        return JSONResponse(body, headers={"Cache-Control": "no-store"})


def _basic(header: str) -> tuple[str, str]:
    if not header.lower().startswith("basic "):
        return "", ""
    try:
        raw = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return "", ""
    cid, _, secret = raw.partition(":")
    return unquote(cid), unquote(secret)

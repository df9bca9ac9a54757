"""The console as an OAuth client of the consent service (docs/design.md §7): a pushed
authorization request (RFC 9126) with PKCE S256 (RFC 7636), the authorization code
grant (RFC 6749 §4.1) with client authentication, ``iss`` checked on the callback
(RFC 9207), and revocation at sign-out (RFC 7009).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass
from typing import Any

import httpx

from clearway.console.settings import ConsoleSettings

#: Every scope the console may use; the consent service narrows them to the user's role.
SCOPES = (
    "audit:read",
    "consents:read",
    "payments:read",
    "platform:audit",
    "platform:clients",
    "platform:dead-letters",
    "webhooks:endpoints:manage",
    "webhooks:read",
    "webhooks:replay",
)


class SignInFailed(Exception):
    """The consent service refused a step of the sign-in (the message is safe to show)."""


@dataclass(frozen=True)
class Grant:
    token: str
    subject: str
    tenant: str
    scopes: frozenset[str]
    expires_at: float


def pkce_pair() -> tuple[str, str]:
    """(verifier, S256 challenge), RFC 7636 §4.1-4.2."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class ConsentClient:
    def __init__(self, settings: ConsoleSettings, http: httpx.AsyncClient) -> None:
        self.settings = settings
        self.http = http

    @property
    def _auth(self) -> tuple[str, str]:
        secret = self.settings.client_secret
        return self.settings.client_id, secret.get_secret_value() if secret else ""

    async def push(self, state: str, challenge: str) -> str:
        """The authorize URL of a fresh pushed sign-in request."""
        r = await self.http.post(
            f"{self.settings.issuer}/oauth/par",
            data={
                "response_type": "code",
                "client_id": self.settings.client_id,
                "redirect_uri": self.settings.redirect_uri,
                "scope": " ".join(SCOPES),
                "state": state,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            },
            auth=self._auth,
        )
        if r.status_code != 201:
            raise SignInFailed("the sign-in service refused the request")
        query = httpx.QueryParams(
            {"client_id": self.settings.client_id, "request_uri": r.json()["request_uri"]}
        )
        return f"{self.settings.issuer}/oauth/authorize?{query}"

    async def redeem(self, code: str, verifier: str) -> Grant:
        r = await self.http.post(
            f"{self.settings.issuer}/oauth/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": self.settings.redirect_uri,
                "code_verifier": verifier,
            },
            auth=self._auth,
        )
        if r.status_code != 200:
            raise SignInFailed("the sign-in code was refused; sign in again")
        body = r.json()
        claims = _payload(body["access_token"])
        return Grant(
            token=body["access_token"],
            subject=str(claims["sub"]),
            tenant=str(claims["tenant"]),
            scopes=frozenset(str(body.get("scope", "")).split()),
            expires_at=float(claims["exp"]),
        )

    async def revoke(self, token: str) -> None:
        """RFC 7009; a failure is not the user's problem (the token expires soon anyway)."""
        try:
            await self.http.post(
                f"{self.settings.issuer}/oauth/revoke", data={"token": token}, auth=self._auth
            )
        except httpx.HTTPError:
            return


def _payload(token: str) -> dict[str, Any]:
    """The claims of a token the console just received from the token endpoint itself,
    over the back channel with client authentication (as OpenID Connect Core §3.1.3.7
    allows for an ID token so received): read for display and navigation only; every
    service verifies the token on each call."""
    part = token.split(".")[1]
    doc: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return doc

"""Short-lived service credentials: client-credentials tokens for internal calls.

A service calling another one (the transfer executor calling the rail) gets an
RFC 9068 access token from the consent service's token endpoint with the OAuth
2.0 client credentials grant (RFC 6749 §4.4), for one narrow scope (the callee's
audience follows from it), and sends it as a bearer token (RFC 6750 §2.1)::

    source = ServiceTokenSource(token_url, "clearway-transfer", secret, scope="rail:charges")
    http = httpx.AsyncClient(base_url=rail_url, auth=source)

The token is cached and replaced before it expires (after ``refresh_at`` of its
lifetime), so a request never leaves with a token in its last moments; fetching
one is retried with the kit's :class:`~clearway.shared.backoff.Backoff`. A 401
from the callee (its verifier may have seen a revocation or a key rotation the
cache has not) forces one fresh token and one repeat of the request
(docs/design.md §7).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass

import httpx
from pydantic import SecretStr

from clearway.shared.backoff import Backoff, RetriesExhausted, retry

log = logging.getLogger(__name__)

#: Token fetches: quick first retries, a few seconds at most, then the caller decides.
TOKEN_BACKOFF = Backoff(base=0.2, cap=5.0, max_attempts=6)


class TokenUnavailable(ConnectionError):
    """No access token could be obtained (token endpoint down, or this client refused).

    A ``ConnectionError``: to the caller it is infrastructure trouble, retried later,
    never a reason to fail the business operation that needed the call."""


class _Retryable(Exception):
    """A transient token-endpoint failure (transport error, 5xx, 429)."""


@dataclass(frozen=True)
class _Token:
    value: str
    refresh_after: float  # clock time after which a new token is fetched


class ServiceTokenSource(httpx.Auth):
    """Client-credentials access tokens for one scope, as an httpx auth flow.

    ``refresh_at`` is the fraction of a token's lifetime after which the next
    request fetches a new one first (0.8: a five-minute token is replaced after
    four). Concurrent requests share one fetch.
    """

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: SecretStr | str,
        *,
        scope: str,
        resource: str | None = None,
        refresh_at: float = 0.8,
        backoff: Backoff = TOKEN_BACKOFF,
        timeout_s: float = 5.0,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0.0 < refresh_at < 1.0:
            raise ValueError("refresh_at is a fraction of the token lifetime, between 0 and 1")
        self.token_url = token_url
        self.client_id = client_id
        self.scope = scope
        self.resource = resource
        self.fetch_count = 0
        self._secret = (
            client_secret if isinstance(client_secret, SecretStr) else SecretStr(client_secret)
        )
        self._refresh_at = refresh_at
        self._backoff = backoff
        self._timeout_s = timeout_s
        self._client = client
        self._own_client = client is None
        self._clock = clock
        self._token: _Token | None = None
        self._lock = asyncio.Lock()

    async def token(self, *, stale: str | None = None) -> str:
        """A usable access token: the cached one while fresh, else a new one.

        ``stale`` names a token the callee refused; if it is still the cached
        one, a new token is fetched even though it has not expired."""
        async with self._lock:
            cached = self._token
            fresh = cached is not None and self._clock() < cached.refresh_after
            if cached is not None and fresh and cached.value != stale:
                return cached.value
            self._token = await self._fetch_with_retries()
            return self._token.value

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token = await self.token()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401:
            # RFC 6750 §3.1 invalid_token: the callee no longer accepts this token
            # (revoked, signed by a withdrawn key); one fresh token, one repeat.
            await response.aread()
            request.headers["Authorization"] = f"Bearer {await self.token(stale=token)}"
            yield request

    async def aclose(self) -> None:
        """Close the HTTP client this source created (not one it was given)."""
        if self._own_client and self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _fetch_with_retries(self) -> _Token:
        try:
            return await retry(
                self._fetch,
                self._backoff,
                what=f"access token for {self.client_id} ({self.scope})",
                retry_on=(_Retryable,),
            )
        except RetriesExhausted as e:
            raise TokenUnavailable(f"token endpoint unavailable: {e.__cause__}") from None

    async def _fetch(self) -> _Token:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout_s)
        form = {"grant_type": "client_credentials", "scope": self.scope}
        if self.resource:
            form["resource"] = self.resource  # RFC 8707 §2
        started = self._clock()
        try:
            # RFC 6749 §2.3.1: client_secret_basic
            r = await self._client.post(
                self.token_url,
                data=form,
                auth=(self.client_id, self._secret.get_secret_value()),
                headers={"Accept": "application/json"},
            )
        except httpx.TransportError as e:
            raise _Retryable(f"{type(e).__name__} from the token endpoint") from None
        if r.status_code >= 500 or r.status_code == 429:
            raise _Retryable(f"token endpoint answered {r.status_code}")
        if r.status_code != 200:
            # RFC 6749 §5.2: invalid_client, invalid_scope … a configuration problem;
            # only the error code is logged, never the response as a whole.
            code = _error_code(r)
            log.error("token endpoint refused client %s: %s", self.client_id, code)
            raise TokenUnavailable(f"token endpoint refused client {self.client_id}: {code}")
        try:
            body = r.json()
            value = str(body["access_token"])
            lifetime = float(body["expires_in"])
        except (ValueError, KeyError, TypeError):
            raise _Retryable("token endpoint answered without access_token/expires_in") from None
        if body.get("token_type", "").lower() != "bearer" or lifetime <= 0:
            raise TokenUnavailable("token endpoint issued no usable bearer token")
        self.fetch_count += 1
        return _Token(value, refresh_after=started + lifetime * self._refresh_at)


def _error_code(r: httpx.Response) -> str:
    try:
        code = r.json().get("error")
    except ValueError:
        code = None
    if isinstance(code, str) and code.isascii() and len(code) < 64:
        return code
    return str(r.status_code)

"""Where the verifier gets the issuer's public keys: a static JWKS or one fetched over HTTP.

The consent service publishes its signing keys at ``<issuer>/.well-known/jwks.json``
(RFC 7517 JWK Set). Keys rotate: a new ``kid`` appears in the set before it signs
anything, and the old one stays until the last token it signed has expired.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, JWKRegistry, OKPKey

log = logging.getLogger(__name__)

#: A JWK Set as JSON (``{"keys": [...]}``).
Jwks = Mapping[str, Any]
#: An async callable returning the current JWK Set. Each call may fetch, so a custom
#: source should rate-limit itself the way :class:`HttpJwksSource` does.
JwksFetcher = Callable[[], Awaitable[Jwks]]
#: The public keys the verifier accepts (EC and OKP only), by ``kid``.
VerificationKey = ECKey | OKPKey


class JwksUnavailable(Exception):
    """The issuer's JWK Set cannot be fetched or read (a server problem, not the caller's)."""


class HttpJwksSource:
    """Fetches the issuer's JWK Set with httpx, caching it between fetches.

    Calling the source returns the cached set when it was fetched less than
    ``min_refresh_interval_s`` ago, so a flood of tokens carrying made-up ``kid``s
    costs the issuer at most one request per interval. Concurrent callers share
    one request.
    """

    def __init__(
        self,
        url: str,
        min_refresh_interval_s: float = 5.0,
        *,
        timeout_s: float = 5.0,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.min_refresh_interval_s = min_refresh_interval_s
        self.fetch_count = 0
        self._timeout_s = timeout_s
        self._client = client
        self._clock = clock
        self._cached: Jwks | None = None
        self._fetched_at: float | None = None
        self._lock = asyncio.Lock()

    @classmethod
    def for_issuer(cls, issuer: str, min_refresh_interval_s: float = 5.0) -> HttpJwksSource:
        """The source at the issuer's well-known location, ``<issuer>/.well-known/jwks.json``."""
        return cls(f"{issuer.rstrip('/')}/.well-known/jwks.json", min_refresh_interval_s)

    async def __call__(self) -> Jwks:
        """The issuer's JWK Set, fetched unless the cached one is fresher than the interval."""
        async with self._lock:
            if not self._may_refresh():
                if self._cached is None:
                    # The last attempt failed: a down issuer must not be hammered.
                    raise JwksUnavailable(f"JWKS at {self.url} unavailable; retrying later")
                return self._cached
            self._fetched_at = self._clock()
            self._cached = await self._fetch()
            return self._cached

    def _may_refresh(self) -> bool:
        if self._fetched_at is None:
            return True
        return self._clock() - self._fetched_at >= self.min_refresh_interval_s

    async def _fetch(self) -> Jwks:
        self.fetch_count += 1
        try:
            if self._client is not None:
                response = await self._client.get(self.url, timeout=self._timeout_s)
            else:
                async with httpx.AsyncClient(timeout=self._timeout_s) as client:
                    response = await client.get(self.url)
            response.raise_for_status()
            document = response.json()
        except (httpx.HTTPError, ValueError) as error:
            raise JwksUnavailable(f"cannot fetch JWKS from {self.url}: {error}") from error
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise JwksUnavailable(f"{self.url} did not return a JWK Set")
        return document


def parse_jwks(jwks: Jwks) -> dict[str, VerificationKey]:
    """The usable signature keys of a JWK Set by ``kid``.

    Keys without a ``kid``, meant for encryption (``use`` other than ``sig``) or of a
    type this platform never signs with (RSA, oct) are left out, so they can never
    verify anything.
    """
    keys: dict[str, VerificationKey] = {}
    entries = jwks.get("keys")
    if not isinstance(entries, list):
        raise JwksUnavailable("JWKS has no 'keys' list")
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("kty") not in ("EC", "OKP"):
            continue
        kid = entry.get("kid")
        if not isinstance(kid, str) or not kid or entry.get("use", "sig") != "sig":
            continue
        try:
            key = JWKRegistry.import_key(entry)
        except (JoseError, ValueError, TypeError) as error:
            log.warning("skipping unreadable JWK %s: %s", kid, error)
            continue
        if isinstance(key, ECKey | OKPKey):
            keys[kid] = key
    return keys

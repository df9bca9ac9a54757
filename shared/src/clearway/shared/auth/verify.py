"""Verification of the platform's OAuth 2.0 access tokens (RFC 9068 JWT profile).

Every service checks tokens here, never by hand: one place decides which algorithms
are acceptable (ES256 and EdDSA only, so no algorithm confusion with ``none``,
HMAC or RSA), which claims are required, and whether a token was revoked.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from joserfc.errors import JoseError
from joserfc.jws import JWSRegistry

from clearway.shared.auth.jwks import (
    Jwks,
    JwksFetcher,
    JwksUnavailable,
    VerificationKey,
    parse_jwks,
)
from clearway.shared.auth.principal import InvalidToken, Principal
from clearway.shared.auth.revocation import RevocationSet

log = logging.getLogger(__name__)

# RFC 9068 §4: the header "typ" is "at+jwt"; media types are case-insensitive and
# "application/" may be present (RFC 7515 §4.1.9).
_ACCEPTED_TYP = frozenset({"at+jwt", "application/at+jwt"})
# Algorithm -> (key type, curves) the key named by "kid" must have. "Ed25519" is the
# fully-specified name RFC 9864 gives EdDSA over Ed25519.
_ALLOWED_ALGS: Mapping[str, tuple[str, frozenset[str]]] = {
    "ES256": ("EC", frozenset({"P-256"})),
    "EdDSA": ("OKP", frozenset({"Ed25519", "Ed448"})),
    "Ed25519": ("OKP", frozenset({"Ed25519"})),
}
_MAX_TOKEN_BYTES = 8192
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
#: Unknown-kid refreshes and periodic re-reads of an HTTP JWKS after this long, so a
#: key the issuer withdrew stops verifying without a restart.
JWKS_MAX_AGE_S = 300.0
#: At most one refresh for unknown ``kid``s per this interval, whatever the source: a
#: flood of tokens with made-up ``kid``s costs one fetch, not one per token.
UNKNOWN_KID_REFRESH_S = 5.0


_VERIFIED_CACHE_SIZE = 10_000


class TokenVerifier:
    """Verifies RFC 9068 access tokens issued by ``issuer`` for ``audience``.

    ``jwks_source`` is a JWK Set (dict) or an async callable returning one, such as
    :class:`~clearway.shared.auth.jwks.HttpJwksSource`. An unknown ``kid`` triggers
    one refresh (the source rate-limits it), so tokens signed by a freshly rotated
    key are accepted on first sight.

    Safe under concurrency: cache entries are dropped with ``pop`` (two requests with
    the same stale token never raise ``KeyError``), concurrent refreshes share one
    fetch, unknown-``kid`` refreshes are rate-limited here (not only by the source),
    and a refresh keeps the key object of every ``kid`` whose JWK did not change, so
    it does not invalidate the verified-token cache.
    """

    def __init__(
        self,
        issuer: str,
        audience: str,
        jwks_source: Jwks | JwksFetcher,
        leeway_s: float = 30,
        revocations: RevocationSet | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.leeway_s = leeway_s
        self.revocations = revocations
        self._clock = clock
        self._fetch: JwksFetcher | None = None
        self._keys: dict[str, VerificationKey] = {}
        # Signature checks cost ~0.5 ms (ES256) and a client reuses its token for
        # minutes: remember what verified, with the key that verified it. Expiry,
        # key withdrawal and revocation are still checked on every request.
        self._verified: dict[str, tuple[str, VerificationKey, float, Principal]] = {}
        self._loaded_at: float | None = None
        self._unknown_refresh_at: float | None = None
        self._refreshing: asyncio.Lock | None = None
        self._generation = 0  # completed fetches, so concurrent refreshes share one
        if callable(jwks_source):
            self._fetch = jwks_source
        else:
            self._keys = parse_jwks(jwks_source)

    async def verify(self, token: str, *, at: float | None = None) -> Principal:
        """The principal of a valid, unrevoked token; :class:`InvalidToken` otherwise.

        ``at`` (epoch seconds) is the time of use the token's lifetime (``exp``, ``nbf``,
        ``iat``, with the leeway) is judged at; unset: now. Only a consumer of commands
        judged at their submission passes it (docs/design.md §3). Everything else is
        judged as of now whatever ``at`` says: the key must still be published and the
        token must not be revoked, so a grant revoked since never acts.
        """
        when = self._clock() if at is None else at
        cached = self._verified.get(token)
        principal: Principal | None = None
        if cached is not None:
            kid, key, exp, principal = cached
            if self._clock() >= exp + self.leeway_s or await self._key_or_none(kid) is not key:
                # pop, not del: a concurrent request may have dropped it during the await
                self._verified.pop(token, None)
                principal = None
            else:
                # verified once, but perhaps for another time of use
                _check_lifetime(principal.claims, when, self.leeway_s)
        if principal is None:
            header, signing_input, signature = _split(token)
            alg = _check_header(header)
            key = await self._key(header["kid"])
            _check_signature(alg, key, signing_input, signature)
            claims = _decode_json(signing_input.split(b".")[1], "payload")
            principal = self._principal(claims, when)
            if self._clock() >= principal.expires_at.timestamp() + self.leeway_s:
                # valid only at a past time of use: not worth a cache entry
                return self._unrevoked(principal)
            while len(self._verified) >= _VERIFIED_CACHE_SIZE:
                self._verified.pop(next(iter(self._verified)), None)  # oldest first
            self._verified[token] = (
                header["kid"],
                key,
                principal.expires_at.timestamp(),
                principal,
            )
        return self._unrevoked(principal)

    def _unrevoked(self, principal: Principal) -> Principal:
        if self.revocations is not None:
            reason = self.revocations.is_revoked(principal)
            if reason is not None:
                raise InvalidToken(f"token revoked: {reason}")
        return principal

    async def _key_or_none(self, kid: str) -> VerificationKey | None:
        try:
            return await self._key(kid)
        except InvalidToken:
            return None

    async def _key(self, kid: str) -> VerificationKey:
        if self._fetch is not None:
            if self._loaded_at is None or self._clock() - self._loaded_at > JWKS_MAX_AGE_S:
                await self._refresh(self._generation)
            elif kid not in self._keys:
                if self._may_refresh_for_unknown_kid():
                    await self._refresh(self._generation)
                elif self._refreshing is not None and self._refreshing.locked():
                    # a refresh is in flight (perhaps for this very kid): wait for it
                    async with self._refreshing:
                        pass
        key = self._keys.get(kid)
        if key is None:
            raise InvalidToken("unknown kid")
        return key

    def _may_refresh_for_unknown_kid(self) -> bool:
        now = self._clock()
        last = self._unknown_refresh_at
        if last is not None and now - last < UNKNOWN_KID_REFRESH_S:
            return False
        self._unknown_refresh_at = now
        return True

    async def _refresh(self, seen: int) -> None:
        """Fetch and merge the JWKS once, unless a concurrent caller finished a fetch
        since this one decided to (``seen`` is the generation it saw)."""
        if self._refreshing is None:
            self._refreshing = asyncio.Lock()
        async with self._refreshing:
            if self._generation != seen:
                return
            await self._fetch_keys()
            self._generation += 1

    async def _fetch_keys(self) -> None:
        assert self._fetch is not None
        try:
            fresh = parse_jwks(await self._fetch())
            # Keep the objects of unchanged keys: the verified-token cache checks key
            # identity, and a re-read must not turn into a cache flush.
            self._keys = {
                kid: old
                if (old := self._keys.get(kid)) is not None and _same_key(old, key)
                else key
                for kid, key in fresh.items()
            }
            self._loaded_at = self._clock()
        except JwksUnavailable:
            if self._loaded_at is None:
                raise
            # Keep verifying with the keys we have; the issuer being briefly down must
            # not turn every request into a 401.
            log.warning("JWKS refresh failed; keeping %d cached keys", len(self._keys))

    def _principal(self, claims: dict[str, Any], when: float) -> Principal:
        if claims.get("iss") != self.issuer:
            raise InvalidToken("wrong issuer")
        aud = claims.get("aud")
        audiences = [aud] if isinstance(aud, str) else aud
        if not isinstance(audiences, list) or self.audience not in audiences:
            raise InvalidToken("wrong audience")
        exp, iat = _check_lifetime(claims, when, self.leeway_s)
        # A token carrying only RFC 9396 authorization_details may have no "scope".
        scope = claims.get("scope", "")
        if not isinstance(scope, str):
            raise InvalidToken("scope must be a space-separated string")
        return Principal(
            subject=_string(claims, "sub"),
            client_id=_string(claims, "client_id"),
            tenant=_optional_string(claims, "tenant"),
            scopes=frozenset(scope.split()),
            consent_id=_optional_string(claims, "consent_id"),
            jti=_string(claims, "jti"),
            expires_at=datetime.fromtimestamp(exp, UTC),
            issued_at=datetime.fromtimestamp(iat, UTC),
            authorization_details=_authorization_details(claims),
            claims=MappingProxyType(claims),
        )


def _check_lifetime(claims: Mapping[str, Any], when: float, leeway_s: float) -> tuple[float, float]:
    """``exp`` and ``iat`` of a token valid at ``when`` (RFC 7519 §4.1.4, §4.1.5, §4.1.6,
    ``leeway_s`` for clock skew); :class:`InvalidToken` says why it is not."""
    exp = _number(claims, "exp")
    iat = _number(claims, "iat")
    if when >= exp + leeway_s:
        raise InvalidToken("token expired")
    if iat > when + leeway_s:
        raise InvalidToken("token issued in the future")
    # RFC 9068 does not require "nbf"; when present it is honoured.
    if "nbf" in claims and _number(claims, "nbf") > when + leeway_s:
        raise InvalidToken("token not yet valid")
    return exp, iat


def _same_key(a: VerificationKey, b: VerificationKey) -> bool:
    return bool(a.as_dict(private=False) == b.as_dict(private=False))


def _split(token: str) -> tuple[dict[str, Any], bytes, bytes]:
    if len(token) > _MAX_TOKEN_BYTES:
        raise InvalidToken("token too large")
    if not _COMPACT_JWS.fullmatch(token):
        raise InvalidToken("not a compact JWS")
    parts = token.encode("ascii").split(b".")
    header = _decode_json(parts[0], "header")
    return header, parts[0] + b"." + parts[1], _b64decode(parts[2], "signature")


def _check_header(header: dict[str, Any]) -> str:
    alg = header.get("alg")
    if alg not in _ALLOWED_ALGS:
        # "none", HS* (HMAC keyed with our public key) and RS*/PS* are refused by name:
        # the algorithm is decided here, never by the token.
        # Only registered names are echoed back, never arbitrary client input.
        name = alg if isinstance(alg, str) and alg in JWSRegistry.algorithms else "unknown"
        raise InvalidToken(f"alg not allowed: {name}")
    typ = header.get("typ")
    if not isinstance(typ, str) or typ.lower() not in _ACCEPTED_TYP:
        raise InvalidToken("typ must be at+jwt")
    if not isinstance(header.get("kid"), str) or not header["kid"]:
        raise InvalidToken("missing kid")
    if "crit" in header:
        # RFC 7515 §4.1.11: extensions we do not understand must be refused.
        raise InvalidToken("unsupported crit header")
    # "jku", "x5u" and "jwk" are ignored on purpose: keys only ever come from our JWKS.
    return str(alg)


def _check_signature(alg: str, key: VerificationKey, signing_input: bytes, sig: bytes) -> None:
    key_type, curves = _ALLOWED_ALGS[alg]
    if key.key_type != key_type or key.get("crv") not in curves:
        raise InvalidToken("key does not match alg")
    model = JWSRegistry.algorithms[alg]
    try:
        # Calling the model directly skips the registry's deprecation warning for
        # "EdDSA" (RFC 9864), which we accept deliberately.
        model.check_key(key)
        valid = model.verify(signing_input, sig, key)
    except (JoseError, ValueError, TypeError) as error:
        raise InvalidToken("bad signature") from error
    if not valid:
        raise InvalidToken("bad signature")


def _b64decode(segment: bytes, what: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(segment + b"=" * (-len(segment) % 4))
    except (binascii.Error, ValueError) as error:
        raise InvalidToken(f"malformed {what}") from error


def _decode_json(segment: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(_b64decode(segment, what))
    except (ValueError, UnicodeDecodeError) as error:
        raise InvalidToken(f"malformed {what}") from error
    if not isinstance(value, dict):
        raise InvalidToken(f"malformed {what}")
    return value


def _number(claims: Mapping[str, Any], name: str) -> float:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidToken(f"missing or malformed {name}")
    return float(value)


def _string(claims: Mapping[str, Any], name: str) -> str:
    value = claims.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidToken(f"missing or malformed {name}")
    return value


def _optional_string(claims: Mapping[str, Any], name: str) -> str | None:
    return None if claims.get(name) is None else _string(claims, name)


def _authorization_details(claims: Mapping[str, Any]) -> tuple[Mapping[str, Any], ...]:
    details = claims.get("authorization_details")
    if details is None:
        return ()
    # RFC 9396 §2: a JSON array of objects, each with a string "type".
    if not isinstance(details, list) or not all(
        isinstance(d, dict) and isinstance(d.get("type"), str) for d in details
    ):
        raise InvalidToken("malformed authorization_details")
    return tuple(MappingProxyType(d) for d in details)

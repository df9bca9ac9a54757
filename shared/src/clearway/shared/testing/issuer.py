"""A stand-in for the consent service's token endpoint, for tests.

It holds real signing keys (EC P-256, Ed25519 on demand), publishes their public
halves as a JWK Set, rotates them, and mints RFC 9068 access tokens, including the
malformed and hostile ones the verifier must refuse.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from joserfc import jwt
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, OKPKey

SigningKey = ECKey | OKPKey


class TestIssuer:
    """Mints access tokens for ``issuer`` with keys it generates itself."""

    __test__ = False  # not a pytest test class

    def __init__(self, issuer: str = "https://auth.test.clearway", alg: str = "ES256") -> None:
        self.issuer = issuer
        self.alg = alg
        self._keys: list[tuple[str, SigningKey]] = []  # (alg, key), oldest first
        self.rotate()

    @property
    def current_kid(self) -> str:
        """The ``kid`` new tokens are signed with."""
        return self._newest(self.alg).kid or ""

    def jwks(self) -> dict[str, Any]:
        """The public JWK Set (never private material), as served at the JWKS endpoint."""
        return {
            "keys": [
                {**key.as_dict(private=False), "alg": alg, "use": "sig"} for alg, key in self._keys
            ]
        }

    def rotate(self, alg: str | None = None) -> str:
        """Add a new signing key (older keys stay published) and return its ``kid``."""
        alg = alg or self.alg
        key = self._generate(alg)
        self.alg = alg
        return key.kid or ""

    def public_key_pem(self, kid: str | None = None) -> bytes:
        """The PEM of a public key, e.g. to attempt an HS256 algorithm-confusion attack."""
        key = self._by_kid(kid) if kid else self._newest(self.alg)
        return key.as_pem(private=False)

    def claims(
        self,
        sub: str,
        client_id: str,
        scopes: Iterable[str],
        audience: str | Sequence[str],
        tenant: str | None = None,
        consent_id: str | None = None,
        ttl_s: float = 300,
        extra_claims: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The claim set of an access token; a negative ``ttl_s`` makes it already expired."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": sub,
            "aud": audience if isinstance(audience, str) else list(audience),
            "client_id": client_id,
            "scope": " ".join(scopes),
            "iat": now,
            "nbf": now,
            "exp": int(now + ttl_s),
            "jti": f"at_{uuid.uuid4().hex}",
        }
        if tenant is not None:
            claims["tenant"] = tenant
        if consent_id is not None:
            claims["consent_id"] = consent_id
        claims.update(extra_claims or {})
        return claims

    def token(
        self,
        sub: str,
        client_id: str,
        scopes: Iterable[str],
        audience: str | Sequence[str],
        tenant: str | None = None,
        consent_id: str | None = None,
        ttl_s: float = 300,
        typ: str | None = "at+jwt",
        alg: str | None = None,
        extra_claims: Mapping[str, Any] | None = None,
        kid: str | None = None,
    ) -> str:
        """A signed access token.

        ``alg`` picks the newest key of that algorithm (generating one if needed);
        ``kid`` picks a published key, or, if no key has that ``kid``, puts it in the
        header of a token signed with the current key. ``typ=None`` leaves it out.
        ``extra_claims`` override the standard ones (``iss``, ``iat``, ``jti``, …).
        """
        claims = self.claims(
            sub, client_id, scopes, audience, tenant, consent_id, ttl_s, extra_claims
        )
        alg = alg or self.alg
        if kid is not None and self._has_kid(kid):
            key = self._by_kid(kid)
            alg = next(a for a, k in self._keys if k is key)
        else:
            key = self._newest(alg)
        header: dict[str, Any] = {"alg": alg, "kid": kid or key.kid}
        if typ is not None:
            header["typ"] = typ
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SecurityWarning)  # "EdDSA" is deprecated by RFC 9864
            return jwt.encode(header, claims, key, algorithms=[alg], default_type=None)

    def alg_none_token(self, *args: Any, **kwargs: Any) -> str:
        """An unsigned token (``alg: none``) with the claims :meth:`claims` would give."""
        header = {"alg": "none", "typ": "at+jwt", "kid": self.current_kid}
        return f"{_b64json(header)}.{_b64json(self.claims(*args, **kwargs))}."

    def hs256_token(self, secret: bytes, *args: Any, **kwargs: Any) -> str:
        """A token HMAC-signed with ``secret``, such as :meth:`public_key_pem` (the classic
        algorithm-confusion attack on verifiers that let the token pick the algorithm)."""
        header = {"alg": "HS256", "typ": "at+jwt", "kid": self.current_kid}
        signing_input = f"{_b64json(header)}.{_b64json(self.claims(*args, **kwargs))}"
        mac = hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()
        return f"{signing_input}.{_b64(mac)}"

    def _newest(self, alg: str) -> SigningKey:
        for key_alg, key in reversed(self._keys):
            if key_alg == alg:
                return key
        return self._generate(alg)

    def _generate(self, alg: str) -> SigningKey:
        key: SigningKey
        if alg == "ES256":
            key = ECKey.generate_key("P-256", private=True, auto_kid=True)
        elif alg in ("EdDSA", "Ed25519"):
            key = OKPKey.generate_key("Ed25519", private=True, auto_kid=True)
        else:
            raise ValueError(f"TestIssuer signs with ES256 or EdDSA, not {alg}")
        self._keys.append((alg, key))
        return key

    def _has_kid(self, kid: str) -> bool:
        return any(key.kid == kid for _, key in self._keys)

    def _by_kid(self, kid: str) -> SigningKey:
        return next(key for _, key in self._keys if key.kid == kid)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64json(value: Mapping[str, Any]) -> str:
    return _b64(json.dumps(value, separators=(",", ":")).encode("utf-8"))

"""Client authentication at the token, PAR, introspection and revocation endpoints.

Confidential clients authenticate with ``client_secret_basic`` / ``client_secret_post``
(argon2 hashes; during a rotation the previous secret works until its overlap ends)
or ``private_key_jwt`` (RFC 7523 §2.2, assertions signed with the client's JWKS,
single use). Failures are throttled per (client, source address) and a distributed
pattern is reported as ``client.auth_anomaly`` (``throttle``); no failure pattern
locks a client for its own callers. Every refusal is the same ``invalid_client``
after the same work (an argon2 check against a dummy hash when there is no usable
client), so no caller learns whether a client exists, is disabled or is throttled.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote

import asyncpg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from clearway.consent import events, store, store_clients
from clearway.consent.domain import ClientStatus
from clearway.consent.oauth_errors import invalid_client
from clearway.consent.service import Service

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_hasher = PasswordHasher()
#: Verified against when there is no usable client, so the answer takes as long.
_DUMMY_HASH = _hasher.hash("clearway-no-such-client")


# argon2 is deliberately slow (~0.1-0.2 s); a verified secret is remembered for a few
# minutes as a SHA-256 digest keyed by the stored hash, so a new hash (rotation)
# never matches an old entry. Only digests live here, never secrets.
_VERIFIED: dict[tuple[str, str], tuple[bytes, float]] = {}
_VERIFIED_TTL_S = 300.0
_VERIFIED_MAX = 10_000


def _verify(secret_hash: str | None, secret: str) -> bool:
    if not secret_hash:
        return False
    digest = hashlib.sha256(secret.encode()).digest()
    key = (secret_hash, "")
    hit = _VERIFIED.get(key)
    if hit is not None and hit[1] > time.monotonic():
        return hmac.compare_digest(hit[0], digest)
    try:
        ok = _hasher.verify(secret_hash, secret)
    except (VerificationError, InvalidHashError):
        return False
    if ok:
        if len(_VERIFIED) >= _VERIFIED_MAX:
            _VERIFIED.clear()
        _VERIFIED[key] = (digest, time.monotonic() + _VERIFIED_TTL_S)
    return ok


def credentials(
    form: dict[str, Any], authorization: str | None
) -> tuple[str, str | None, str | None]:
    """(client_id, secret, assertion) from the request; RFC 6749 §2.3.1 form-encodes Basic."""
    if authorization and authorization.lower().startswith("basic "):
        try:
            raw = base64.b64decode(authorization[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise invalid_client("malformed Basic credentials") from None
        cid, sep, secret = raw.partition(":")
        if not sep:
            raise invalid_client("malformed Basic credentials")
        return unquote(cid), unquote(secret), None
    assertion = form.get("client_assertion")
    if assertion:
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            raise invalid_client("unsupported client_assertion_type")
        cid = form.get("client_id") or _unverified_iss(assertion)
        return cid, None, assertion
    cid = form.get("client_id")
    if not cid:
        raise invalid_client("client authentication required")
    return cid, form.get("client_secret"), None


def _unverified_iss(assertion: str) -> str:
    try:
        payload = assertion.split(".")[1]
        return str(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["iss"])
    except (IndexError, KeyError, ValueError, binascii.Error):
        raise invalid_client("malformed client_assertion") from None


async def authenticate(
    svc: Service, form: dict[str, Any], authorization: str | None, address: str
) -> Any:
    """The authenticated client's row, or ``invalid_client`` (401).

    ``address`` is the caller's address as the server sees it (uvicorn applies
    ``X-Forwarded-For`` only from its trusted proxies, ``FORWARDED_ALLOW_IPS``).
    """
    pool = svc.global_pool
    audience = [svc.settings.issuer, svc.settings.issuer + "/oauth/token"]
    client_id, secret, assertion = credentials(form, authorization)
    async with pool.acquire() as conn:
        client = await store.get_client(conn, client_id)
    if svc.throttle.refused(client_id, address):
        # not checked, and counted: hammering while backing off only backs off further
        await asyncio.to_thread(_verify, _DUMMY_HASH, secret or "")
        await _record_failure(svc, client_id, client, address)
        raise invalid_client()
    if client is None or client["status"] != ClientStatus.ACTIVE:
        # Same answer and work as a wrong secret: do not reveal which ids exist or
        # which clients are disabled.
        await asyncio.to_thread(_verify, _DUMMY_HASH, secret or "")
        ok = False
    elif assertion is not None:
        ok = client["auth_method"] == "private_key_jwt" and await _assertion_ok(
            pool, client, assertion, audience
        )
    elif secret is not None and client["auth_method"] == "client_secret_basic":
        ok = await asyncio.to_thread(_secret_ok, client, secret)
    else:
        ok = False
    if not ok:
        await _record_failure(svc, client_id, client, address)
        raise invalid_client()
    svc.throttle.success(client_id, address)
    return client


def _secret_ok(client: Any, secret: str) -> bool:
    if _verify(client["secret_hash"], secret):
        return True
    until = client["previous_secret_valid_until"]
    return bool(
        until and datetime.now(UTC) < until and _verify(client["previous_secret_hash"], secret)
    )


async def _assertion_ok(
    pool: asyncpg.Pool, client: Any, assertion: str, audience: list[str]
) -> bool:
    try:
        keys = KeySet.import_key_set(client["jwks"] or {"keys": []})
        token = jwt.decode(assertion, keys, algorithms=["ES256", "EdDSA", "RS256", "PS256"])
    except (JoseError, ValueError, TypeError):
        return False
    c = token.claims
    aud = c.get("aud")
    auds = [aud] if isinstance(aud, str) else (aud or [])
    now = time.time()
    if c.get("iss") != client["client_id"] or c.get("sub") != client["client_id"]:
        return False
    if not set(auds) & set(audience) or not isinstance(c.get("exp"), int | float):
        return False
    if not now - 30 < c["exp"] < now + 600 or not isinstance(c.get("jti"), str):
        return False
    async with pool.acquire() as conn:
        return await store_clients.first_use_of_assertion(
            conn, f"{client['client_id']}:{c['jti']}", c["exp"] + 60
        )


async def _record_failure(svc: Service, client_id: str, client: Any, address: str) -> None:
    anomaly = svc.throttle.failure(client_id, address)
    if anomaly is None:
        return
    now = datetime.now(UTC)
    data = {
        "client_id": client_id,
        "tenant": client["tenant"] if client is not None else None,
        "addresses": anomaly.addresses,
        "failures": anomaly.failures,
        "window_s": anomaly.window_s,
        "guarded_until": events.rfc3339(now + timedelta(seconds=anomaly.guard_s)),
        "at": events.rfc3339(now),
        "actor": None,
    }
    async with svc.global_pool.acquire() as conn, conn.transaction():
        # One alert per client and window: its id derives from the client and the minute.
        await svc.events.emit(
            conn,
            "client.auth_anomaly",
            subject=client_id,
            version=int(now.timestamp() // 60),
            data=data,
            tenant=data["tenant"],
            major=events.MAJOR,
        )

"""Token use cases: client credentials, code redemption, introspection, revocation.

Access tokens follow RFC 9068 (``typ: at+jwt``, ``kid``); their ``aud`` is the set of
services their scopes belong to (or the RFC 8707 ``resource`` the client asked for).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
from joserfc import jws
from joserfc.errors import JoseError

from clearway.consent import events, store, store_tokens
from clearway.consent.domain import ClientStatus, Status, same_text
from clearway.consent.oauth_errors import OAuthError
from clearway.consent.scopes import (
    AUDIENCES,
    BY_NAME,
    PLATFORM_SCOPES,
    PLATFORM_TENANT,
    audiences_for,
)
from clearway.consent.service import Service
from clearway.shared.events import Event
from clearway.shared.versions import VERSION_CLAIM


def code_hash(code: str) -> str:
    return hashlib.sha256(code.encode("utf-8", "surrogatepass")).hexdigest()


def grant_scopes(client: Any, requested: str | None) -> list[str]:
    """RFC 6749 §3.3: the requested scopes, all of which the client must hold.

    Platform scopes are granted to the operator tenant's clients only, whatever a
    client row says (registration refuses them elsewhere too)."""
    allowed = set(client["scopes"])
    if client["tenant"] != PLATFORM_TENANT:
        allowed -= PLATFORM_SCOPES
    if requested is None or not requested.strip():
        return sorted(allowed)
    wanted = set(requested.split())
    unknown = wanted - set(BY_NAME)
    if unknown:
        raise OAuthError("invalid_scope", f"unknown scope(s): {' '.join(sorted(unknown))}")
    if not wanted <= allowed:
        missing = " ".join(sorted(wanted - allowed))
        raise OAuthError("invalid_scope", f"client may not request: {missing}")
    return sorted(wanted)


def audience(scopes: list[str], resource: list[str], extra: list[str] = ()) -> list[str]:
    """RFC 8707: ``resource`` narrows the audience to services the scopes are for."""
    natural = sorted(set(audiences_for(set(scopes))) | set(extra))
    if not resource:
        return natural
    names = [r.rstrip("/").rsplit("/", 1)[-1] for r in resource]
    if not set(names) <= AUDIENCES or not set(names) <= set(natural):
        raise OAuthError("invalid_target", "resource is not a service these scopes are for")
    return sorted(set(names))


def _iat(client: Any, now: float) -> int:
    """RevocationSet refuses a client's tokens issued at or before its cutoff second."""
    iat = int(now)
    cutoff = client["revoked_before"]
    if cutoff is not None and iat <= cutoff.timestamp():
        iat = math.floor(cutoff.timestamp()) + 1
    return iat


def claims_for(
    svc: Service,
    client: Any,
    *,
    sub: str,
    scopes: list[str],
    aud: list[str],
    consent: Any = None,
    expires_at: float | None = None,
    tenant: str | None = None,
) -> dict[str, Any]:
    now = time.time()
    iat = _iat(client, now)
    exp = iat + svc.settings.token_ttl_s
    if expires_at is not None:
        exp = min(exp, int(expires_at))
    claims: dict[str, Any] = {
        "iss": svc.settings.issuer,
        "sub": sub,
        "aud": aud[0] if len(aud) == 1 else aud,
        "client_id": client["client_id"],
        "scope": " ".join(scopes),
        # a sign-in token is the user's: their tenant, not the console client's
        "tenant": tenant or client["tenant"],
        "iat": iat,
        "nbf": iat,
        "exp": exp,
        "jti": f"at_{uuid.uuid4().hex}",
        # The client's pinned dated version: services serve it without a lookup.
        VERSION_CLAIM: client["api_version"],
    }
    if consent is not None:
        claims["consent_id"] = consent.id
        claims["authorization_details"] = consent.authorization_details
    return claims


def token_response(token: str, claims: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": claims["exp"] - int(time.time()),
        "scope": claims["scope"],
    }
    if "authorization_details" in claims:
        body["authorization_details"] = claims["authorization_details"]
    return body


async def issue_client_credentials(svc: Service, client: Any, form: dict[str, Any]) -> dict:
    scopes = grant_scopes(client, form.get("scope"))
    aud = audience(scopes, form.get("resource", []))
    claims = claims_for(svc, client, sub=client["client_id"], scopes=scopes, aud=aud)
    token = svc.keys.sign(claims)
    async with svc.global_pool.acquire() as conn:
        await store.record_token(conn, claims, None)
    return token_response(token, claims)


def pkce_ok(verifier: str | None, challenge: str) -> bool:
    """RFC 7636 §4.6, S256 only."""
    if not verifier or not 43 <= len(verifier) <= 128:
        return False
    digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
    computed = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    return same_text(computed, challenge)


async def redeem_code(svc: Service, client: Any, form: dict[str, Any]) -> dict[str, Any]:
    """RFC 6749 §4.1.3: the region's transaction holds the code's row lock from the check
    until the token is recorded in the global database (docs/design.md §9), so a
    concurrent second redemption waits, sees the code used and revokes the token just
    issued from it (§4.1.2). A token recorded whose code's transaction then fails was
    never handed out."""
    code = form.get("code")
    if not code:
        raise OAuthError("invalid_request", "code is required")
    h = code_hash(code)
    refusal: OAuthError | None = None
    async with svc.pool.acquire() as conn, conn.transaction():
        row = await store_tokens.lock_code(conn, h)
        if row is None or row["client_id"] != client["client_id"]:
            raise OAuthError("invalid_grant", "unknown authorization code")
        if row["redeemed_at"] is not None:
            # RFC 6749 §4.1.2: a reused code revokes the tokens issued from it.
            await _revoke_tokens_of_code(svc, h)
            refusal = OAuthError("invalid_grant", "authorization code was already used")
        elif row["expires_at"] <= datetime.now(UTC):
            refusal = OAuthError("invalid_grant", "authorization code expired")
        else:
            # A code is spent by any attempt with it, even one failing the checks below.
            await store_tokens.mark_code_redeemed(conn, h)
            refusal, consent = await _check_redemption(svc, conn, row, form)
        if refusal is None:
            claims = _claims_for_code(svc, client, row, consent)
            token = svc.keys.sign(claims)
            async with svc.global_pool.acquire() as issued:
                await store.record_token(issued, claims, h)
    if refusal is not None:
        raise refusal
    return token_response(token, claims)


async def _check_redemption(
    svc: Service, conn: asyncpg.Connection, row: Any, form: dict[str, Any]
) -> tuple[OAuthError | None, Any]:
    """(why the redemption is refused or None, the code's consent)."""
    if form.get("redirect_uri") != row["redirect_uri"]:
        why = "redirect_uri does not match the authorization request"
        return OAuthError("invalid_grant", why), None
    if not pkce_ok(form.get("code_verifier"), row["code_challenge"]):
        return OAuthError("invalid_grant", "PKCE verification failed"), None
    if row["consent_id"] is None:  # a sign-in code (docs/design.md §7): no consent
        return None, None
    consent = await store.get_consent(conn, row["consent_id"], svc.pii)
    if consent is None or not consent.usable(datetime.now(UTC)):
        return OAuthError("invalid_grant", "the consent is no longer authorised"), None
    return None, consent


def _claims_for_code(svc: Service, client: Any, row: Any, consent: Any) -> dict[str, Any]:
    scopes = sorted(set(row["scopes"]) & set(client["scopes"]))
    aud = audience(scopes, list(row["resource"]), extra=["clearway-consent"])
    if consent is None:  # sign-in: the user's tenant and role, as narrowed at the code
        return claims_for(svc, client, sub=row["subject"], scopes=scopes, aud=aud,
                          tenant=row["tenant"])
    return claims_for(
        svc,
        client,
        sub=row["subject"],
        scopes=scopes,
        aud=aud,
        consent=consent,
        expires_at=consent.expires_at.timestamp(),
    )


async def _revoke_tokens_of_code(svc: Service, h: str) -> None:
    """The tokens and their ``token.revoked`` events, in one global transaction."""
    async with svc.global_pool.acquire() as conn, conn.transaction():
        rows = await store_tokens.revoke_tokens_of_code(conn, h)
        await svc.events.write(
            conn, *[_token_revoked(svc, r, "authorization code reuse") for r in rows]
        )


def _token_revoked(svc: Service, row: Any, reason: str) -> Event:
    """``token.revoked``: a token is revoked once, so it is version 1 of the jti."""
    data = {
        "jti": row["jti"],
        "client_id": row["client_id"],
        "consent_id": row["consent_id"],
        "expires_at": events.rfc3339(row["expires_at"]),
        "reason": reason,
        "actor": None,
    }
    return svc.events.event(
        "token.revoked",
        subject=row["jti"],
        version=1,
        data=data,
        tenant=row["tenant"],
        major=events.MAJOR,
    )


def verify_own(svc: Service, token: str) -> dict[str, Any] | None:
    """The claims of a token this service signed and that has not expired, else None."""
    try:
        header = jws.extract_compact(token.encode()).headers()
        key = svc.keys.key(str(header.get("kid")))
        if key is None or header.get("alg") != key.alg:
            return None
        obj = jws.deserialize_compact(token, key.key, algorithms=[key.alg])
        claims = json.loads(obj.payload)
    except (JoseError, ValueError, TypeError):
        return None
    if claims.get("iss") != svc.settings.issuer or claims.get("exp", 0) <= time.time():
        return None
    return claims


async def introspect(svc: Service, caller: Any, token: str | None) -> dict[str, Any]:
    """RFC 7662: active only for a valid, unrevoked token of the caller's tenant."""
    claims = verify_own(svc, token or "")
    if claims is None or claims.get("tenant") != caller["tenant"]:
        return {"active": False}
    if "consent_id" in claims:  # its consent's status is in the tenant's region
        svc.residency.check(caller["tenant"])
    async with svc.global_pool.acquire() as conn:
        row = await store_tokens.issued_token(conn, claims["jti"])
        client = await store.get_client(conn, claims["client_id"])
    consent = None
    if "consent_id" in claims:
        async with svc.pool.acquire() as conn:
            consent = await store.get_consent(conn, claims["consent_id"], svc.pii)
    if row is None or row["revoked_at"] is not None or client is None:
        return {"active": False}
    if client["status"] == ClientStatus.DISABLED:
        return {"active": False}
    cutoff = client["revoked_before"]
    if cutoff is not None and claims["iat"] <= cutoff.timestamp():
        return {"active": False}
    if "consent_id" in claims and consent is None:  # purged (docs/design.md §9): it ended
        return {"active": False}
    if consent is not None and consent.status not in (Status.AUTHORISED, Status.CONSUMED):
        return {"active": False}
    return {"active": True, "token_type": "Bearer", **claims}


async def revoke(svc: Service, caller: Any, token: str | None) -> None:
    """RFC 7009: revoke the caller's own token; unknown tokens are silently fine (§2.2)."""
    claims = verify_own(svc, token or "")
    if claims is None or claims.get("client_id") != caller["client_id"]:
        return
    async with svc.global_pool.acquire() as conn, conn.transaction():
        row = await store_tokens.revoke_token(conn, claims["jti"])
        if row is not None:
            await svc.events.write(conn, _token_revoked(svc, row, "revoked by the client"))

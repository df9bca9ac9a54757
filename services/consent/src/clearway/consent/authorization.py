"""Pushed authorization requests (RFC 9126): pushed by the client's back end, read and
taken by the consent page. Handlers for ``oauth_api`` and ``pages``; the SQL is in ``store``.

The request_uri handle is stored hashed, so a database reader cannot replay one.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from clearway.consent import store
from clearway.consent.domain import Consent, Status
from clearway.consent.oauth_errors import OAuthError
from clearway.consent.scopes import PLATFORM_TENANT
from clearway.consent.service import Service

#: RFC 9126 §2.2: the request_uri is a URN under this prefix.
REQUEST_URI_PREFIX = "urn:ietf:params:oauth:request_uri:"


def _hash(handle: str) -> str:
    return hashlib.sha256(handle.encode()).hexdigest()


async def push_request(
    svc: Service,
    client: Any,
    consent_id: str,
    scopes: list[str],
    scope_requested: bool,
    params: dict[str, Any],
) -> dict[str, Any]:
    """Store a pushed request for a consent the client created and that still awaits the
    user; ``scopes`` narrow to the consent's (RFC 9126 §2.1). Returns the §2.2 response."""
    async with svc.pool.acquire() as conn:
        consent = await store.get_consent(conn, consent_id, svc.pii)
        if consent is None or consent.client_id != client["client_id"]:
            raise OAuthError("invalid_request", "unknown consent_id")
        if consent.status is not Status.AWAITING:
            raise OAuthError("invalid_request", f"consent is {consent.status}")
        beyond = set(scopes) - set(consent.scopes)
        if not scope_requested:
            scopes = sorted(set(scopes) & set(consent.scopes))
        elif beyond:
            raise OAuthError("invalid_scope", f"beyond the consent: {' '.join(sorted(beyond))}")
        handle = secrets.token_urlsafe(32)
        await store.insert_pushed_request(
            conn,
            _hash(handle),
            client["client_id"],
            {
                **params,
                "client_id": client["client_id"],
                "scopes": scopes,
                "consent_id": consent_id,
            },
            datetime.now(UTC) + timedelta(seconds=svc.settings.par_ttl_s),
        )
    return {"request_uri": REQUEST_URI_PREFIX + handle, "expires_in": svc.settings.par_ttl_s}


def may_sign_in(svc: Service, client: Any) -> bool:
    """A first-party client of the operator tenant named in ``sign_in_clients``: it may
    ask for a signed-in user's own token without a consent (docs/design.md §7)."""
    return (
        client["tenant"] == PLATFORM_TENANT
        and client["client_id"] in svc.settings.sign_in_clients
    )


async def push_sign_in(
    svc: Service, client: Any, scopes: list[str], params: dict[str, Any]
) -> dict[str, Any]:
    """Store a pushed sign-in request (no consent): the consent page answers it with a
    code once the user is signed in. Returns the RFC 9126 §2.2 response."""
    handle = secrets.token_urlsafe(32)
    async with svc.pool.acquire() as conn:
        await store.insert_pushed_request(
            conn,
            _hash(handle),
            client["client_id"],
            {**params, "client_id": client["client_id"], "scopes": scopes, "consent_id": None},
            datetime.now(UTC) + timedelta(seconds=svc.settings.par_ttl_s),
        )
    return {"request_uri": REQUEST_URI_PREFIX + handle, "expires_in": svc.settings.par_ttl_s}


async def check_client_region(svc: Service, client_id: str) -> None:
    """Raise ``WrongRegion`` (a 421) when ``client_id`` belongs to a tenant of another
    region, before the page reads its pushed request or consent (docs/design.md §9); an
    unknown client passes (its request will not be found)."""
    async with svc.global_pool.acquire() as conn:
        client = await store.get_client(conn, client_id)
    if client is not None:
        svc.residency.check(client["tenant"])


async def pushed_request(
    svc: Service, client_id: str, request_uri: str, *, take: bool
) -> dict[str, Any] | None:
    """The parameters of a live pushed request of ``client_id``; ``take`` uses it up."""
    if not request_uri.startswith(REQUEST_URI_PREFIX):
        return None
    h = _hash(request_uri.removeprefix(REQUEST_URI_PREFIX))
    async with svc.pool.acquire() as conn:
        return await store.pushed_request(conn, h, client_id, take=take)


async def consent_to_show(
    svc: Service, par: dict[str, Any], client_id: str, subject: str, tenant: str
) -> tuple[Consent, Any] | None:
    """The consent and client a signed-in user is asked about, or None when it is not
    theirs to give (another tenant, another named subject, or an unknown client)."""
    async with svc.pool.acquire() as conn:
        consent = await store.get_consent(conn, par["consent_id"], svc.pii)
    async with svc.global_pool.acquire() as conn:
        client = await store.get_client(conn, client_id)
    if consent is None or consent.tenant != tenant or client is None:
        return None
    if consent.subject is not None and consent.subject != subject:
        return None
    return consent, client

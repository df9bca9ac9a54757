"""``/v1`` routes: consents for partners and users' apps, admin operations.

Every route declares its scope; tenants only ever see their own consents and clients.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Security
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from clearway.consent import clients, handlers, store
from clearway.consent.domain import (
    Consent,
    ConsentError,
    InvalidAuthorizationDetails,
    InvalidTransition,
)
from clearway.consent.scopes import BY_NAME
from clearway.consent.service import Service
from clearway.shared.actor import Actor
from clearway.shared.auth import Principal, require_scope
from clearway.shared.http import ProblemError

router = APIRouter(prefix="/v1")


class ConsentRequest(BaseModel):
    purpose: str = Field(min_length=1, max_length=280)
    authorization_details: list[dict[str, Any]]
    subject: str | None = Field(default=None, max_length=200)
    scopes: list[str] = Field(default_factory=lambda: ["payments:initiate"])
    terms_version: str = Field(default="2026-01", max_length=40)
    expires_in: int = Field(default=3600, ge=60, le=90 * 86400)


class AdminRequest(BaseModel):
    reason: str = Field(min_length=3, max_length=500)
    approver: str | None = Field(default=None, max_length=200)


class SecretRotation(AdminRequest):
    overlap_seconds: int | None = Field(default=None, ge=0, le=7 * 86400)


def _svc(request: Request) -> Service:
    return request.app.state.consent


def view(c: Consent) -> dict[str, Any]:
    return {
        "id": c.id,
        "reference": c.reference,
        "status": str(c.status),
        "tenant": c.tenant,
        "client_id": c.client_id,
        "subject": c.subject,
        "purpose": c.purpose,
        "authorization_details": c.authorization_details,
        "scopes": c.scopes,
        "terms_version": c.terms_version,
        "created_at": c.created_at.isoformat(),
        "expires_at": c.expires_at.isoformat(),
        "status_history": [
            {"status": str(h.status), "at": h.at.isoformat(), "actor": h.actor, "reason": h.reason}
            for h in c.history
        ],
        "evidence": c.evidence,
    }


def _not_found(consent_id: str) -> ProblemError:
    return ProblemError(404, "consent-not-found", "Consent not found", f"no consent {consent_id}")


def _conflict(error: ConsentError) -> ProblemError:
    return ProblemError(409, "consent-conflict", "Consent cannot change", str(error))


@router.post("/consents", status_code=201)
async def create_consent(
    body: ConsentRequest,
    request: Request,
    p: Principal = Security(require_scope("consents:write")),
) -> JSONResponse:
    unknown = [s for s in body.scopes if s not in BY_NAME or BY_NAME[s].admin]
    if unknown or not body.scopes:
        raise ProblemError(
            422, "validation-error", "Request validation failed", "Field 'scopes' is invalid."
        )
    try:
        consent = await handlers.create_consent(
            _svc(request),
            handlers.CreateConsent(
                tenant=p.tenant or "",
                client_id=p.client_id,
                subject=body.subject,
                purpose=body.purpose,
                authorization_details=body.authorization_details,
                scopes=body.scopes,
                terms_version=body.terms_version,
                ttl_s=body.expires_in,
                actor=Actor.from_principal(p),
            ),
        )
    except InvalidAuthorizationDetails as error:
        raise ProblemError(
            400,
            "invalid-authorization-details",
            "invalid_authorization_details",
            f"Field '{error.field}' is invalid: {error.reason}.",
            error="invalid_authorization_details",
            field=error.field,
        ) from None
    return JSONResponse(view(consent), 201, headers={"Location": f"/v1/consents/{consent.id}"})


@router.get("/consents")
async def list_consents(
    request: Request,
    status: str | None = None,
    subject: str | None = None,
    p: Principal = Security(require_scope("consents:read")),
) -> dict[str, Any]:
    async with _svc(request).pool.acquire() as conn:
        items = await store.list_consents(conn, p.tenant or "", subject=subject, status=status)
    return {"items": [view(c) for c in items]}


@router.get("/consents/{consent_id}")
async def get_consent(
    consent_id: str, request: Request, p: Principal = Security(require_scope("consents:read"))
) -> dict[str, Any]:
    try:
        return view(await handlers.get_consent(_svc(request), p.tenant, consent_id))
    except handlers.NotFound:
        raise _not_found(consent_id) from None


@router.delete("/consents/{consent_id}")
async def revoke_consent(
    consent_id: str, request: Request, p: Principal = Security(require_scope("consents:revoke"))
) -> dict[str, Any]:
    # A user's own app may revoke only the consent its token is bound to.
    if p.consent_id is not None and p.consent_id != consent_id:
        raise _not_found(consent_id)
    try:
        c = await handlers.revoke_consent(
            _svc(request), p.tenant, consent_id, Actor.from_principal(p), "revoked through the API"
        )
    except handlers.NotFound:
        raise _not_found(consent_id) from None
    except InvalidTransition as error:
        raise _conflict(error) from None
    return view(c)


@router.post("/consents/{consent_id}/consumption")
async def consume_consent(
    consent_id: str, request: Request, p: Principal = Security(require_scope("payments:initiate"))
) -> dict[str, Any]:
    """The payment a single-payment consent allowed was made with a token bound to it."""
    if p.consent_id != consent_id:  # only the token bound to the consent may consume it
        raise _not_found(consent_id)
    try:
        return view(
            await handlers.consume_consent(
                _svc(request), p.tenant, consent_id, Actor.from_principal(p)
            )
        )
    except handlers.NotFound:
        raise _not_found(consent_id) from None
    except ConsentError as error:
        raise _conflict(error) from None


@router.post("/admin/keys/rotation")
async def rotate_keys(
    body: AdminRequest, request: Request, p: Principal = Security(require_scope("admin:keys"))
) -> dict[str, Any]:
    return await clients.rotate_keys(
        _svc(request), Actor.from_principal(p), body.reason, body.approver, p.tenant
    )


@router.post("/admin/clients/{client_id}/disable")
async def disable_client(
    client_id: str,
    body: AdminRequest,
    request: Request,
    p: Principal = Security(require_scope("admin:clients")),
) -> dict[str, Any]:
    try:
        await clients.disable_client(
            _svc(request), p.tenant, client_id, Actor.from_principal(p), body.reason, body.approver
        )
    except handlers.NotFound:
        raise ProblemError(404, "client-not-found", "Client not found") from None
    return {"client_id": client_id, "status": "disabled"}


@router.post("/admin/clients/{client_id}/secret")
async def rotate_client_secret(
    client_id: str,
    body: SecretRotation,
    request: Request,
    p: Principal = Security(require_scope("admin:clients")),
) -> JSONResponse:
    try:
        secret = await clients.rotate_client_secret(
            _svc(request),
            p.tenant,
            client_id,
            Actor.from_principal(p),
            body.reason,
            body.approver,
            body.overlap_seconds,
        )
    except handlers.NotFound:
        raise ProblemError(404, "client-not-found", "Client not found") from None
    return JSONResponse(
        {"client_id": client_id, "client_secret": secret}, headers={"Cache-Control": "no-store"}
    )


@router.post("/admin/consents/{consent_id}/revocation")
async def admin_revoke_consent(
    consent_id: str,
    body: AdminRequest,
    request: Request,
    p: Principal = Security(require_scope("admin:consents")),
) -> dict[str, Any]:
    try:
        c = await handlers.revoke_consent(
            _svc(request),
            p.tenant,
            consent_id,
            Actor.from_principal(p),
            body.reason,
            admin=True,
            approver=body.approver,
        )
    except handlers.NotFound:
        raise _not_found(consent_id) from None
    except InvalidTransition as error:
        raise _conflict(error) from None
    return view(c)

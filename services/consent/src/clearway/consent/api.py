"""``/v1`` routes: consents for partners and users' apps, admin operations.

Every route declares its scope; tenants only ever see their own consents and clients.
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import APIRouter, Depends, Query, Request, Security
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from clearway.consent import clients, handlers
from clearway.consent.api_docs import (
    ADMIN_REQUEST,
    CONSENT_REQUEST,
    SANDBOX_CLIENT_REQUEST,
    SECRET_ROTATION,
    ClientDisabled,
    ClientList,
    ClientSecret,
    ConsentList,
    ConsentOut,
    KeyRotated,
    SandboxClient,
)
from clearway.consent.domain import (
    ClientStatus,
    Consent,
    ConsentError,
    InvalidAuthorizationDetails,
    InvalidTransition,
    Status,
)
from clearway.consent.scopes import BY_NAME, PLATFORM_TENANT
from clearway.consent.service import Service
from clearway.shared.actor import Actor
from clearway.shared.auth import Principal, require_scope
from clearway.shared.http import (
    PageRequest,
    ProblemError,
    documented,
    invalid_field,
    page_request,
)
from clearway.shared.http.problems import problem_for

router = APIRouter(prefix="/v1")


class ConsentRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [CONSENT_REQUEST]})
    purpose: str = Field(min_length=1, max_length=280)
    authorization_details: list[dict[str, Any]]
    subject: str | None = Field(default=None, max_length=200)
    scopes: list[str] = Field(default_factory=lambda: ["payments:initiate"])
    terms_version: str = Field(default="2026-01", max_length=40)
    expires_in: int = Field(default=3600, ge=60, le=90 * 86400)


class AdminRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [ADMIN_REQUEST]})
    reason: str = Field(min_length=3, max_length=500)
    approver: str | None = Field(default=None, max_length=200)


class SandboxClientRequest(AdminRequest):
    model_config = ConfigDict(json_schema_extra={"examples": [SANDBOX_CLIENT_REQUEST]})
    name: str = Field(min_length=1, max_length=200)
    scopes: list[str] = Field(min_length=1, max_length=len(BY_NAME))


class SecretRotation(AdminRequest):
    model_config = ConfigDict(json_schema_extra={"examples": [SECRET_ROTATION]})
    overlap_seconds: int | None = Field(default=None, ge=0, le=7 * 86400)


def _svc(request: Request) -> Service:
    return request.app.state.consent


def _in_region(request: Request, p: Principal) -> str:
    """The caller's tenant, whose consents live in this region (else ``WrongRegion``: a
    421 naming its region, before anything is read or written; docs/design.md §9)."""
    tenant = p.tenant or ""
    _svc(request).residency.check(tenant)
    return tenant


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


async def offboarded(request: Request, exc: Exception) -> Response:
    """403 ``tenant-offboarded`` for any route of a crypto-shredded tenant (its consents,
    evidence and users were destroyed with its keys, docs/design.md §9), as the vault
    answers; registered on the app for ``TenantShredded``."""
    return problem_for(
        request,
        ProblemError(
            403,
            "tenant-offboarded",
            "Tenant offboarded",
            "This tenant's personal data was destroyed (crypto-shredded); its consents and"
            " users can no longer be read or created.",
        ),
    )


def _conflict(error: ConsentError) -> ProblemError:
    return ProblemError(409, "consent-conflict", "Consent cannot change", str(error))


@router.post(
    "/consents",
    status_code=201,
    response_model=None,
    responses=documented(ConsentOut, "Created.", 201),
)
async def create_consent(
    body: ConsentRequest,
    request: Request,
    p: Principal = Security(require_scope("consents:write")),
) -> JSONResponse:
    tenant = _in_region(request, p)
    unknown = [s for s in body.scopes if s not in BY_NAME or BY_NAME[s].admin]
    if unknown or not body.scopes:
        raise invalid_field("scopes", "must name known, non-admin scopes", "unknown_scope")
    try:
        consent = await handlers.create_consent(
            _svc(request),
            handlers.CreateConsent(
                tenant=tenant,
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
        # RFC 9396 §5 names the error; the type carries it, the field says where.
        raise invalid_field(error.field, error.reason, "invalid_authorization_details") from None
    except handlers.UnknownClient:
        raise ProblemError(
            403,
            "unknown-client",
            "Unknown client",
            "The client named by the access token is not registered here.",
        ) from None
    return JSONResponse(view(consent), 201, headers={"Location": f"/v1/consents/{consent.id}"})


@router.get(
    "/consents", response_model=None, responses=documented(ConsentList, "A page of consents.")
)
async def list_consents(
    request: Request,
    status: Status | None = None,
    subject: str | None = Query(default=None, min_length=1, max_length=200),
    page: PageRequest = Depends(page_request),
    p: Principal = Security(require_scope("consents:read")),
) -> dict[str, Any]:
    """The tenant's consents, newest first."""
    tenant, filters = _in_region(request, p), {"status": status, "subject": subject}
    items = await handlers.list_consents(
        _svc(request),
        tenant,
        subject=subject,
        status=status,
        after=page.after(tenant, filters),
        limit=page.fetch_limit,
    )
    return page.page(
        items, tenant=tenant, filters=filters, position=lambda c: (c.created_at, c.id), render=view
    )


@router.get(
    "/consents/{consent_id}", response_model=None, responses=documented(ConsentOut, "The consent.")
)
async def get_consent(
    consent_id: str, request: Request, p: Principal = Security(require_scope("consents:read"))
) -> dict[str, Any]:
    try:
        tenant = _in_region(request, p)
        return view(await handlers.get_consent(_svc(request), tenant, consent_id))
    except handlers.NotFound:
        raise _not_found(consent_id) from None


@router.delete(
    "/consents/{consent_id}", response_model=None, responses=documented(ConsentOut, "The consent.")
)
async def revoke_consent(
    consent_id: str, request: Request, p: Principal = Security(require_scope("consents:revoke"))
) -> dict[str, Any]:
    tenant = _in_region(request, p)
    # A user's own app may revoke only the consent its token is bound to.
    if p.consent_id is not None and p.consent_id != consent_id:
        raise _not_found(consent_id)
    try:
        c = await handlers.revoke_consent(
            _svc(request), tenant, consent_id, Actor.from_principal(p), "revoked through the API"
        )
    except handlers.NotFound:
        raise _not_found(consent_id) from None
    except InvalidTransition as error:
        raise _conflict(error) from None
    return view(c)


@router.post(
    "/consents/{consent_id}/consumption",
    response_model=None,
    responses=documented(ConsentOut, "The consent."),
)
async def consume_consent(
    consent_id: str, request: Request, p: Principal = Security(require_scope("payments:initiate"))
) -> dict[str, Any]:
    """The payment a single-payment consent allowed was made with a token bound to it."""
    tenant = _in_region(request, p)
    if p.consent_id != consent_id:  # only the token bound to the consent may consume it
        raise _not_found(consent_id)
    try:
        return view(
            await handlers.consume_consent(
                _svc(request), tenant, consent_id, Actor.from_principal(p)
            )
        )
    except handlers.NotFound:
        raise _not_found(consent_id) from None
    except ConsentError as error:
        raise _conflict(error) from None


# Admin scopes by reach (docs/design.md §7): /v1/platform/* needs a platform scope,
# which only the operator tenant's clients hold; /v1/admin/* is confined to the
# caller's tenant. Every action needs a reason and emits a consent.admin_action
# carrying the tenant it touched.


def _operator(p: Principal) -> Principal:
    if p.tenant != PLATFORM_TENANT:  # defence in depth: only such clients get the scope
        raise ProblemError(403, "platform-operator-only", "Platform operators only")
    return p


def _not_in_tenant(client_id: str) -> ProblemError:
    # The same answer for an unknown client and another tenant's: no enumeration.
    return ProblemError(
        403, "client-not-in-tenant", "Not a client of your tenant", f"{client_id} is not yours"
    )


@router.post(
    "/platform/keys/rotation",
    response_model=None,
    responses={
        **documented(KeyRotated, "Rotated: the new key is published."),
        429: {"description": "A key was rotated recently; see `Retry-After`"},
    },
)
async def rotate_keys(
    body: AdminRequest, request: Request, p: Principal = Security(require_scope("platform:keys"))
) -> dict[str, Any]:
    try:
        return await clients.rotate_keys(
            _svc(request), Actor.from_principal(_operator(p)), body.reason, body.approver
        )
    except clients.RotationThrottled as error:
        raise ProblemError(
            429,
            "key-rotation-throttled",
            "Key rotation throttled",
            f"a signing key was rotated recently; {error}",
            headers={"Retry-After": str(math.ceil(error.retry_after_s))},
        ) from None


async def _disable(
    request: Request, tenant: str | None, client_id: str, p: Principal, body: AdminRequest
) -> dict[str, Any]:
    owner = await clients.disable_client(
        _svc(request), tenant, client_id, Actor.from_principal(p), body.reason, body.approver
    )
    return {"client_id": client_id, "tenant": owner, "status": str(ClientStatus.DISABLED)}


async def _rotate_secret(
    request: Request, tenant: str | None, client_id: str, p: Principal, body: SecretRotation
) -> JSONResponse:
    secret = await clients.rotate_client_secret(
        _svc(request),
        tenant,
        client_id,
        Actor.from_principal(p),
        body.reason,
        body.approver,
        body.overlap_seconds,
    )
    return JSONResponse(
        {"client_id": client_id, "client_secret": secret}, headers={"Cache-Control": "no-store"}
    )


@router.post(
    "/admin/sandbox/clients",
    status_code=201,
    response_model=None,
    responses=documented(SandboxClient, "Registered; the secret is shown once.", 201),
)
async def register_sandbox_client(
    body: SandboxClientRequest,
    request: Request,
    p: Principal = Security(require_scope("admin:clients")),
) -> JSONResponse:
    """Register a test-mode client of the caller's tenant's sandbox twin
    (docs/design.md §10); its secret is shown once."""
    try:
        client = await clients.register_sandbox_client(
            _svc(request),
            p.tenant or "",
            name=body.name,
            scopes=body.scopes,
            actor=Actor.from_principal(p),
            reason=body.reason,
            approver=body.approver,
        )
    except clients.NotGrantable as error:
        raise invalid_field(
            "scopes", f"not grantable to a tenant's client: {error}", "scope_not_grantable"
        ) from None
    return JSONResponse(client, status_code=201, headers={"Cache-Control": "no-store"})


@router.post(
    "/admin/clients/{client_id}/disable",
    response_model=None,
    responses=documented(ClientDisabled, "Disabled."),
)
async def disable_client(
    client_id: str,
    body: AdminRequest,
    request: Request,
    p: Principal = Security(require_scope("admin:clients")),
) -> dict[str, Any]:
    """Disable one of the caller's tenant's clients."""
    try:
        return await _disable(request, p.tenant or "", client_id, p, body)
    except handlers.NotFound:
        raise _not_in_tenant(client_id) from None


@router.post(
    "/admin/clients/{client_id}/secret",
    response_model=None,
    responses=documented(ClientSecret, "The new secret."),
)
async def rotate_client_secret(
    client_id: str,
    body: SecretRotation,
    request: Request,
    p: Principal = Security(require_scope("admin:clients")),
) -> JSONResponse:
    """Rotate the secret of one of the caller's tenant's clients."""
    try:
        return await _rotate_secret(request, p.tenant or "", client_id, p, body)
    except handlers.NotFound:
        raise _not_in_tenant(client_id) from None


def _client_view(row: Any) -> dict[str, Any]:
    return {
        "client_id": row["client_id"],
        "tenant": row["tenant"],
        "name": row["name"],
        "status": row["status"],
        "api_version": row["api_version"],
        "created_at": row["created_at"].isoformat(),
    }


async def _clients_on_version(
    request: Request, tenant: str | None, api_version: str, page: PageRequest
) -> dict[str, Any]:
    served = request.app.state.api_versions.all()
    if api_version not in served:
        raise invalid_field(("query", "api_version"), f"must be one of {', '.join(served)}")
    filters = {"api_version": api_version}
    after = page.after(tenant or PLATFORM_TENANT, filters)
    rows = await clients.clients_on_version(
        _svc(request),
        api_version,
        tenant=tenant,
        after=None if after is None else str(after[0]),
        limit=page.fetch_limit,
    )
    return page.page(
        rows,
        tenant=tenant or PLATFORM_TENANT,
        filters=filters,
        position=lambda r: (r["client_id"],),
        render=_client_view,
    )


@router.get(
    "/admin/clients", response_model=None, responses=documented(ClientList, "A page of clients.")
)
async def list_clients_on_version(
    request: Request,
    api_version: str = Query(pattern=r"^\d{4}-\d{2}-\d{2}$"),
    page: PageRequest = Depends(page_request),
    p: Principal = Security(require_scope("admin:clients")),
) -> dict[str, Any]:
    """The caller's tenant's clients pinned to ``api_version`` (docs/design.md §10)."""
    return await _clients_on_version(request, p.tenant or "", api_version, page)


@router.get(
    "/platform/clients", response_model=None, responses=documented(ClientList, "A page of clients.")
)
async def platform_list_clients_on_version(
    request: Request,
    api_version: str = Query(pattern=r"^\d{4}-\d{2}-\d{2}$"),
    page: PageRequest = Depends(page_request),
    p: Principal = Security(require_scope("platform:clients")),
) -> dict[str, Any]:
    """Every tenant's clients still pinned to ``api_version`` (platform operators)."""
    _operator(p)
    return await _clients_on_version(request, None, api_version, page)


@router.post(
    "/platform/clients/{client_id}/disable",
    response_model=None,
    responses=documented(ClientDisabled, "Disabled."),
)
async def platform_disable_client(
    client_id: str,
    body: AdminRequest,
    request: Request,
    p: Principal = Security(require_scope("platform:clients")),
) -> dict[str, Any]:
    """Disable any tenant's client (platform operators)."""
    try:
        return await _disable(request, None, client_id, _operator(p), body)
    except handlers.NotFound:
        raise ProblemError(404, "client-not-found", "Client not found") from None


@router.post(
    "/platform/clients/{client_id}/secret",
    response_model=None,
    responses=documented(ClientSecret, "The new secret."),
)
async def platform_rotate_client_secret(
    client_id: str,
    body: SecretRotation,
    request: Request,
    p: Principal = Security(require_scope("platform:clients")),
) -> JSONResponse:
    """Rotate any tenant's client secret (platform operators)."""
    try:
        return await _rotate_secret(request, None, client_id, _operator(p), body)
    except handlers.NotFound:
        raise ProblemError(404, "client-not-found", "Client not found") from None


@router.post(
    "/admin/consents/{consent_id}/revocation",
    response_model=None,
    responses=documented(ConsentOut, "The consent."),
)
async def admin_revoke_consent(
    consent_id: str,
    body: AdminRequest,
    request: Request,
    p: Principal = Security(require_scope("admin:consents")),
) -> dict[str, Any]:
    tenant = _in_region(request, p)
    try:
        c = await handlers.revoke_consent(
            _svc(request),
            tenant,
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

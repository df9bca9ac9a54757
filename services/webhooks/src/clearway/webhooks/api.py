"""HTTP routes for endpoints and the event catalog.

Scopes: ``webhooks:endpoints:manage`` to change endpoints, ``webhooks:read`` to
read them; platform operators' ``platform:webhooks`` rotates a whole tenant's
secrets. ``GET /v1/event-types`` is public on purpose: it is the partner
documentation of the wire contract (the same content as docs/events.md); so is
``GET /v1/webhooks/signing-keys``, the public keys partners verify v1a with.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from fastapi import APIRouter, Depends, Request, Response, Security
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from clearway.shared.auth import Principal, require_platform_scope, require_scope
from clearway.shared.http import (
    ApiVersions,
    PageRequest,
    ProblemError,
    documented,
    invalid_field,
    list_body,
    page_of,
    page_request,
    request_version,
)
from clearway.webhooks import handlers
from clearway.webhooks.api_docs import EventTypeList, V1aKeys
from clearway.webhooks.catalog import catalog
from clearway.webhooks.domain import InvalidSecret, InvalidSubscription
from clearway.webhooks.handlers import Context, NotFound
from clearway.webhooks.ssrf import SsrfGuard, UnsafeUrl

MANAGE = "webhooks:endpoints:manage"
READ = "webhooks:read"
# Every request body of this API (endpoints, replays) fits in 64 KiB; the kit's
# edge enforces it on the stream (create_app(max_body_bytes=...) in bootstrap).
MAX_BODY_BYTES = 64 * 1024

router = APIRouter()

# Examples of the document (docs/design.md §10): valid requests, answers as they are.
ENDPOINT_EXAMPLE: dict[str, Any] = {
    "url": "https://hooks.example.com/clearway",
    "description": "Order system",
    "event_types": ["transfer.settled", "transfer.failed"],
    "rate_limit_per_s": 50,
    "api_version": "2026-12-01",
    "ed25519_signatures": False,
}
ENDPOINT_OUT_EXAMPLE: dict[str, Any] = {
    "id": "ep_3f9a1c2e7b5d4e6f8a0b1c2d3e4f5a6b",
    **ENDPOINT_EXAMPLE,
    "disabled": False,
    "disabled_reason": None,
    "failing_since": None,
    "created_at": "2026-12-03T09:15:00.123456Z",
    "updated_at": "2026-12-03T09:15:00.123456Z",
}


class EndpointIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [ENDPOINT_EXAMPLE]})
    url: str = Field(min_length=1, max_length=2048)
    description: str = Field("", max_length=500)
    event_types: list[str] = Field(min_length=1, max_length=100)
    rate_limit_per_s: float | None = Field(None, gt=0, le=10_000)
    api_version: str | None = Field(
        None,
        description="The dated version whose shapes the payloads take (docs/changes/);"
        " default: the version of this request (Clearway-Version, else your client's pin).",
        examples=["2026-12-01"],
    )
    ed25519_signatures: bool = Field(
        False,
        description="Also sign with Ed25519 (Standard Webhooks v1a); the public keys"
        " (whpk_) are published at GET /v1/webhooks/signing-keys.",
    )


class EndpointPatch(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"description": "Order system (EU)", "rate_limit_per_s": 20}]
        },
    )
    url: str | None = Field(None, min_length=1, max_length=2048)
    description: str | None = Field(None, max_length=500)
    event_types: list[str] | None = Field(None, min_length=1, max_length=100)
    rate_limit_per_s: float | None = Field(None, gt=0, le=10_000)
    api_version: str | None = Field(None, description="Move the endpoint to another version.")


class Reason(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"reason": "Receiver under maintenance"}]}
    )
    reason: str | None = Field(None, max_length=500)


class BreachRotation(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"reason": "Secrets exposed in incident INC-2291"}]},
    )
    reason: str = Field(min_length=3, max_length=500)


class RotateIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"grace_seconds": 86400},
                {
                    "grace_seconds": 3600,
                    "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwGk8Sy0Cq3fM=",
                    "reason": "Yearly rotation",
                },
            ]
        },
    )
    grace_seconds: float | None = Field(None, ge=0, le=7 * 24 * 3600)
    # SecretStr: never in a repr, a log line or a validation problem (ADR 0049)
    secret: SecretStr | None = Field(
        None,
        max_length=200,
        description="Your own new secret (like Svix's rotate `key`): whsec_ and the padded"
        " base64 of 24 to 64 random bytes, e.g. `whsec_$(openssl rand -base64 32)`. It is"
        " not returned. Unset: the platform generates one and returns it once.",
    )
    reason: str | None = Field(
        None, max_length=500, description="Why, for the audit trail (webhooks.admin_action)."
    )


class EndpointOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [ENDPOINT_OUT_EXAMPLE]})
    id: str
    url: str
    description: str
    event_types: list[str]
    rate_limit_per_s: float | None
    disabled: bool
    disabled_reason: str | None
    failing_since: datetime | None
    ed25519_signatures: bool = Field(
        description="Deliveries also carry v1a (Ed25519) signatures, verified with the keys"
        " of GET /v1/webhooks/signing-keys."
    )
    api_version: str = Field(description="The dated version of the payloads' shapes.")
    created_at: datetime
    updated_at: datetime


class EndpointCreated(EndpointOut):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {**ENDPOINT_OUT_EXAMPLE, "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}
            ]
        }
    )
    secret: str = Field(description="The whsec_ signing secret. Shown once; store it now.")


class SecretRotated(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "secret": "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
                    "previous_secrets_expire_at": "2026-12-04T09:15:00Z",
                }
            ]
        }
    )
    secret: str | None = Field(
        None,
        description="The new whsec_ secret the platform generated, shown once; absent when"
        " you supplied your own.",
    )
    previous_secrets_expire_at: datetime


EndpointList = page_of(EndpointOut, "EndpointList")


class TenantSecretsRotated(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"tenant": "tnt_acme", "rotated_endpoints": [ENDPOINT_OUT_EXAMPLE["id"]]}]
        }
    )
    tenant: str
    rotated_endpoints: list[str] = Field(description="The endpoints that got a new secret.")


def endpoint_out(row: asyncpg.Record) -> dict[str, Any]:
    return {k: row[k] for k in EndpointOut.model_fields}


def tenant_of(principal: Principal) -> str:
    if not principal.tenant:
        raise ProblemError(403, "tenant-required", "Tenant required", "the token carries no tenant")
    return principal.tenant


def ctx_of(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


async def conn_of(request: Request) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection for one request; a handler's ``NotFound`` becomes the 404 here,
    once, instead of in every route (it reaches this ``yield`` as FastAPI unwinds)."""
    async with request.app.state.pool.acquire() as conn:
        try:
            yield conn
        except NotFound as e:
            raise not_found(e) from None


async def checked_url(request: Request, url: str) -> str:
    guard: SsrfGuard = request.app.state.guard
    try:
        return await guard.check_url(url)
    except UnsafeUrl as e:
        raise invalid_field("url", f"is refused: {e.reason}", "unsafe_url") from None


def served_version(request: Request, value: str) -> str:
    """``value`` when it is a dated version served here, else a 422 listing them."""
    versions: ApiVersions = request.app.state.api_versions
    if value not in versions.all():
        served = ", ".join(versions.all())
        raise invalid_field("api_version", f"must be one of {served}", "unsupported_version")
    return value


def invalid_types(e: InvalidSubscription) -> ProblemError:
    return invalid_field("event_types", str(e), "unknown_event_type")


def not_found(e: NotFound) -> ProblemError:
    return ProblemError(404, "not-found", "Not found", f"No {e.kind} {e.id} for this tenant.")


@router.post(
    "/v1/endpoints",
    status_code=201,
    response_model=EndpointCreated,
)
async def create_endpoint(
    body: EndpointIn,
    request: Request,
    principal: Principal = Security(require_scope(MANAGE)),
    conn: asyncpg.Connection = Depends(conn_of),
) -> dict[str, Any]:
    url = await checked_url(request, body.url)
    try:
        row, secret = await handlers.create_endpoint(
            ctx_of(request),
            conn,
            principal,
            tenant_of(principal),
            url=url,
            description=body.description,
            event_types=body.event_types,
            rate_limit_per_s=body.rate_limit_per_s,
            api_version=served_version(request, body.api_version or request_version(request)),
            ed25519_signatures=body.ed25519_signatures,
        )
    except InvalidSubscription as e:
        raise invalid_types(e) from None
    return {**endpoint_out(row), "secret": secret}


def by_created(row: asyncpg.Record) -> tuple[datetime, str]:
    """The keyset position of an endpoint or message row: ``(created_at, id)``."""
    return row["created_at"], row["id"]


@router.get("/v1/endpoints", response_model=EndpointList)
async def list_endpoints(
    page: PageRequest = Depends(page_request),
    principal: Principal = Security(require_scope(READ)),
    conn: asyncpg.Connection = Depends(conn_of),
) -> dict[str, Any]:
    tenant = tenant_of(principal)
    rows = await handlers.list_endpoints(
        conn, tenant, after=page.after(tenant), limit=page.fetch_limit
    )
    return page.page(rows, tenant=tenant, position=by_created, render=endpoint_out)


@router.get("/v1/endpoints/{endpoint_id}", response_model=EndpointOut)
async def get_endpoint(
    endpoint_id: str,
    principal: Principal = Security(require_scope(READ)),
    conn: asyncpg.Connection = Depends(conn_of),
) -> dict[str, Any]:
    return endpoint_out(await handlers.get_endpoint(conn, tenant_of(principal), endpoint_id))


@router.patch("/v1/endpoints/{endpoint_id}", response_model=EndpointOut)
async def update_endpoint(
    endpoint_id: str,
    body: EndpointPatch,
    request: Request,
    principal: Principal = Security(require_scope(MANAGE)),
    conn: asyncpg.Connection = Depends(conn_of),
) -> dict[str, Any]:
    changes = body.model_dump(exclude_unset=True)
    if changes.get("url") is not None:
        changes["url"] = await checked_url(request, changes["url"])
    for name in ("url", "event_types", "api_version"):
        if name in changes and changes[name] is None:
            raise invalid_field(name, "may not be null", "null_not_allowed")
    if "api_version" in changes:
        changes["api_version"] = served_version(request, changes["api_version"])
    try:
        row = await handlers.update_endpoint(
            ctx_of(request), conn, principal, tenant_of(principal), endpoint_id, changes
        )
    except InvalidSubscription as e:
        raise invalid_types(e) from None
    return endpoint_out(row)


async def _set_disabled(
    request: Request,
    principal: Principal,
    conn: asyncpg.Connection,
    endpoint_id: str,
    disabled: bool,
    reason: str | None,
) -> dict[str, Any]:
    row = await handlers.set_endpoint_disabled(
        ctx_of(request), conn, principal, tenant_of(principal), endpoint_id, disabled, reason
    )
    return endpoint_out(row)


@router.post("/v1/endpoints/{endpoint_id}/disable", response_model=EndpointOut)
async def disable_endpoint(
    endpoint_id: str,
    request: Request,
    body: Reason | None = None,
    principal: Principal = Security(require_scope(MANAGE)),
    conn: asyncpg.Connection = Depends(conn_of),
) -> dict[str, Any]:
    reason = (body.reason if body else None) or "disabled by the tenant"
    return await _set_disabled(request, principal, conn, endpoint_id, True, reason)


@router.post("/v1/endpoints/{endpoint_id}/enable", response_model=EndpointOut)
async def enable_endpoint(
    endpoint_id: str,
    request: Request,
    principal: Principal = Security(require_scope(MANAGE)),
    conn: asyncpg.Connection = Depends(conn_of),
) -> dict[str, Any]:
    return await _set_disabled(request, principal, conn, endpoint_id, False, None)


@router.delete("/v1/endpoints/{endpoint_id}", status_code=204)
async def delete_endpoint(
    endpoint_id: str,
    request: Request,
    principal: Principal = Security(require_scope(MANAGE)),
    conn: asyncpg.Connection = Depends(conn_of),
) -> Response:
    await handlers.delete_endpoint(
        ctx_of(request), conn, principal, tenant_of(principal), endpoint_id
    )
    return Response(status_code=204)


@router.post(
    "/v1/endpoints/{endpoint_id}/secret/rotate",
    response_model=SecretRotated,
    response_model_exclude_none=True,
)
async def rotate_secret(
    endpoint_id: str,
    request: Request,
    body: RotateIn | None = None,
    principal: Principal = Security(require_scope(MANAGE)),
    conn: asyncpg.Connection = Depends(conn_of),
) -> dict[str, Any]:
    body = body or RotateIn()
    try:
        secret, until = await handlers.rotate_secret(
            ctx_of(request),
            conn,
            principal,
            tenant_of(principal),
            endpoint_id,
            body.grace_seconds,
            secret=body.secret.get_secret_value() if body.secret else None,
            reason=body.reason,
        )
    except InvalidSecret as e:
        raise invalid_field("secret", str(e), "invalid_secret") from None
    return {"secret": secret, "previous_secrets_expire_at": until}


@router.post(
    "/v1/platform/tenants/{tenant}/secrets/rotation",
    response_model=None,
    responses={200: {"model": TenantSecretsRotated, "description": "Rotated."}},
)
async def rotate_tenant_secrets(
    tenant: str,
    body: BreachRotation,
    request: Request,
    principal: Principal = Security(require_platform_scope("platform:webhooks")),
    conn: asyncpg.Connection = Depends(conn_of),
) -> dict[str, Any]:
    """Platform operators, in a breach: new secrets for every endpoint of ``tenant``, the
    old ones refused at once; the new ones are not returned (the tenant rotates again to
    hold one)."""
    rotated = await handlers.rotate_tenant_secrets(
        ctx_of(request), conn, principal, tenant, body.reason
    )
    return {"tenant": tenant, "rotated_endpoints": rotated}


# The route keeps its inferred response model: its serialisation is what renders the
# keys' datetimes (RFC 3339 with `Z`), so the document's schema merges into it.
@router.get("/v1/webhooks/signing-keys", responses=documented(V1aKeys, "The public keys."))
async def signing_keys(
    request: Request, conn: asyncpg.Connection = Depends(conn_of)
) -> dict[str, Any]:
    """The Ed25519 public keys of v1a signatures (public, like a JWKS): every key that
    signs now; after a rotation the previous one too, until its ``retire_after``."""
    ctx = ctx_of(request)
    overlap = timedelta(seconds=ctx.settings.v1a_overlap_s)
    return {"keys": await ctx.v1a.key_set(conn, overlap)}


@router.get(
    "/v1/event-types",
    response_model=None,
    responses=documented(EventTypeList, "The whole catalog, one page."),
)
async def event_types() -> dict[str, Any]:
    """The event catalog (public: partner documentation), whole: one page in the list shape."""
    return list_body(catalog())

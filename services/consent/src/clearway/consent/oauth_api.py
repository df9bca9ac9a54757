"""OAuth 2.0 endpoints. Public by nature (clients authenticate in the request body or
Basic header, not with a bearer token): discovery (RFC 8414), JWKS, token (RFC 6749),
PAR (RFC 9126), introspection (RFC 7662) and revocation (RFC 7009)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from clearway.consent import authorization, clientauth, tokens
from clearway.consent.oauth_docs import (
    Introspection,
    PushedRequest,
    ServerMetadata,
    SigningKeys,
    TokenResponse,
)
from clearway.consent.oauth_errors import OAUTH_ERRORS, OAuthError
from clearway.consent.scopes import SCOPES
from clearway.consent.service import Service
from clearway.shared.http import documented

router = APIRouter(tags=["oauth"])
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _svc(request: Request) -> Service:
    return request.app.state.consent


async def _form(request: Request) -> dict[str, Any]:
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        raise OAuthError("invalid_request", "use application/x-www-form-urlencoded")
    raw = await request.form()
    form: dict[str, Any] = {}
    for key in raw:
        values = raw.getlist(key)
        if key == "resource":
            form[key] = [str(v) for v in values]
        elif len(values) > 1:
            # RFC 6749 §3.1: parameters must not be included more than once.
            raise OAuthError("invalid_request", f"{key} is repeated")
        else:
            form[key] = str(values[0])
    return form


def _oauth(handler: Any) -> Any:
    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except OAuthError as error:
            return error.response()

    endpoint.__name__ = handler.__name__
    endpoint.__doc__ = handler.__doc__
    return endpoint


@router.get(
    "/.well-known/oauth-authorization-server",
    response_model=None,
    responses=documented(ServerMetadata, "The server's metadata."),
)
async def metadata(request: Request) -> dict[str, Any]:
    """RFC 8414 authorization server metadata (public)."""
    iss = _svc(request).settings.issuer
    return {
        "issuer": iss,
        "authorization_endpoint": f"{iss}/oauth/authorize",
        "token_endpoint": f"{iss}/oauth/token",
        "pushed_authorization_request_endpoint": f"{iss}/oauth/par",
        "require_pushed_authorization_requests": True,
        "introspection_endpoint": f"{iss}/oauth/introspect",
        "revocation_endpoint": f"{iss}/oauth/revoke",
        "jwks_uri": f"{iss}/.well-known/jwks.json",
        "scopes_supported": [s.name for s in SCOPES],
        "response_types_supported": ["code"],
        "grant_types_supported": ["client_credentials", "authorization_code"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
            "private_key_jwt",
        ],
        "token_endpoint_auth_signing_alg_values_supported": ["ES256", "EdDSA"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "private_key_jwt"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "private_key_jwt"],
        "authorization_details_types_supported": ["payment_initiation"],
        "authorization_response_iss_parameter_supported": True,
        "access_token_signing_alg_values_supported": ["ES256", "EdDSA"],
    }


def _address(request: Request) -> str:
    """The caller's address as uvicorn resolved it (``X-Forwarded-For`` only from its
    trusted proxies, ``FORWARDED_ALLOW_IPS``; the socket peer otherwise)."""
    return request.client.host if request.client is not None else "unknown"


@router.get(
    "/.well-known/jwks.json",
    response_model=None,
    responses=documented(SigningKeys, "The token signing keys."),
)
async def jwks(request: Request) -> JSONResponse:
    """The public signing keys (RFC 7517), pending and still-valid retired ones included."""
    return JSONResponse(_svc(request).keys.jwks(), headers={"Cache-Control": "public, max-age=60"})


@_oauth
async def token(request: Request) -> Response:
    """RFC 6749 §3.2 token endpoint: client_credentials and authorization_code."""
    svc = _svc(request)
    form = await _form(request)
    grant = form.get("grant_type")
    if not grant:
        raise OAuthError("invalid_request", "grant_type is required")
    if grant not in ("client_credentials", "authorization_code"):
        raise OAuthError("unsupported_grant_type", f"grant_type {grant!r} is not supported")
    client = await clientauth.authenticate(
        svc, form, request.headers.get("authorization"), _address(request)
    )
    if grant == "client_credentials":
        body = await tokens.issue_client_credentials(svc, client, form)
    else:
        # the code and its consent live in the client's tenant's region (docs/design.md §9)
        svc.residency.check(client["tenant"])
        body = await tokens.redeem_code(svc, client, form)
    return JSONResponse(body, headers=_NO_STORE)


@_oauth
async def par(request: Request) -> Response:
    """RFC 9126 pushed authorization request; the consent page needs its request_uri."""
    svc = _svc(request)
    form = await _form(request)
    client = await clientauth.authenticate(
        svc, form, request.headers.get("authorization"), _address(request)
    )
    svc.residency.check(client["tenant"])  # its consents live in its region (421 otherwise)
    if form.get("response_type") != "code":
        raise OAuthError("unsupported_response_type", "response_type must be code")
    redirect_uri = form.get("redirect_uri")
    if not redirect_uri or redirect_uri not in client["redirect_uris"]:
        raise OAuthError("invalid_request", "redirect_uri is not registered for this client")
    if form.get("code_challenge_method") != "S256" or not form.get("code_challenge"):
        raise OAuthError("invalid_request", "PKCE with code_challenge_method=S256 is required")
    if "request_uri" in form or "request" in form:
        raise OAuthError("invalid_request", "request_uri and request are not accepted here")
    consent_id = form.get("consent_id")
    params = {
        "redirect_uri": redirect_uri,
        "state": form.get("state"),
        "code_challenge": form["code_challenge"],
        "resource": form.get("resource", []),
    }
    if not consent_id and authorization.may_sign_in(svc, client):
        scopes = tokens.grant_scopes(client, form.get("scope"))
        body = await authorization.push_sign_in(svc, client, scopes, params)
        return JSONResponse(body, status_code=201, headers=_NO_STORE)
    if not consent_id:
        raise OAuthError(
            "invalid_request", "consent_id is required (create it with POST /v1/consents)"
        )
    body = await authorization.push_request(
        svc,
        client,
        consent_id,
        tokens.grant_scopes(client, form.get("scope")),
        scope_requested=form.get("scope") is not None,
        params=params,
    )
    return JSONResponse(body, status_code=201, headers=_NO_STORE)


@_oauth
async def introspect(request: Request) -> Response:
    """RFC 7662 introspection for authenticated clients of the token's tenant."""
    svc = _svc(request)
    form = await _form(request)
    caller = await clientauth.authenticate(
        svc, form, request.headers.get("authorization"), _address(request)
    )
    return JSONResponse(await tokens.introspect(svc, caller, form.get("token")), headers=_NO_STORE)


@_oauth
async def revoke(request: Request) -> Response:
    """RFC 7009 revocation of the caller's own access token."""
    svc = _svc(request)
    form = await _form(request)
    caller = await clientauth.authenticate(
        svc, form, request.headers.get("authorization"), _address(request)
    )
    if "token" not in form:
        raise OAuthError("invalid_request", "token is required")
    await tokens.revoke(svc, caller, form.get("token"))
    return Response(status_code=200, headers=_NO_STORE)


router.add_api_route(
    "/oauth/token",
    token,
    methods=["POST"],
    responses={**documented(TokenResponse, "An access token."), **OAUTH_ERRORS},
)
router.add_api_route(
    "/oauth/par",
    par,
    methods=["POST"],
    status_code=201,
    responses={**documented(PushedRequest, "Pushed; use the request_uri.", 201), **OAUTH_ERRORS},
)
router.add_api_route(
    "/oauth/introspect",
    introspect,
    methods=["POST"],
    responses={**documented(Introspection, "The token's state."), **OAUTH_ERRORS},
)
# RFC 7009 §2.2: revoked (or unknown, which is fine) is a 200 with no body; the
# response class without a media type documents it so.
router.add_api_route(
    "/oauth/revoke",
    revoke,
    methods=["POST"],
    response_class=Response,
    responses={
        200: {"description": "Revoked, or not a live token of the caller (no body)."},
        **OAUTH_ERRORS,
    },
)

"""Sign-in, sign-out, the search page, a flow's timeline and an audit record's inclusion
proof (docs/console.md). Entry points only: parse, authorise, call one use case, render."""

from __future__ import annotations

import hmac
import secrets
import time

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from clearway.console import flows
from clearway.console.domain import KINDS, BadTerm, kind_of
from clearway.console.oauth import ConsentClient, SignInFailed, pkce_pair
from clearway.console.sessions import COOKIE, Session
from clearway.console.upstream import UpstreamError
from clearway.console.web import (
    check_csrf,
    error_page,
    is_operator,
    page,
    safe_next,
    sessions_of,
    set_cookie,
    settings_of,
    signed_in,
    upstream_of,
)

router = APIRouter(include_in_schema=False)


def consent_of(request: Request) -> ConsentClient:
    client: ConsentClient = request.app.state.consent
    return client


@router.get("/auth/sign-in")
async def sign_in(request: Request, next: str = "/") -> Response:
    """Start the authorization code flow: a pending session holds the state and the PKCE
    verifier; the browser goes to the consent service's sign-in page."""
    state = secrets.token_urlsafe(24)
    verifier, challenge = pkce_pair()
    try:
        url = await consent_of(request).push(state, challenge)
    except SignInFailed as e:
        return error_page(request, 502, "Cannot sign in", str(e))
    pending = sessions_of(request).pending(state, verifier, safe_next(next))
    response = RedirectResponse(url, status_code=303)
    set_cookie(request, response, pending)
    return response


@router.get("/auth/callback")
async def callback(
    request: Request, state: str = "", code: str = "", iss: str = "", error: str = ""
) -> Response:
    sessions = sessions_of(request)
    pending = sessions.get(request.cookies.get(COOKIE))
    if pending is None or pending.signed_in or pending.state is None:
        return error_page(request, 400, "Cannot sign in", "This sign-in has expired; start again.")
    if not hmac.compare_digest(state, pending.state):
        return error_page(
            request, 400, "Cannot sign in", "This sign-in does not match; start again."
        )
    # RFC 9207: the answer must come from the issuer the request went to
    if iss != settings_of(request).issuer:
        sessions.drop(pending.id)
        return error_page(request, 400, "Cannot sign in", "The answer came from another issuer.")
    if error or not code:
        sessions.drop(pending.id)
        message = "Your account has no role in the console." if error else "No code came back."
        return error_page(request, 403, "Cannot sign in", message)
    try:
        grant = await consent_of(request).redeem(code, pending.verifier or "")
    except SignInFailed as e:
        sessions.drop(pending.id)
        return error_page(request, 400, "Cannot sign in", str(e))
    ttl = settings_of(request).session_ttl_s
    session = sessions.sign_in(
        pending,
        subject=grant.subject,
        tenant=grant.tenant,
        scopes=grant.scopes,
        token=grant.token,
        expires_at=min(grant.expires_at, time.time() + ttl),
    )
    response = RedirectResponse(pending.next_path, status_code=303)
    set_cookie(request, response, session)
    return response


@router.post("/auth/sign-out")
async def sign_out(
    request: Request, csrf: str = Form(""), session: Session = Depends(signed_in)
) -> Response:
    check_csrf(request, session, csrf)
    sessions_of(request).drop(session.id)
    await consent_of(request).revoke(session.token or "")
    response = RedirectResponse("/signed-out", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


@router.get("/signed-out")
async def signed_out(request: Request) -> Response:
    return page(request, "signed_out.html", title="Signed out")


@router.get("/")
async def home(request: Request, session: Session = Depends(signed_in)) -> Response:
    return page(request, "search.html", title="Find a flow", kinds=KINDS, q="", kind="")


@router.get("/flows")
async def flow(
    request: Request,
    q: str = "",
    kind: str = "",
    tenant: str = "",
    session: Session = Depends(signed_in),
) -> Response:
    operator = is_operator(session)
    form = {"kinds": KINDS, "q": q, "kind": kind, "tenant": tenant}
    try:
        found_kind = kind_of(q.strip(), kind or None)
        found = await flows.find_flow(
            upstream_of(request), session, q.strip(), found_kind, tenant.strip() or None, operator
        )
    except BadTerm as e:
        return page(request, "search.html", 422, title="Find a flow", problem=str(e), **form)
    except flows.NotFound as e:
        return page(request, "search.html", 404, title="Not found", problem=str(e), **form)
    except UpstreamError as e:
        return error_page(request, e.status if e.status < 500 else 502, e.title, e.detail)
    return page(
        request,
        "flow.html",
        title=f"Flow {found.correlation_id or q}",
        flow=found,
        jaeger=settings_of(request).jaeger_ui_url.rstrip("/"),
        **form,
    )


@router.get("/audit/proofs/{position}")
async def proof(request: Request, position: int, session: Session = Depends(signed_in)) -> Response:
    """RFC 9162 inclusion proof of one of the user's tenant's records, as the audit
    service gives it (hashes only)."""
    try:
        doc = await upstream_of(request).get(
            "audit", "/v1/audit/proofs/inclusion", session.token or "", position=position
        )
    except UpstreamError as e:
        return error_page(request, e.status if e.status < 500 else 502, e.title, e.detail)
    return page(request, "proof.html", title=f"Inclusion proof of record {position}", proof=doc)

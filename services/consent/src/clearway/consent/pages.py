"""The consent page (public by nature: the user's browser carries a login session,
not a bearer token), reached through a pushed authorization request (RFC 9126)
and answered with an authorization code (RFC 6749 §4.1, PKCE per RFC 7636,
``iss`` per RFC 9207).

The sign-in form is a *development identity* with seeded demo users; production
puts the partner's identity provider in front of this page.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from clearway.consent import authorization, handlers, sign_in_limits
from clearway.consent.domain import ConsentError, same_text
from clearway.consent.service import Service
from clearway.shared.actor import Actor
from clearway.shared.http import ProblemError

router = APIRouter(tags=["consent page"], include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
COOKIE = "cw_session"
SESSION_S = 1800
_hasher = PasswordHasher()


def money(amount: dict[str, Any]) -> str:
    value = amount["amount"]
    return f"{value // 100:,}.{value % 100:02d} {amount['currency']}"


def _svc(request: Request) -> Service:
    return request.app.state.consent


def _mac(svc: Service, text: str) -> str:
    if not svc.session_key:  # loaded at start; never a guessable fallback
        raise RuntimeError("the consent session key is not loaded")
    key = svc.session_key
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def _session(request: Request) -> tuple[str, str] | None:
    """(subject, tenant) of a valid signed session cookie."""
    raw = request.cookies.get(COOKIE, "")
    parts = raw.split("|")
    if len(parts) != 4:
        return None
    subject, tenant, exp, mac = parts
    if not same_text(mac, _mac(_svc(request), f"{subject}|{tenant}|{exp}")):
        return None
    if not exp.isdigit() or int(exp) < time.time():
        return None
    return subject, tenant


def _csrf(request: Request, subject: str, purpose: str) -> str:
    return _mac(_svc(request), f"csrf|{subject}|{purpose}")


def _page(request: Request, name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
    headers = {"Cache-Control": "no-store", "X-Frame-Options": "DENY"}
    return templates.TemplateResponse(
        request, name, {"money": money, **ctx}, status_code=status, headers=headers
    )


def _error(request: Request, message: str, status: int = 400) -> HTMLResponse:
    return _page(request, "error.html", status, title="Cannot continue", message=message)


@router.get("/oauth/authorize")
async def authorize(request: Request, client_id: str = "", request_uri: str = "") -> Response:
    svc = _svc(request)
    await authorization.check_client_region(svc, client_id)
    par = await authorization.pushed_request(svc, client_id, request_uri, take=False)
    if par is None:
        return _error(request, "This authorization request is unknown or has expired.")
    session = _session(request)
    if session is None:
        nxt = "/oauth/authorize?" + urlencode({"client_id": client_id, "request_uri": request_uri})
        return _page(request, "login.html", title="Sign in", next=nxt, error=None)
    subject, tenant = session
    if par["consent_id"] is None:  # a first-party sign-in: no consent to show
        return await _sign_in(request, svc, client_id, request_uri, subject, tenant)
    shown = await authorization.consent_to_show(svc, par, client_id, subject, tenant)
    if shown is None:
        return _error(request, "This consent is not yours to give.", 403)
    consent, client = shown
    return _page(
        request,
        "consent.html",
        title="Approve this payment" if consent.is_payment else "Give consent",
        user=subject,
        client_name=client["name"],
        consent=consent,
        scopes=par["scopes"],
        request_uri=request_uri,
        client_id=client_id,
        csrf=_csrf(request, subject, request_uri),
    )


async def _sign_in(
    request: Request, svc: Service, client_id: str, request_uri: str, subject: str, tenant: str
) -> Response:
    """Answer a pushed sign-in request of a signed-in user with a code (RFC 6749 §4.1.2):
    the console is the platform's own, so there is nothing to approve; the request is used
    up here, so the code is issued once."""
    par = await authorization.pushed_request(svc, client_id, request_uri, take=True)
    if par is None:
        return _error(request, "This authorization request is unknown or has expired.")
    code = await handlers.sign_in(svc, par, subject, tenant)
    return _back_to_client(
        svc, par, code, denied="the user has no role this application asked for"
    )


def _back_to_client(
    svc: Service, par: dict[str, Any], code: str | None, *, denied: str
) -> Response:
    """The authorization response, redirected to the client (RFC 6749 §4.1.2, §4.1.2.1):
    the code, or ``access_denied`` saying why, with ``state`` echoed and the issuer named
    (RFC 9207), appended to a redirect URI that may already carry a query."""
    params: dict[str, str] = {"iss": svc.settings.issuer}
    if code is None:
        params["error"] = "access_denied"
        params["error_description"] = denied
    else:
        params["code"] = code
    if par.get("state"):
        params["state"] = par["state"]
    sep = "&" if "?" in par["redirect_uri"] else "?"
    return RedirectResponse(par["redirect_uri"] + sep + urlencode(params), status_code=303)


@router.post("/oauth/authorize")
async def decide(
    request: Request,
    request_uri: str = Form(...),
    client_id: str = Form(...),
    csrf: str = Form(...),
    decision: str = Form(...),
) -> Response:
    svc = _svc(request)
    session = _session(request)
    if session is None:
        return _error(request, "Your session has ended; start again from the application.", 401)
    subject, tenant = session
    if not same_text(csrf, _csrf(request, subject, request_uri)):
        return _error(request, "The form has expired; start again from the application.", 403)
    svc.residency.check(tenant)
    await authorization.check_client_region(svc, client_id)
    par = await authorization.pushed_request(svc, client_id, request_uri, take=True)
    if par is None:
        return _error(request, "This authorization request is unknown or has expired.")
    try:
        code = await handlers.decide(
            svc, par, subject, tenant, decision == "approve", request.headers.get("user-agent")
        )
    except (ConsentError, handlers.NotFound) as error:
        return _error(request, f"The consent cannot be changed: {error}.", 409)
    return _back_to_client(svc, par, code, denied="the user rejected the consent")


@router.post("/login")
async def login(
    request: Request,
    username: str = Form(...),
    password: str = Form(...),
    next: str = Form("/consents"),
) -> Response:
    svc = _svc(request)
    if not (next.startswith("/oauth/authorize?") or next == "/consents"):
        next = "/consents"  # never an open redirect
    address = request.client.host if request.client else ""
    try:
        await sign_in_limits.admit_sign_in(svc, username, address)
    except sign_in_limits.TooManySignIns as e:
        return _too_many(request, next, e.retry_after)
    user = await handlers.find_user(svc, username)
    ok = user is not None and await asyncio.to_thread(_password_ok, user["password_hash"], password)
    if not ok:
        return _page(
            request,
            "login.html",
            401,
            title="Sign in",
            next=next,
            error="Wrong username or password.",
        )
    await sign_in_limits.signed_in(svc, username)
    exp = str(int(time.time()) + SESSION_S)
    value = f"{user['subject']}|{user['tenant']}|{exp}"
    response = RedirectResponse(next, status_code=303)
    response.set_cookie(
        COOKIE,
        f"{value}|{_mac(svc, value)}",
        max_age=SESSION_S,
        httponly=True,
        samesite="lax",
        secure=svc.settings.issuer.startswith("https://"),
    )
    return response


def _too_many(request: Request, next: str, retry_after: int) -> Response:
    """429 with ``Retry-After`` (RFC 6585 §4, RFC 9110 §10.2.3): the form again for a
    browser, problem+json (RFC 9457) for any other client."""
    headers = {"Retry-After": str(retry_after)}
    if "text/html" not in request.headers.get("accept", ""):
        raise ProblemError(
            429,
            "too-many-sign-ins",
            "Too many sign-in attempts",
            f"Try again in {retry_after} seconds.",
            headers=headers,
        )
    response = _page(
        request,
        "login.html",
        429,
        title="Sign in",
        next=next,
        error=f"Too many sign-in attempts; try again in {retry_after} seconds.",
    )
    response.headers.update(headers)
    return response


def _password_ok(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@router.get("/consents")
async def my_consents(request: Request) -> Response:
    session = _session(request)
    if session is None:
        return _page(request, "login.html", title="Sign in", next="/consents", error=None)
    subject, tenant = session
    _svc(request).residency.check(tenant)
    consents = await handlers.list_consents(_svc(request), tenant, subject=subject)
    return _page(
        request,
        "consents.html",
        title="Your consents",
        user=subject,
        consents=consents,
        csrf=_csrf(request, subject, "manage"),
    )


@router.post("/consents/{consent_id}/revoke")
async def revoke_mine(request: Request, consent_id: str, csrf: str = Form(...)) -> Response:
    session = _session(request)
    if session is None:
        return _error(request, "Sign in first.", 401)
    subject, tenant = session
    if not same_text(csrf, _csrf(request, subject, "manage")):
        return _error(request, "The form has expired; reload the page.", 403)
    _svc(request).residency.check(tenant)
    try:
        await handlers.revoke_consent(
            _svc(request),
            tenant,
            consent_id,
            Actor(subject),
            "revoked by the user",
            subject=subject,
        )
    except (ConsentError, handlers.NotFound) as error:
        return _error(request, f"The consent cannot be revoked: {error}.", 409)
    return RedirectResponse("/consents", status_code=303)

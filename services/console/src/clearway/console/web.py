"""What every page shares: templates, the session of a request, CSRF checks, roles,
security headers and error pages (docs/console.md)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from clearway.console.sessions import COOKIE, Session, Sessions
from clearway.console.settings import ConsoleSettings
from clearway.console.upstream import Upstream, UpstreamError

templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))

#: CSP Level 3 without 'unsafe-inline' anywhere: scripts and styles come from this origin
#: only, nothing may frame the console, forms post back to it only.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "content-security-policy": CSP,
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",  # no-referrer would make Origin "null" on forms
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=(), payment=()",
}


class SecurityHeaders:
    """Adds ``HEADERS`` (and HSTS over https) to every response; pages are ``no-store``
    (they show a user's data), static files may be cached."""

    def __init__(self, app: ASGIApp, *, https: bool) -> None:
        self.app = app
        extra = {"strict-transport-security": "max-age=31536000"} if https else {}
        self.headers = [(k.encode(), v.encode()) for k, v in (HEADERS | extra).items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = str(scope.get("path", "")).startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    h for h in message.get("headers", []) if h[0].lower() != b"cache-control"
                ]
                headers += self.headers
                cache = b"public, max-age=300" if static else b"no-store"
                headers.append((b"cache-control", cache))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def settings_of(request: Request) -> ConsoleSettings:
    settings: ConsoleSettings = request.app.state.settings
    return settings


def sessions_of(request: Request) -> Sessions:
    sessions: Sessions = request.app.state.sessions
    return sessions


def upstream_of(request: Request) -> Upstream:
    upstream: Upstream = request.app.state.upstream
    return upstream


def session_of(request: Request) -> Session | None:
    """The request's live signed-in session, or None."""
    session = sessions_of(request).get(request.cookies.get(COOKIE))
    return session if session is not None and session.signed_in else None


def is_operator(session: Session) -> bool:
    """Operators hold the platform's audit reach; partners never do (the consent
    service narrows each user's token to their role, docs/design.md §7)."""
    return "platform:audit" in session.scopes


def set_cookie(request: Request, response: Response, session: Session) -> None:
    response.set_cookie(
        COOKIE,
        session.id,
        max_age=max(1, int(session.expires_at - time.time())),
        httponly=True,
        secure=settings_of(request).secure_cookies,
        samesite="lax",
        path="/",
    )


class NotSignedIn(Exception):
    """No live session: GETs go through sign-in and come back, forms get a 401 page."""


class Forbidden(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def signed_in(request: Request) -> Session:
    """Dependency: the signed-in session (``NotSignedIn`` otherwise)."""
    session = session_of(request)
    if session is None:
        raise NotSignedIn()
    return session


def operator(request: Request) -> Session:
    """Dependency: an operator's session; partners get a 403 page."""
    session = signed_in(request)
    if not is_operator(session):
        raise Forbidden("This page is for platform operators.")
    return session


def partner(request: Request) -> Session:
    """Dependency: a partner's session (a tenant's own webhooks); operators get a 403."""
    session = signed_in(request)
    if is_operator(session):
        raise Forbidden("This page is for a partner's own tenant.")
    return session


def check_csrf(request: Request, session: Session, token: str | None) -> None:
    """The form's CSRF token is the session's and the request comes from this origin
    (the Origin header, when the browser sends one: Fetch standard)."""
    origin = request.headers.get("origin")
    own = settings_of(request).public_url.rstrip("/")
    if not session.csrf_ok(token) or (origin is not None and origin != own):
        raise Forbidden("This form has expired or did not come from the console; reload it.")


def page(request: Request, name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
    session = ctx.pop("session", None) or session_of(request)
    return templates.TemplateResponse(
        request,
        name,
        {
            "session": session,
            "operator": session is not None and is_operator(session),
            "csrf": session.csrf if session is not None else "",
            **ctx,
        },
        status_code=status,
    )


def error_page(request: Request, status: int, title: str, message: str) -> HTMLResponse:
    return page(request, "error.html", status, title=title, message=message)


def sign_in_redirect(request: Request) -> RedirectResponse:
    nxt = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/auth/sign-in?next={quote(nxt, safe='')}", status_code=303)


def safe_next(path: str | None) -> str:
    """Only a path of this console (never an open redirect)."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path:
        return "/"
    return path


def upstream_failed(request: Request, e: UpstreamError) -> HTMLResponse:
    """The error page of a service's refusal (a 5xx shows as 502: the console is a gateway)."""
    return error_page(request, e.status if e.status < 500 else 502, e.title, e.detail)


def reason_of(value: str) -> str | None:
    """The reason of an audited action (3 to 500 characters), or None."""
    value = value.strip()
    return value if 3 <= len(value) <= 500 else None

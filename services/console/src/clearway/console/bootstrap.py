"""Wiring of the console: settings, the HTTP client to the other services, sessions,
pages, security headers (docs/console.md, ADR 0045)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from clearway.console import pages, pages_endpoints, pages_operator, pages_webhooks
from clearway.console.oauth import ConsentClient
from clearway.console.sessions import Sessions
from clearway.console.settings import ConsoleSettings
from clearway.console.upstream import Upstream
from clearway.console.web import (
    Forbidden,
    NotSignedIn,
    SecurityHeaders,
    error_page,
    sign_in_redirect,
)
from clearway.shared.http import create_app
from clearway.shared.supervisor import Supervisor

SERVICE = "console"


def build_app(settings: ConsoleSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        timeout = httpx.Timeout(settings.upstream_timeout_s)
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as http:
            app.state.upstream = Upstream(settings, http)
            app.state.consent = ConsentClient(settings, http)
            async with Supervisor(SERVICE, app) as tasks:
                tasks.every("session-purge", 60.0, _purge(app.state.sessions))
                yield

    app = create_app(SERVICE, title="Clearway console", lifespan=lifespan)
    app.state.settings = settings
    app.state.sessions = Sessions(settings.max_sessions)
    app.include_router(pages.router)
    app.include_router(pages_webhooks.router)
    app.include_router(pages_endpoints.router)
    app.include_router(pages_operator.router)
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")

    @app.exception_handler(NotSignedIn)
    async def not_signed_in(request: Request, exc: NotSignedIn) -> Response:
        if request.method == "GET":
            return sign_in_redirect(request)
        return error_page(request, 401, "Signed out", "Your session has ended; sign in again.")

    @app.exception_handler(Forbidden)
    async def forbidden(request: Request, exc: Forbidden) -> Response:
        return error_page(request, 403, "Not allowed", exc.message)

    app.add_middleware(SecurityHeaders, https=settings.secure_cookies)
    return app


def _purge(sessions: Sessions):  # type: ignore[no-untyped-def]
    async def purge() -> None:
        sessions.purge()

    return purge

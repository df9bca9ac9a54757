"""Wiring of the console: settings, its database (sessions only), the HTTP client to the
other services, pages, security headers (docs/console.md, ADR 0045, ADR 0049)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from clearway.console import pages, pages_endpoints, pages_operator, pages_webhooks, store
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
from clearway.shared.crypto.settings import open_envelope
from clearway.shared.db import create_pool, load_migrations, migrate
from clearway.shared.http import create_app
from clearway.shared.supervisor import Supervisor

SERVICE = "console"
SCHEMA = "console"
MIGRATIONS = Path(__file__).parent / "migrations"


async def migrate_database(settings: ConsoleSettings) -> None:
    """The console's migrations as the admin (at start, or ``clearway-migrate``); no kit
    tables: the console has no outbox, inbox or tenant keys."""
    await migrate(
        settings.platform.database_url,
        schema=SCHEMA,
        service=SERVICE,
        migrations=load_migrations(MIGRATIONS),
        role_password=settings.db_password.get_secret_value(),
        with_kit=False,
    )


def build_app(settings: ConsoleSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.platform.migrate_at_start:
            await migrate_database(settings)
        # the HSM must answer now: a console that cannot seal sessions refuses to start
        envelope = open_envelope(settings)
        timeout = httpx.Timeout(settings.upstream_timeout_s)
        async with (
            httpx.AsyncClient(timeout=timeout, follow_redirects=False) as http,
            contextlib.AsyncExitStack() as stack,
        ):
            pool = await create_pool(settings.service_dsn, schema=SCHEMA, min_size=1, max_size=8)
            stack.push_async_callback(pool.close)

            async def database_ready() -> bool:
                async with pool.acquire() as conn:
                    return await store.ping(conn)

            app.state.readiness_checks.append(database_ready)
            sessions = app.state.sessions = Sessions(pool, envelope, settings.max_sessions)
            app.state.upstream = Upstream(settings, http)
            app.state.consent = ConsentClient(settings, http)
            async with Supervisor(SERVICE, app) as tasks:
                tasks.every("session-purge", 60.0, sessions.purge)
                yield

    app = create_app(SERVICE, title="Clearway console", lifespan=lifespan)
    app.state.settings = settings
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

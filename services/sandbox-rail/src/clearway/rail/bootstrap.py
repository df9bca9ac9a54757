"""Wiring of the sandbox rail: settings, pool, migrations, token verification, faults."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from clearway.rail.api import router
from clearway.rail.faults import FaultInjector, FaultState
from clearway.rail.settings import RailSettings
from clearway.shared.auth import verify_tokens
from clearway.shared.db import create_pool, load_migrations, migrate
from clearway.shared.http import create_app
from clearway.shared.supervisor import Supervisor

SERVICE = "rail"
#: The audience of the service tokens the rail accepts (scopes ``rail:*``).
AUDIENCE = "clearway-rail"
MIGRATIONS = Path(__file__).parent / "migrations"


def build_app(settings: RailSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        password = settings.db_password.get_secret_value()
        await migrate(
            settings.platform.database_url,
            schema=SERVICE,
            service=SERVICE,
            migrations=load_migrations(MIGRATIONS),
            role_password=password,
            with_kit=False,
        )
        dsn = settings.service_dsn
        app.state.pool = await create_pool(dsn, schema=SERVICE, max_size=10)
        try:
            async with Supervisor("sandbox-rail", app) as tasks:
                # Only callers holding a short-lived, unrevoked service token may use
                # the rail (docs/design.md §7): a disabled service client stops at once.
                await verify_tokens(
                    app,
                    tasks,
                    settings,
                    audience=AUDIENCE,
                    jwks=settings.jwks,
                    jwks_url=settings.jwks_url,
                )
                yield
        finally:
            await app.state.pool.close()

    app = create_app(
        "sandbox-rail",
        title="Clearway sandbox rail",
        lifespan=lifespan,
        cursor_secret=settings.cursor_secret,
    )
    app.include_router(router)
    app.state.faults = FaultState(settings.fault_seed)
    app.add_middleware(FaultInjector, state=app.state.faults)
    return app

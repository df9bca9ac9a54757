"""Wiring of the sandbox rail: settings, pool, migrations, fault injection."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI

from clearway.rail.api import router
from clearway.rail.faults import FaultInjector, FaultState
from clearway.shared.db import create_pool, load_migrations, migrate, service_dsn
from clearway.shared.http import create_app
from clearway.shared.supervisor import Supervisor

SERVICE = "rail"
MIGRATIONS = Path(__file__).parent / "migrations"


@dataclass(frozen=True)
class RailSettings:
    database_url: str  # admin DSN: migrations run with it, the service uses its own role
    role_password: str = "rail-dev"  # noqa: S105 (dev default; set CLEARWAY_RAIL_DB_PASSWORD)
    port: int = 8005
    fault_seed: int | None = None

    @classmethod
    def from_env(cls) -> RailSettings:
        e = os.environ
        return cls(
            database_url=e.get(
                "CLEARWAY_DATABASE_URL", "postgresql://postgres@127.0.0.1:55432/clearway"
            ),
            role_password=e.get("CLEARWAY_RAIL_DB_PASSWORD", "rail-dev"),
            port=int(e.get("CLEARWAY_PORT", "8005")),
        )


def build_app(settings: RailSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await migrate(
            settings.database_url,
            schema=SERVICE,
            service=SERVICE,
            migrations=load_migrations(MIGRATIONS),
            role_password=settings.role_password,
            with_kit=False,
        )
        dsn = service_dsn(settings.database_url, SERVICE, settings.role_password)
        app.state.pool = await create_pool(dsn, schema=SERVICE, max_size=10)
        try:
            # The rail has no background work yet; tasks are declared here when it does.
            async with Supervisor("sandbox-rail", app):
                yield
        finally:
            await app.state.pool.close()

    app = create_app("sandbox-rail", title="Clearway sandbox rail", lifespan=lifespan)
    app.include_router(router)
    app.state.faults = FaultState(settings.fault_seed)
    app.add_middleware(FaultInjector, state=app.state.faults)
    return app

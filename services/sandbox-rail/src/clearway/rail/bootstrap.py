"""Wiring of the sandbox rail: settings, pool, migrations, token verification, faults."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

from fastapi import FastAPI

from clearway.rail import store
from clearway.rail.api import router
from clearway.rail.faults import FaultInjector, FaultState
from clearway.rail.settings import RailSettings
from clearway.shared.auth import verify_tokens
from clearway.shared.crypto.rotation import keep_kek_current
from clearway.shared.crypto.service_login import open_service_login
from clearway.shared.crypto.settings import open_envelope
from clearway.shared.db import load_migrations, migrate
from clearway.shared.event_writer import EventWriter, events_topic
from clearway.shared.http import create_app
from clearway.shared.kafka_start import KafkaStart
from clearway.shared.relay import OutboxRelay
from clearway.shared.supervisor import Supervisor

SERVICE = "rail"
#: The audience of the service tokens the rail accepts (scopes ``rail:*``).
AUDIENCE = "clearway-rail"
MIGRATIONS = Path(__file__).parent / "migrations"


async def migrate_database(settings: RailSettings) -> None:
    """The rail's migrations as the admin (at start, or ``clearway-migrate``): with the
    kit's tables, the outbox of its key and login rotations and their records."""
    await migrate(
        settings.platform.database_url,
        schema=SERVICE,
        service=SERVICE,
        migrations=load_migrations(MIGRATIONS),
        role_password=settings.db_role_password,
    )


def build_app(settings: RailSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        p = settings.platform
        if p.migrate_at_start:
            await migrate_database(settings)
        # the HSM must answer now: its KEK seals the rotated database passwords
        envelope = open_envelope(settings)
        events = EventWriter(SERVICE, topic_prefix=p.topic_prefix)
        login = await open_service_login(settings, envelope, events, schema=SERVICE)
        app.state.pool = pool = await login.pool(schema=SERVICE, max_size=10)

        async def database_ready() -> bool:
            return await store.ping(pool)

        app.state.readiness_checks.append(database_ready)
        try:
            async with Supervisor("sandbox-rail", app) as tasks:
                # Kafka starts under the supervisor, never holding up the API (ADR 0053).
                topics = [p.topic(events_topic(SERVICE))] if settings.run_relay else []
                kafka = KafkaStart(settings, topics)
                kafka.start(tasks)
                # Only callers holding a short-lived, unrevoked service token may use
                # the rail (docs/design.md §7): a disabled service client stops at once.
                await verify_tokens(
                    app,
                    tasks,
                    settings,
                    audience=AUDIENCE,
                    jwks=settings.jwks,
                )
                rotation = timedelta(seconds=settings.kek_rotation_interval_s)
                tasks.every(
                    "kek-rotation",
                    30.0,
                    lambda: keep_kek_current(pool, envelope, events, rotation),
                )
                if login.rotates:
                    tasks.every("db-login-rotation", settings.db_login_refresh_s, login.refresh)
                if settings.run_relay:  # the audited rotations reach the audit log
                    relay = OutboxRelay(login.relay_dsn, SERVICE, settings.kafka)
                    tasks.task("outbox-relay", kafka.then(relay.run), health=relay.healthy)
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

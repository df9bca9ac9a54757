"""The one place the card vault is wired: database, envelope, fingerprint key, relay, routes."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

from fastapi import FastAPI

from clearway.shared.auth import verify_tokens
from clearway.shared.crypto.rotation import keep_kek_current
from clearway.shared.crypto.service_login import open_service_login
from clearway.shared.crypto.settings import open_envelope
from clearway.shared.crypto.tenant_keys import TenantKeys
from clearway.shared.db import load_migrations, migrate
from clearway.shared.event_writer import EventWriter
from clearway.shared.http import create_app
from clearway.shared.kafka_start import KafkaStart
from clearway.shared.relay import OutboxRelay
from clearway.shared.supervisor import Supervisor
from clearway.vault import api, handlers
from clearway.vault.settings import EVENTS_TOPIC, VaultSettings

SERVICE = "vault"
SCHEMA = "vault"
AUDIENCE = "clearway-vault"
MIGRATIONS = Path(__file__).parent / "migrations"


async def migrate_database(settings: VaultSettings) -> None:
    """The service's migrations as the admin (at start, or ``clearway-migrate``)."""
    await migrate(
        settings.platform.database_url,
        schema=SCHEMA,
        service=SERVICE,
        migrations=load_migrations(MIGRATIONS),
        role_password=settings.db_role_password,
    )


def build_app(settings: VaultSettings) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        p = settings.platform
        if p.migrate_at_start:
            await migrate_database(settings)
        # the HSM must answer now: a vault without its keys refuses to start
        envelope = open_envelope(settings)
        events = EventWriter(SERVICE, topic_prefix=p.topic_prefix)
        login = await open_service_login(settings, envelope, events, schema=SCHEMA)
        async with contextlib.AsyncExitStack() as stack:
            pool = await login.pool(schema=SCHEMA, max_size=10)
            stack.push_async_callback(pool.close)
            tenant_keys = TenantKeys(envelope, pool)
            vault = handlers.Vault(pool, envelope, events, tenant_keys=tenant_keys)
            vault.fingerprint_key = await handlers.load_fingerprint_key(pool, envelope)
            app.state.vault = vault
            records = app.state.records = handlers.retention_rules(events)
            async with pool.acquire() as conn:
                await records.seed(conn)

            app.state.readiness_checks.append(lambda: handlers.database_ready(vault))
            # Kafka starts under the supervisor, never holding up the API (ADR 0053).
            topics = [settings.topic(EVENTS_TOPIC)] if settings.run_relay else []
            kafka = KafkaStart(settings, topics)
            tasks = await stack.enter_async_context(Supervisor(SERVICE, app))
            kafka.start(tasks)
            # a disabled client stops here at once; not ready until the feed caught up
            await verify_tokens(
                app,
                tasks,
                settings,
                audience=AUDIENCE,
                jwks=dict(settings.jwks) if settings.jwks is not None else None,
            )
            rotation = timedelta(seconds=settings.kek_rotation_interval_s)
            tasks.every(
                "kek-rotation", 30.0, lambda: keep_kek_current(pool, envelope, events, rotation)
            )
            if login.rotates:
                tasks.every("db-login-rotation", settings.db_login_refresh_s, login.refresh)
            tasks.every(
                "retention-purge", settings.retention_interval_s, lambda: records.purge(pool)
            )
            # drops the keys of tenants shredded by another replica or the CLI
            tasks.every("tenant-keys", settings.tenant_key_refresh_s, tenant_keys.refresh)
            if settings.run_relay:
                relay = OutboxRelay(login.relay_dsn, SCHEMA, settings.kafka)
                tasks.task("outbox-relay", kafka.then(relay.run), health=relay.healthy)
            yield

    app = create_app(
        SERVICE,
        title="Clearway card vault",
        lifespan=lifespan,
        cursor_secret=settings.cursor_secret,
    )
    # the tenants this deployment serves: another region's get a 421 (docs/design.md §9)
    app.state.residency = settings.platform.residency()
    app.include_router(api.router)
    return app

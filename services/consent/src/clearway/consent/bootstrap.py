"""The one place the consent service is wired: settings → pool, keys, relay, app."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

from fastapi import FastAPI

from clearway.consent import (
    api,
    clients,
    consumers,
    handlers,
    oauth_api,
    pages,
    sign_in_limits,
)
from clearway.consent.keys import TOKEN_KEY, KeyRing, load_session_key
from clearway.consent.seed import seed
from clearway.consent.service import Service
from clearway.consent.settings import ConsentSettings
from clearway.shared.auth import verify_tokens
from clearway.shared.consumer import IdempotentConsumer
from clearway.shared.crypto import Envelope
from clearway.shared.crypto.rotation import keep_kek_current
from clearway.shared.crypto.service_login import ServiceLogin, open_service_login
from clearway.shared.crypto.settings import open_envelope, open_signing_provider
from clearway.shared.crypto.tenant_keys import TenantShredded
from clearway.shared.db import load_migrations, migrate
from clearway.shared.dlt import DeadLetters
from clearway.shared.event_writer import EventWriter
from clearway.shared.http import create_app
from clearway.shared.kafka import (
    consumers_healthy,
    make_broker,
    run_broker,
    subscribe_idempotent,
)
from clearway.shared.kafka_start import KafkaStart
from clearway.shared.relay import OutboxRelay, idempotent_producer
from clearway.shared.schemas import default_registry
from clearway.shared.supervisor import Supervisor

log = logging.getLogger(__name__)
SCHEMA = "consent"
MIGRATIONS = Path(__file__).parent / "migrations"


def key_ring(settings: ConsentSettings, envelope: Envelope | None = None) -> KeyRing:
    """The token-signing keys in the configured key store (the HSM) and the envelope of
    the service's sealed data (default: the configured key provider). An unreachable HSM
    raises KeyUnavailable, so the service refuses to start."""
    signing = settings.signing_store()  # the issuer's token, shared by every region
    if settings.key_provider == "hsm":
        # SoftHSM2 lists its tokens when the module loads: both exist before either opens
        settings.token_pin(), signing.token_pin()
    return KeyRing(
        open_signing_provider(signing, TOKEN_KEY, settings.signing_algorithm(TOKEN_KEY)),
        envelope or open_envelope(settings),
        max_token_ttl=timedelta(seconds=settings.token_ttl_s),
        activation_delay=timedelta(seconds=settings.key_activation_delay_s),
        rotation_interval=timedelta(seconds=settings.key_rotation_interval_s),
    )


async def migrate_database(settings: ConsentSettings) -> None:
    """The service's migrations as the admin (at start, or ``clearway-migrate``): the
    region's database and, when the global tables live elsewhere, the global one, where
    the deployment's role is ``clearway_consent_<region>`` (ADR 0039)."""
    migrations = load_migrations(MIGRATIONS)
    await migrate(
        settings.platform.database_url,
        schema=SCHEMA,
        service=SCHEMA,
        migrations=migrations,
        role_password=settings.db_role_password,
    )
    if settings.global_elsewhere:
        await migrate(
            settings.global_database,
            schema=SCHEMA,
            service=_global_role(settings),
            migrations=migrations,
            role_password=settings.db_role_password,
        )


def _global_role(settings: ConsentSettings) -> str:
    return f"{SCHEMA}_{settings.platform.region}"


async def prepare(
    settings: ConsentSettings, envelope: Envelope
) -> tuple[ServiceLogin, ServiceLogin | None]:
    """Migrate the schema (unless ``clearway-migrate`` does) and return the service
    role's logins (rotated or static): the region's database and, when the global
    tables live elsewhere, the global database.

    There the deployment logs in as ``clearway_consent_<region>`` (ADR 0039): each
    region's rotated passwords are sealed with its own KEK, which no other region opens.
    """
    if settings.platform.migrate_at_start:
        await migrate_database(settings)
    events = EventWriter(SCHEMA, topic_prefix=settings.platform.topic_prefix)
    login = await open_service_login(settings, envelope, events, schema=SCHEMA)
    if not settings.global_elsewhere:
        return login, None
    global_login = await open_service_login(
        settings,
        envelope,
        events,
        schema=SCHEMA,
        role=_global_role(settings),
        database_url=settings.global_database,
    )
    return login, global_login


async def seed_standalone(settings: ConsentSettings, *, rotate: bool = False) -> Path:
    """Seed the demo tenants without serving (``python -m clearway.consent seed``)."""
    keys = key_ring(settings)
    login, global_login = await prepare(settings, keys.envelope)
    pool = await login.pool(schema=SCHEMA, max_size=2)
    global_pool = await (global_login or login).pool(schema=SCHEMA, max_size=2)
    try:
        svc = Service(settings, pool, global_pool, keys)
        await handlers.open_personal_data(svc)
        return await seed(svc, settings.platform.local_dir, rotate=rotate)
    finally:
        await global_pool.close()
        await pool.close()


def build_app(settings: ConsentSettings) -> FastAPI:
    """The consent service's FastAPI app; connects only when its lifespan starts."""
    keys = key_ring(settings)

    async def jwks() -> dict:
        return keys.jwks()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        login, global_login = await prepare(settings, keys.envelope)
        transfers = settings.platform.topic(consumers.TRANSFER_EVENTS)
        # closed also when the start fails half-way: it is retried (docs/design.md §12)
        async with contextlib.AsyncExitStack() as stack:
            pool = await login.pool(schema=SCHEMA, max_size=10)
            stack.push_async_callback(pool.close)
            # A pool of its own also when the global tables are in this database: code
            # redemption holds a regional connection while it records the token globally.
            global_pool = await (global_login or login).pool(schema=SCHEMA, max_size=5)
            stack.push_async_callback(global_pool.close)
            svc = Service(settings, pool, global_pool, keys)
            async with pool.acquire() as conn:
                svc.session_key = await load_session_key(conn, keys.envelope)
            if sealed := await handlers.open_personal_data(svc):
                log.info("sealed the personal data of %d rows written in clear", sealed)
            app.state.consent = svc
            await clients.keep_keys_current(svc)
            if settings.seed_demo:
                await seed(svc, settings.platform.local_dir)
            # Kafka starts under the supervisor, never holding up the API (ADR 0053).
            producer = idempotent_producer(settings.kafka)
            kafka = KafkaStart(settings, [settings.topic, transfers], producer=producer)
            stack.push_async_callback(kafka.close)  # the DLT writer outlives the tasks
            async with Supervisor("consent", app) as tasks:
                kafka.start(tasks)
                bootstrap = settings.kafka
                # transfer.created under a single-use consent marks it Consumed
                consumed = IdempotentConsumer(
                    consumers.GROUP,
                    pool,
                    DeadLetters(producer, consumers.GROUP),
                    handler=lambda conn, ev: consumers.handle_transfer_created(svc, conn, ev),
                    validate=default_registry().validate,
                    accept=consumers.made_under_consent,
                )
                broker = make_broker(bootstrap)
                group = consumers.group_id(settings.platform.region)
                subscribe_idempotent(broker, consumed, transfers, group_id=group)
                tasks.task(
                    "consumers",
                    kafka.then(lambda: run_broker(broker, kafka=bootstrap)),
                    health=lambda: consumers_healthy([consumed]),
                )
                relay = OutboxRelay(login.relay_dsn, SCHEMA, bootstrap, poll_interval=0.5)
                tasks.task("outbox-relay", kafka.then(relay.run), health=relay.healthy)
                if global_login is not None:
                    # the events written with the global tables (tokens revoked, clients,
                    # signing keys); every region's deployment runs one, an advisory
                    # lock elects the one that publishes
                    issuer = OutboxRelay(
                        global_login.relay_dsn, SCHEMA, bootstrap, poll_interval=0.5
                    )
                    tasks.task(
                        "global-outbox-relay", kafka.then(issuer.run), health=issuer.healthy
                    )
                    if global_login.rotates:
                        tasks.every(
                            "global-db-login-rotation",
                            settings.db_login_refresh_s,
                            global_login.refresh,
                        )
                # its own keys, read in process; revocations from its own topic
                await verify_tokens(app, tasks, settings, audience="clearway-consent", jwks=jwks)
                tasks.every("key-rotation", 1.0, lambda: clients.keep_keys_current(svc))
                # drops the keys of tenants shredded by another replica or the CLI
                tasks.every(
                    "tenant-keys", settings.tenant_key_refresh_s, svc.pii.tenant_keys.refresh
                )
                tasks.every(
                    "kek-rotation",
                    30.0,
                    lambda: keep_kek_current(
                        pool,
                        keys.envelope,
                        svc.events,
                        timedelta(seconds=settings.kek_rotation_interval_s),
                    ),
                )
                if login.rotates:
                    tasks.every("db-login-rotation", settings.db_login_refresh_s, login.refresh)
                tasks.every(
                    "expiry-sweep", settings.expiry_sweep_s, lambda: handlers.expire_due(svc)
                )
                tasks.every(
                    "sign-in-limits-purge",
                    settings.sign_in_window_s,
                    lambda: sign_in_limits.purge_sign_in_limits(svc),
                )
                records = app.state.records = handlers.retention_rules(svc.events)
                async with pool.acquire() as conn:
                    await records.seed(conn)
                tasks.every(
                    "retention-purge", settings.retention_interval_s, lambda: records.purge(pool)
                )
                yield

    app = create_app(
        "consent",
        title="Clearway consent (OAuth 2.0 authorization server)",
        lifespan=lifespan,
        cursor_secret=settings.cursor_secret,
    )
    app.include_router(oauth_api.router)
    app.include_router(pages.router)
    app.include_router(api.router)
    app.add_exception_handler(TenantShredded, api.offboarded)
    return app

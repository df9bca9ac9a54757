"""The one place the audit service is wired: settings, pools, broker, keys, tasks."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import asyncpg
from fastapi import FastAPI

from clearway.audit import api, consumers, handlers, store, store_roles
from clearway.audit.jobs import VerificationRunner
from clearway.audit.settings import AuditSettings
from clearway.audit.signing import Keyring
from clearway.shared.auth import verify_tokens
from clearway.shared.crypto import Envelope
from clearway.shared.crypto.rotation import keep_kek_current
from clearway.shared.crypto.service_login import ServiceLogin, open_service_login
from clearway.shared.crypto.settings import open_envelope
from clearway.shared.crypto.signing_rotation import rotate_signing_key_if_due
from clearway.shared.db import APPEND_ONLY, load_migrations, migrate, service_dsn
from clearway.shared.dlt import DeadLetters
from clearway.shared.event_writer import EventWriter
from clearway.shared.http import create_app
from clearway.shared.kafka import consumers_healthy, make_broker, run_broker
from clearway.shared.kafka_start import KafkaStart
from clearway.shared.relay import OutboxRelay, idempotent_producer
from clearway.shared.schemas import default_registry
from clearway.shared.supervisor import Supervisor

log = logging.getLogger(__name__)
SERVICE = "audit"
AUDIENCE = "clearway-audit"
MIGRATIONS = Path(__file__).parent / "migrations"
AUDIT_TOPIC = "clearway.audit.events.v1"


async def prepare_database(settings: AuditSettings) -> None:
    """Migrate as admin, set the partition unit, create this and the next partition (at
    start, or ``clearway-migrate``)."""
    await migrate(
        settings.platform.database_url,
        schema=store.SCHEMA,
        service=SERVICE,
        migrations=load_migrations(MIGRATIONS),
        role_password=settings.db_role_password,
        privileges=APPEND_ONLY,
    )
    conn = await asyncpg.connect(
        settings.platform.database_url, server_settings={"search_path": "audit"}
    )
    try:
        signer = None if settings.rotates_db_logins else settings.signer_db_password
        await store_roles.configure_roles(
            conn, store.SCHEMA, None if signer is None else signer.get_secret_value()
        )
        await conn.execute("UPDATE partition_config SET unit = $1", settings.partition_unit)
        await precreate_partitions(conn, settings)
    finally:
        await conn.close()


async def precreate_partitions(conn: asyncpg.Connection, settings: AuditSettings) -> None:
    now = settings.clock()
    _, upper = await store.ensure_partition(conn, now)
    await store.ensure_partition(conn, upper + timedelta(seconds=1))


async def open_logins(
    settings: AuditSettings, envelope: Envelope, events: EventWriter
) -> tuple[ServiceLogin, ServiceLogin]:
    """The logins of the ingest role and of the signer role (ADR 0014), after
    :func:`prepare_database`: both rotated, sealed with the audit KEK, or both static
    (development) (docs/design.md §9, ADR 0025)."""
    service = await open_service_login(settings, envelope, events, schema=store.SCHEMA)
    signer = await open_service_login(
        settings,
        envelope,
        events,
        schema=store.SCHEMA,
        role=store_roles.SIGNER_ROLE,
        static_password=settings.signer_db_password.get_secret_value(),
    )
    return service, signer


def _static(settings: AuditSettings, role: str, password: str) -> ServiceLogin:
    return ServiceLogin(service_dsn(settings.platform.database_url, role, password))


async def connect_service_pool(
    settings: AuditSettings, login: ServiceLogin | None = None
) -> asyncpg.Pool:
    """The ingest role's pool (``login`` default: the static password, development)."""
    login = login or _static(settings, SERVICE, settings.db_password.get_secret_value())
    return await login.pool(schema=store.SCHEMA, max_size=8)


async def connect_signer_pool(
    settings: AuditSettings, login: ServiceLogin | None = None
) -> asyncpg.Pool:
    """The checkpoint writer's own pool, as ``clearway_audit_signer`` (ADR 0014)."""
    password = settings.signer_db_password.get_secret_value()
    login = login or _static(settings, store_roles.SIGNER_ROLE, password)
    return await login.pool(schema=store.SCHEMA, max_size=2)


def verification_runner(
    settings: AuditSettings,
    pool: asyncpg.Pool,
    keyring: Keyring,
    login: ServiceLogin | None = None,
) -> VerificationRunner:
    """The verification jobs; their worker processes connect with the ingest role's
    current login (read at each job: it changes on rotation)."""
    return VerificationRunner(
        pool,
        settings.service_dsn if login is None else login.relay_dsn,
        keyring,
        workers=settings.verification_workers,
        concurrency=settings.verification_concurrency,
        min_interval_s=settings.verification_min_interval_s,
    )


def checkpoint_outbox(settings: AuditSettings) -> handlers.CheckpointOutbox:
    return handlers.CheckpointOutbox(
        EventWriter(SERVICE, topic_prefix=settings.platform.topic_prefix, topic=AUDIT_TOPIC)
    )


async def _checkpoint(app: FastAPI, settings: AuditSettings) -> None:
    """Sign a checkpoint over the records so far and keep the next partitions ready."""
    await handlers.take_checkpoint(
        app.state.signer_pool, app.state.keyring, settings.clock, app.state.announce
    )
    async with app.state.pool.acquire() as conn, conn.transaction():
        await precreate_partitions(conn, settings)


async def _keep_checkpoint_key_current(app: FastAPI, settings: AuditSettings) -> None:
    """Scheduled rotation of the checkpoint signing key (docs/design.md §9), and picking
    up a version another replica or ``clearway-keys`` made."""
    keyring: Keyring = app.state.keyring
    interval = timedelta(seconds=settings.checkpoint_key_rotation_interval_s)
    events = EventWriter(SERVICE, topic_prefix=settings.platform.topic_prefix, topic=AUDIT_TOPIC)
    async with app.state.pool.acquire() as conn:
        await rotate_signing_key_if_due(conn, keyring.provider, events, interval)
    keyring.refresh()


def build_app(settings: AuditSettings) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.platform.migrate_at_start:
            await prepare_database(settings)
        app.state.settings = settings
        app.state.keyring = settings.load_keyring()
        # the HSM must answer now: its KEK seals both roles' rotated passwords
        envelope = open_envelope(settings)
        events = EventWriter(SERVICE, topic_prefix=settings.platform.topic_prefix)
        login, signer = await open_logins(settings, envelope, events)
        app.state.pool = pool = await connect_service_pool(settings, login)
        app.state.signer_pool = signer_pool = await connect_signer_pool(settings, signer)
        app.state.verifications = runner = verification_runner(
            settings, pool, app.state.keyring, login
        )

        async def database() -> bool:
            return bool(await pool.fetchval("SELECT 1"))

        app.state.readiness_checks.append(database)
        app.state.announce = None
        kafka = settings.kafka
        try:
            async with contextlib.AsyncExitStack() as stack:
                # Kafka starts under the supervisor, never holding up the API (ADR 0053).
                producer = idempotent_producer(kafka) if settings.consume else None
                if settings.consume:
                    app.state.announce = checkpoint_outbox(settings)
                kafka_start = KafkaStart(settings, [], producer=producer)
                stack.push_async_callback(kafka_start.close)  # the DLT writer outlives tasks
                tasks = await stack.enter_async_context(Supervisor(SERVICE, app))
                kafka_start.start(tasks)
                await verify_tokens(app, tasks, settings, audience=AUDIENCE, jwks=settings.jwks)
                if settings.consume:
                    relay = OutboxRelay(login.relay_dsn, store.SCHEMA, kafka)
                    tasks.task("outbox-relay", kafka_start.then(relay.run), health=relay.healthy)
                    broker = make_broker(kafka, metadata_max_age_ms=settings.metadata_max_age_ms)
                    app.state.consumer = consumer = consumers.build_consumer(
                        pool,
                        DeadLetters(producer, consumers.CONSUMER),
                        default_registry(),
                        settings.clock,
                    )
                    consumers.subscribe(broker, consumer, settings.platform.topic_prefix)
                    tasks.task(
                        "consumers",
                        kafka_start.then(lambda: run_broker(broker, kafka=kafka)),
                        health=lambda: consumers_healthy([consumer]),
                    )
                # a failed checkpoint is retried (and counted) by the supervisor; a
                # corrupted log is logged loudly by the checkpoint itself
                tasks.every(
                    "checkpoint", settings.checkpoint_interval_s, lambda: _checkpoint(app, settings)
                )
                tasks.every(
                    "checkpoint-key-rotation",
                    60.0,
                    lambda: _keep_checkpoint_key_current(app, settings),
                )
                rotation = timedelta(seconds=settings.kek_rotation_interval_s)
                tasks.every(
                    "kek-rotation", 30.0, lambda: keep_kek_current(pool, envelope, events, rotation)
                )
                if login.rotates:
                    for role, each in (("", login), ("signer-", signer)):
                        tasks.every(
                            f"{role}db-login-rotation", settings.db_login_refresh_s, each.refresh
                        )
                for i in range(settings.verification_concurrency):
                    tasks.task(f"verification-{i}", runner.work, critical=False)
                yield
        finally:
            runner.close()
            await signer_pool.close()
            await pool.close()

    app = create_app(
        SERVICE,
        title="Clearway audit",
        lifespan=lifespan,
        cursor_secret=settings.cursor_secret,
    )
    app.include_router(api.router)
    return app

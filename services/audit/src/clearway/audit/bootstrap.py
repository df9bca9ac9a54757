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
from clearway.shared.crypto.signing_rotation import rotate_signing_key_if_due
from clearway.shared.db import APPEND_ONLY, create_pool, load_migrations, migrate
from clearway.shared.dlt import DeadLetters
from clearway.shared.event_writer import EventWriter
from clearway.shared.http import create_app
from clearway.shared.kafka import consumers_healthy, make_broker, run_broker
from clearway.shared.relay import OutboxRelay, idempotent_producer
from clearway.shared.schemas import default_registry
from clearway.shared.supervisor import Supervisor

log = logging.getLogger(__name__)
SERVICE = "audit"
AUDIENCE = "clearway-audit"
MIGRATIONS = Path(__file__).parent / "migrations"
AUDIT_TOPIC = "clearway.audit.events.v1"


async def prepare_database(settings: AuditSettings) -> None:
    """Migrate as admin, set the partition unit, create this and the next partition."""
    await migrate(
        settings.platform.database_url,
        schema=store.SCHEMA,
        service=SERVICE,
        migrations=load_migrations(MIGRATIONS),
        role_password=settings.db_password.get_secret_value(),
        privileges=APPEND_ONLY,
    )
    conn = await asyncpg.connect(
        settings.platform.database_url, server_settings={"search_path": "audit"}
    )
    try:
        await store_roles.configure_roles(
            conn, store.SCHEMA, settings.signer_db_password.get_secret_value()
        )
        await conn.execute("UPDATE partition_config SET unit = $1", settings.partition_unit)
        await precreate_partitions(conn, settings)
    finally:
        await conn.close()


async def precreate_partitions(conn: asyncpg.Connection, settings: AuditSettings) -> None:
    now = settings.clock()
    _, upper = await store.ensure_partition(conn, now)
    await store.ensure_partition(conn, upper + timedelta(seconds=1))


async def connect_service_pool(settings: AuditSettings) -> asyncpg.Pool:
    dsn = settings.service_dsn
    return await create_pool(dsn, schema=store.SCHEMA, max_size=8)


async def connect_signer_pool(settings: AuditSettings) -> asyncpg.Pool:
    """The checkpoint writer's own pool, as ``clearway_audit_signer`` (ADR 0014)."""
    return await create_pool(settings.signer_dsn, schema=store.SCHEMA, max_size=2)


def verification_runner(
    settings: AuditSettings, pool: asyncpg.Pool, keyring: Keyring
) -> VerificationRunner:
    return VerificationRunner(
        pool,
        settings.service_dsn,
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
        await prepare_database(settings)
        app.state.settings = settings
        app.state.keyring = settings.load_keyring()
        app.state.pool = pool = await connect_service_pool(settings)
        app.state.signer_pool = signer_pool = await connect_signer_pool(settings)
        app.state.verifications = runner = verification_runner(settings, pool, app.state.keyring)

        async def database() -> bool:
            return bool(await pool.fetchval("SELECT 1"))

        app.state.readiness_checks.append(database)
        app.state.announce = None
        kafka = settings.kafka
        try:
            async with contextlib.AsyncExitStack() as stack:
                if settings.consume:
                    app.state.announce = checkpoint_outbox(settings)
                    producer = idempotent_producer(kafka)
                    await producer.start()
                    stack.push_async_callback(producer.stop)  # the DLT writer outlives tasks
                tasks = await stack.enter_async_context(Supervisor(SERVICE, app))
                await verify_tokens(app, tasks, settings, audience=AUDIENCE, jwks=settings.jwks)
                if settings.consume:
                    relay = OutboxRelay(settings.service_dsn, store.SCHEMA, kafka)
                    tasks.task("outbox-relay", relay.run, health=relay.healthy)
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
                        lambda: run_broker(broker),
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

"""The one place the audit service is wired: settings, pools, broker, keys, tasks."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
from fastapi import FastAPI

from clearway.audit import api, consumers, handlers, store
from clearway.audit.signing import Keyring
from clearway.shared.auth import HttpJwksSource, TokenVerifier
from clearway.shared.db import APPEND_ONLY, create_pool, load_migrations, migrate, service_dsn
from clearway.shared.dlt import DeadLetters
from clearway.shared.http import create_app
from clearway.shared.kafka import consumers_healthy, make_broker, run_broker
from clearway.shared.outbox import Outbox
from clearway.shared.relay import OutboxRelay, idempotent_producer
from clearway.shared.schemas import default_registry
from clearway.shared.settings import PlatformSettings
from clearway.shared.supervisor import Supervisor

log = logging.getLogger(__name__)
SERVICE = "audit"
AUDIENCE = "clearway-audit"
MIGRATIONS = Path(__file__).parent / "migrations"
AUDIT_TOPIC = "clearway.audit.events.v1"


@dataclass(frozen=True)
class AuditSettings:
    """``database_url`` is an admin DSN: migrations run with it, the service then
    connects as its own append-only role."""

    database_url: str = PlatformSettings.database_url
    kafka_bootstrap: str = PlatformSettings.kafka_bootstrap
    topic_prefix: str = ""
    issuer: str = "http://127.0.0.1:8003"
    jwks: dict[str, Any] | None = (
        None  # a fixed JWK Set (tests); else <issuer>/.well-known/jwks.json
    )
    port: int = 8004
    role_password: str = "clearway-audit-dev"  # noqa: S105 - local dev default
    keyring: Keyring | None = None
    keyring_path: Path = Path(".local/audit/checkpoint-keys.json")
    checkpoint_interval_s: float = 60.0
    partition_unit: str = "month"
    consume: bool = True
    metadata_max_age_ms: int = 30_000
    clock: Any = field(default=handlers.utc_now)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> AuditSettings:
        e = os.environ if env is None else env
        p = PlatformSettings.from_env(dict(e))
        local = Path(e.get("CLEARWAY_LOCAL_DIR", ".local"))
        return cls(
            database_url=p.database_url,
            kafka_bootstrap=p.kafka_bootstrap,
            topic_prefix=p.topic_prefix,
            issuer=e.get("CLEARWAY_OAUTH_ISSUER", cls.issuer),
            port=int(e.get("CLEARWAY_PORT", "8004")),
            role_password=e.get("CLEARWAY_AUDIT_DB_PASSWORD", cls.role_password),
            keyring_path=Path(
                e.get("CLEARWAY_AUDIT_KEYRING", str(local / "audit" / "checkpoint-keys.json"))
            ),
            checkpoint_interval_s=float(e.get("CLEARWAY_AUDIT_CHECKPOINT_INTERVAL", "60")),
            partition_unit=e.get("CLEARWAY_AUDIT_PARTITION_UNIT", "month"),
        )

    def load_keyring(self) -> Keyring:
        return self.keyring or Keyring.load_or_create(self.keyring_path)


async def prepare_database(settings: AuditSettings) -> None:
    """Migrate as admin, set the partition unit, create this and the next partition."""
    await migrate(
        settings.database_url,
        schema=store.SCHEMA,
        service=SERVICE,
        migrations=load_migrations(MIGRATIONS),
        role_password=settings.role_password,
        privileges=APPEND_ONLY,
    )
    conn = await asyncpg.connect(settings.database_url, server_settings={"search_path": "audit"})
    try:
        await conn.execute("UPDATE partition_config SET unit = $1", settings.partition_unit)
        await precreate_partitions(conn, settings)
    finally:
        await conn.close()


async def precreate_partitions(conn: asyncpg.Connection, settings: AuditSettings) -> None:
    now = settings.clock()
    _, upper = await store.ensure_partition(conn, now)
    await store.ensure_partition(conn, upper + timedelta(seconds=1))


async def connect_service_pool(settings: AuditSettings) -> asyncpg.Pool:
    dsn = service_dsn(settings.database_url, SERVICE, settings.role_password)
    return await create_pool(dsn, schema=store.SCHEMA, max_size=8)


def checkpoint_outbox(settings: AuditSettings) -> handlers.CheckpointOutbox:
    registry = default_registry()
    return handlers.CheckpointOutbox(
        Outbox(validate=registry.validate),
        f"{settings.topic_prefix}{AUDIT_TOPIC}",
        registry.get(handlers.CHECKPOINT_EVENT, 1).dataschema,
    )


async def _checkpoint(app: FastAPI, settings: AuditSettings) -> None:
    """Sign a checkpoint over the records so far and keep the next partitions ready."""
    await handlers.take_checkpoint(
        app.state.pool, app.state.keyring, settings.clock, app.state.announce
    )
    async with app.state.pool.acquire() as conn, conn.transaction():
        await precreate_partitions(conn, settings)


def build_app(settings: AuditSettings) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await prepare_database(settings)
        app.state.settings = settings
        app.state.keyring = settings.load_keyring()
        app.state.pool = pool = await connect_service_pool(settings)
        app.state.token_verifier = TokenVerifier(
            issuer=settings.issuer,
            audience=AUDIENCE,
            jwks_source=settings.jwks or HttpJwksSource.for_issuer(settings.issuer),
        )

        async def database() -> bool:
            return bool(await pool.fetchval("SELECT 1"))

        app.state.readiness_checks.append(database)
        app.state.announce = None
        try:
            async with contextlib.AsyncExitStack() as stack:
                if settings.consume:
                    app.state.announce = checkpoint_outbox(settings)
                    producer = idempotent_producer(settings.kafka_bootstrap)
                    await producer.start()
                    stack.push_async_callback(producer.stop)  # the DLT writer outlives tasks
                tasks = await stack.enter_async_context(Supervisor(SERVICE, app))
                if settings.consume:
                    relay = OutboxRelay(
                        service_dsn(settings.database_url, SERVICE, settings.role_password),
                        store.SCHEMA,
                        settings.kafka_bootstrap,
                    )
                    tasks.task("outbox-relay", relay.run, health=relay.healthy)
                    broker = make_broker(
                        settings.kafka_bootstrap, metadata_max_age_ms=settings.metadata_max_age_ms
                    )
                    app.state.consumer = consumer = consumers.build_consumer(
                        pool,
                        DeadLetters(producer, consumers.CONSUMER),
                        default_registry(),
                        settings.clock,
                    )
                    consumers.subscribe(broker, consumer, settings.topic_prefix)
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
                yield
        finally:
            await pool.close()

    app = create_app(SERVICE, title="Clearway audit", lifespan=lifespan)
    app.include_router(api.router)
    return app

"""The one place the webhook service is wired: pools, broker, relay, dispatcher, routes."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

from fastapi import FastAPI

from clearway.shared.auth import HttpJwksSource, TokenVerifier
from clearway.shared.crypto.rotation import keep_kek_current
from clearway.shared.crypto.settings import open_envelope
from clearway.shared.db import create_pool, load_migrations, migrate
from clearway.shared.dlt import DeadLetters
from clearway.shared.event_writer import EventWriter
from clearway.shared.http import create_app
from clearway.shared.kafka import consumers_healthy, ensure_topics, make_broker, run_broker
from clearway.shared.relay import OutboxRelay, idempotent_producer
from clearway.shared.supervisor import Supervisor
from clearway.webhooks import api, api_messages, consumers
from clearway.webhooks.crypto import SecretBox
from clearway.webhooks.dispatcher import Dispatcher
from clearway.webhooks.handlers import Context
from clearway.webhooks.replay import ReplayRunner
from clearway.webhooks.settings import EVENTS_TOPIC, WebhooksSettings
from clearway.webhooks.ssrf import SsrfGuard, guarded_session

SERVICE = "webhooks"
SCHEMA = "webhooks"
MIGRATIONS = Path(__file__).parent / "migrations"


async def prepare_database(settings: WebhooksSettings) -> str:
    """Migrate as admin; return the DSN of the service's own role."""
    admin = settings.platform.database_url
    await migrate(
        admin,
        schema=SCHEMA,
        service=SERVICE,
        migrations=load_migrations(MIGRATIONS),
        role_password=settings.db_password.get_secret_value(),
    )
    return settings.service_dsn


def make_context(settings: WebhooksSettings) -> Context:
    events = EventWriter(SERVICE, topic_prefix=settings.platform.topic_prefix)
    # the HSM must answer now: a service without its keys refuses to start
    return Context(settings, SecretBox(open_envelope(settings)), events)


def build_app(settings: WebhooksSettings) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        dsn = await prepare_database(settings)
        ctx = make_context(settings)
        pool = await create_pool(dsn, schema=SCHEMA, min_size=2, max_size=4 + settings.workers * 2)
        guard = SsrfGuard(settings.allow_networks)
        client = guarded_session(
            guard,
            max_connections=settings.max_connections,
            per_endpoint=settings.endpoint_concurrency,
        )
        app.state.ctx, app.state.pool, app.state.guard = ctx, pool, guard

        async def database_ready() -> bool:
            return bool(await pool.fetchval("SELECT 1"))

        app.state.readiness_checks.append(database_ready)
        app.state.token_verifier = TokenVerifier(
            issuer=settings.issuer,
            audience=f"clearway-{SERVICE}",
            jwks_source=settings.jwks
            if settings.jwks is not None
            else HttpJwksSource.for_issuer(settings.issuer),
        )
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(pool.close)
            stack.push_async_callback(client.close)
            bootstrap = settings.kafka
            if settings.run_consumer:
                producer = idempotent_producer(bootstrap)
                await producer.start()
                stack.push_async_callback(producer.stop)
            replays = ReplayRunner(pool)
            app.state.replays = replays
            await replays.resume()
            stack.push_async_callback(replays.stop)
            if settings.run_dispatcher:
                dispatcher = Dispatcher(ctx, pool, client, dsn)
                await dispatcher.start()
                stack.push_async_callback(dispatcher.stop)
                app.state.dispatcher = dispatcher

            tasks = await stack.enter_async_context(Supervisor(SERVICE, app))
            rotation = timedelta(seconds=settings.kek_rotation_interval_s)
            tasks.every(
                "kek-rotation",
                30.0,
                lambda: keep_kek_current(pool, ctx.box.envelope, ctx.events, rotation),
            )
            if settings.run_relay:
                await ensure_topics(bootstrap, [settings.topic(EVENTS_TOPIC)])
                relay = OutboxRelay(dsn, SCHEMA, bootstrap)
                tasks.task("outbox-relay", relay.run, health=relay.healthy)
            if settings.run_consumer:
                consumer = consumers.fan_out_consumer(
                    ctx, pool, DeadLetters(producer, consumers.GROUP)
                )
                # New topics are found on metadata refresh: keep that short.
                broker = make_broker(bootstrap, metadata_max_age_ms=5000)
                consumers.subscribe(broker, consumer, settings.platform.topic_prefix)
                tasks.task(
                    "consumers",
                    lambda: run_broker(broker),
                    health=lambda: consumers_healthy([consumer]),
                )
                app.state.consumer = consumer
            if settings.run_dispatcher:
                for i in range(settings.workers):
                    # Delivery is not what readiness is about: the API serves without it.
                    tasks.task(f"dispatcher-worker-{i}", dispatcher.work, critical=False)
            yield

    app = create_app(
        SERVICE,
        title="Clearway webhooks",
        lifespan=lifespan,
        max_body_bytes=api.MAX_BODY_BYTES,
        cursor_secret=settings.cursor_secret,
    )
    app.include_router(api.router)
    app.include_router(api_messages.router)
    return app

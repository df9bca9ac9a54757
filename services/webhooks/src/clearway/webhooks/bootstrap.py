"""The one place the webhook service is wired: pools, broker, relay, dispatcher, routes."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path

from fastapi import FastAPI

from clearway.shared.auth import verify_tokens
from clearway.shared.crypto.db_credentials import (
    RotatingLogin,
    keep_login_current,
    open_rotating_login,
)
from clearway.shared.crypto.rotation import keep_kek_current
from clearway.shared.crypto.service_login import login_source
from clearway.shared.crypto.settings import open_envelope, open_signing_provider
from clearway.shared.db import create_pool, load_migrations, migrate
from clearway.shared.dlt import DeadLetters, dlt_topic
from clearway.shared.dlt_admin import DeadLetterAdmin
from clearway.shared.event_writer import EventWriter, events_topic
from clearway.shared.http import create_app
from clearway.shared.kafka import (
    consumers_healthy,
    make_broker,
    run_broker,
)
from clearway.shared.kafka_acl import EVENT_DOMAINS
from clearway.shared.kafka_start import KafkaStart
from clearway.shared.relay import OutboxRelay, idempotent_producer
from clearway.shared.supervisor import Supervisor
from clearway.webhooks import api, api_dead_letters, api_messages, consumers
from clearway.webhooks.crypto import SecretBox
from clearway.webhooks.dispatcher import Dispatcher
from clearway.webhooks.handlers import Context, retention_rules
from clearway.webhooks.replay import ReplayRunner
from clearway.webhooks.settings import EVENTS_TOPIC, V1A_KEY, WebhooksSettings
from clearway.webhooks.ssrf import SsrfGuard, guarded_session
from clearway.webhooks.v1a import V1aKeys

SERVICE = "webhooks"
SCHEMA = "webhooks"
MIGRATIONS = Path(__file__).parent / "migrations"


async def migrate_database(settings: WebhooksSettings) -> None:
    """The service's migrations as the admin (at start, or ``clearway-migrate``)."""
    await migrate(
        settings.platform.database_url,
        schema=SCHEMA,
        service=SERVICE,
        migrations=load_migrations(MIGRATIONS),
        role_password=None
        if settings.rotates_db_logins
        else settings.db_password.get_secret_value(),
    )


async def prepare_database(settings: WebhooksSettings) -> str:
    """Migrate (unless ``clearway-migrate`` does); return the DSN of the service's own
    role (static password)."""
    if settings.platform.migrate_at_start:
        await migrate_database(settings)
    return settings.service_dsn


async def open_login(settings: WebhooksSettings, ctx: Context) -> RotatingLogin | None:
    """The rotated login of the service's connections, or ``None`` with a static password
    (docs/design.md §9)."""
    if not settings.rotates_db_logins:
        return None
    source, rotates = login_source(settings)
    return await open_rotating_login(
        source,
        ctx.box.envelope,
        ctx.events,
        service=SERVICE,
        schema=SCHEMA,
        interval=timedelta(seconds=settings.db_login_rotation_s),
        lifetime=timedelta(seconds=settings.db_login_lifetime_s),
        rotate=rotates,
    )


def make_context(settings: WebhooksSettings) -> Context:
    events = EventWriter(SERVICE, topic_prefix=settings.platform.topic_prefix)
    # the HSM must answer now: a service without its keys refuses to start
    v1a = open_signing_provider(settings, V1A_KEY, settings.signing_algorithm(V1A_KEY))
    return Context(settings, SecretBox(open_envelope(settings)), events, V1aKeys(v1a))


def build_app(settings: WebhooksSettings) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        dsn = await prepare_database(settings)
        ctx = make_context(settings)
        login = await open_login(settings, ctx)
        pool = await create_pool(
            dsn,
            schema=SCHEMA,
            min_size=2,
            max_size=4 + settings.workers * 2,
            connect=None if login is None else login.connect,
        )
        # with rotated logins, the current one at each (re)connect
        current: str | Callable[[], str] = dsn
        if login is not None:
            login.watch(pool)
            current = login.dsn
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
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(pool.close)
            stack.push_async_callback(client.close)
            bootstrap = settings.kafka
            # Kafka starts under the supervisor, never holding up the API (ADR 0053).
            producer = idempotent_producer(bootstrap) if settings.run_consumer else None
            kafka = KafkaStart(
                settings,
                [settings.topic(EVENTS_TOPIC)] if settings.run_relay else [],
                producer=producer,
            )
            stack.push_async_callback(kafka.close)  # the DLT writer outlives the tasks
            if settings.run_dispatcher:
                dispatcher = Dispatcher(
                    ctx, pool, client, current() if callable(current) else current
                )
                await dispatcher.start()
                stack.push_async_callback(dispatcher.stop)
                app.state.dispatcher = dispatcher

            tasks = await stack.enter_async_context(Supervisor(SERVICE, app))
            kafka.start(tasks)
            replays = ReplayRunner(pool, tasks)
            app.state.replays = replays
            await replays.resume()
            await verify_tokens(
                app, tasks, settings, audience=f"clearway-{SERVICE}", jwks=settings.jwks
            )
            rotation = timedelta(seconds=settings.kek_rotation_interval_s)
            tasks.every(
                "kek-rotation",
                30.0,
                lambda: keep_kek_current(pool, ctx.box.envelope, ctx.events, rotation),
            )

            async def keep_v1a_key_current() -> None:
                async with pool.acquire() as conn:
                    await ctx.v1a.keep_current(
                        conn,
                        ctx.events,
                        interval=timedelta(seconds=settings.v1a_rotation_interval_s),
                        overlap=timedelta(seconds=settings.v1a_overlap_s),
                    )

            tasks.every(
                "v1a-key-rotation", settings.v1a_refresh_s, keep_v1a_key_current, run_at_start=True
            )
            if login is not None:
                tasks.every(
                    "db-login-rotation",
                    settings.db_login_refresh_s,
                    lambda: keep_login_current(
                        login,
                        ctx.box.envelope,
                        ctx.events,
                        schema=SCHEMA,
                        interval=timedelta(seconds=settings.db_login_rotation_s),
                        lifetime=timedelta(seconds=settings.db_login_lifetime_s),
                    ),
                )
            records = app.state.records = retention_rules(ctx.events)
            async with pool.acquire() as conn:
                await records.seed(conn)
            tasks.every(
                "retention-purge", settings.retention_interval_s, lambda: records.purge(pool)
            )
            if settings.run_relay:
                relay = OutboxRelay(current, SCHEMA, bootstrap)
                tasks.task("outbox-relay", kafka.then(relay.run), health=relay.healthy)
            if settings.run_consumer:
                assert producer is not None
                consumer = consumers.fan_out_consumer(
                    ctx, pool, DeadLetters(producer, consumers.GROUP)
                )
                # New topics are found on metadata refresh: keep that short.
                broker = make_broker(bootstrap, metadata_max_age_ms=5000)
                consumers.subscribe(broker, consumer, settings.platform.topic_prefix)
                tasks.task(
                    "consumers",
                    kafka.then(lambda: run_broker(broker, kafka=bootstrap)),
                    health=lambda: consumers_healthy([consumer]),
                )
                app.state.consumer = consumer
                # its dead letters, for operators (docs/design.md §4.4): one topic per domain
                p = settings.platform
                app.state.dead_letters = DeadLetterAdmin(
                    bootstrap,
                    consumer,
                    [
                        dlt_topic(p.topic(events_topic(d)), consumers.GROUP)
                        for d in EVENT_DOMAINS
                        if d != "webhooks"
                    ],
                )
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
    app.include_router(api_dead_letters.router)
    return app

"""The one place where the transfer service is wired: settings, pools, relay, consumers."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
from fastapi import FastAPI

from clearway.shared.auth import verify_tokens
from clearway.shared.consumer import IdempotentConsumer
from clearway.shared.crypto.rotation import keep_kek_current
from clearway.shared.crypto.service_login import ServiceLogin, open_service_login
from clearway.shared.crypto.settings import open_envelope
from clearway.shared.db import init_connection, load_migrations, migrate, transaction_reset
from clearway.shared.deprecations import DeprecationDigests, deprecation_jobs
from clearway.shared.dlt import DeadLetters
from clearway.shared.event_writer import EventWriter
from clearway.shared.http import create_app
from clearway.shared.kafka import (
    consumers_healthy,
    make_broker,
    run_broker,
    subscribe_idempotent,
)
from clearway.shared.kafka_link import INTENTS_TOPIC
from clearway.shared.kafka_start import KafkaStart
from clearway.shared.relay import OutboxRelay, idempotent_producer
from clearway.shared.schemas import default_registry
from clearway.shared.supervisor import Supervisor
from clearway.transfer import handlers, store
from clearway.transfer.api import router
from clearway.transfer.consumers import (
    CONSENT_STATE_TYPES,
    INTENT_TYPE,
    executor_batch_handler,
    handle_consent_event,
    handle_intent,
)
from clearway.transfer.events import CONSENT_TOPIC, EVENTS_TOPIC
from clearway.transfer.executor import Executor
from clearway.transfer.rail_client import RailClient, Rails
from clearway.transfer.seed import seed
from clearway.transfer.settings import TransferSettings
from clearway.transfer.vault_client import VaultClient

log = logging.getLogger(__name__)
SERVICE = "transfer"
AUDIENCE = "clearway-transfer"
MIGRATIONS = Path(__file__).parent / "migrations"


def _maintenance(
    tasks: Supervisor, settings: TransferSettings, core: handlers.Core, executor: Executor | None
) -> None:
    """Cold-start sweep, then periodically: stale keys, expired keys, open transfers."""
    every = settings.maintenance_interval_s
    tasks.every(
        "recover-stale-keys", every, lambda: handlers.recover_stale_keys(core), run_at_start=True
    )
    tasks.every("retention-purge", every, lambda: handlers.purge_records(core), run_at_start=True)
    if executor is not None:
        tasks.every(
            "sweep-open-transfers",
            every,
            lambda: executor.sweep(settings.sweep_grace_s),
            run_at_start=True,
        )


async def migrate_database(settings: TransferSettings) -> None:
    """The service's migrations as the admin (at start, or ``clearway-migrate``)."""
    await migrate(
        settings.platform.database_url,
        schema=SERVICE,
        service=SERVICE,
        migrations=load_migrations(MIGRATIONS),
        role_password=settings.db_role_password,
    )


def build_app(settings: TransferSettings) -> FastAPI:
    p = settings.platform

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if p.migrate_at_start:
            await migrate_database(settings)
        registry = default_registry()
        events = EventWriter(SERVICE, topic_prefix=p.topic_prefix, registry=registry)
        # the HSM must answer now: its KEK seals the rotated database passwords
        envelope = open_envelope(settings)
        login = await open_service_login(settings, envelope, events, schema=SERVICE)
        async with contextlib.AsyncExitStack() as stack:
            # nothing here keeps session state on a pooled connection (the relay has its
            # own): no reset round trip on release
            pool = await login.pool(schema=SERVICE, max_size=30, session_reset=False)
            stack.push_async_callback(pool.close)
            claims = await _claims_pool(login)
            stack.push_async_callback(claims.close)
            vault = VaultClient(
                settings.vault_urls,
                p.residency(),
                verify=settings.service_tokens("cards:verify"),
                detokenize=settings.service_tokens("cards:detokenize"),
            )
            stack.push_async_callback(vault.close)
            core = handlers.Core(
                pool=pool,
                claims=claims,
                events=events,
                reference_secret=settings.reference_key(),
                lock_timeout_s=settings.lock_timeout_s,
                retention=settings.key_retention,
                vault=vault,
            )
            core.records = handlers.retention_rules(core.events, settings.key_retention)
            async with pool.acquire() as conn:
                await core.records.seed(conn)
            app.state.core = core
            app.state.readiness_checks.append(_database_check(pool))
            if settings.seed_demo:
                await seed(core)
            live = RailClient(settings.rail_url, auth=settings.service_tokens("rail:charges"))
            rails = Rails(
                live,
                live  # one rail for both modes, as locally
                if len(settings.modes_on_rail(settings.rail_url)) == 2
                else RailClient(
                    settings.sandbox_rail_url, auth=settings.service_tokens("rail:charges")
                ),
            )
            stack.push_async_callback(rails.close)
            executor = Executor(core, rails)
            app.state.executor = executor

            # Kafka starts under the supervisor: transfers are accepted without it
            # (state + outbox), the relay publishes once it answers (ADR 0053).
            producer = idempotent_producer(settings.kafka)
            kafka = KafkaStart(
                settings,
                [p.topic(EVENTS_TOPIC), p.topic(INTENTS_TOPIC), p.topic(CONSENT_TOPIC)],
                producer=producer,
            )
            stack.push_async_callback(kafka.close)  # the DLT writer outlives the tasks

            broker = make_broker(settings.kafka)
            intents = IdempotentConsumer(
                "transfer-intents",
                pool,
                DeadLetters(producer, "transfer-intents"),
                handler=lambda conn, ev: handle_intent(
                    core,
                    app.state.token_verifier,
                    conn,
                    ev,
                    max_age_s=settings.intent_max_age_s,
                ),
                validate=registry.validate,
                accept=lambda ev: ev.type == INTENT_TYPE,
                refuse_card_numbers=True,  # partners write intents (docs/design.md §9)
            )
            jobs = IdempotentConsumer(
                "transfer-executor",
                pool,
                DeadLetters(producer, "transfer-executor"),
                batch_handler=executor_batch_handler(executor),
                validate=registry.validate,
                accept=lambda ev: ev.type == "transfer.created",
            )
            consents = IdempotentConsumer(
                "transfer-consents",
                pool,
                DeadLetters(producer, "transfer-consents"),
                handler=handle_consent_event,
                validate=registry.validate,
                accept=lambda ev: ev.type in CONSENT_STATE_TYPES,
            )
            subscribe_idempotent(
                broker,
                intents,
                p.topic(INTENTS_TOPIC),
                group_id="transfer-intents",
                max_records=100,
            )
            subscribe_idempotent(
                broker,
                consents,
                p.topic(CONSENT_TOPIC),
                group_id="transfer-consents",
                max_records=500,
            )
            if settings.run_executor:
                subscribe_idempotent(
                    broker,
                    jobs,
                    p.topic(EVENTS_TOPIC),
                    group_id="transfer-executor",
                    max_records=100,
                )
            app.state.consumers = {"intents": intents, "executor": jobs, "consents": consents}

            tasks = await stack.enter_async_context(Supervisor(SERVICE, app))
            kafka.start(tasks)
            await verify_tokens(
                app,
                tasks,
                settings,
                audience=AUDIENCE,
                jwks=settings.jwks,
                follow_revocations=settings.revocation_feed,
                # intents' tokens are judged when they were sent (consumers._sender)
                past_use_s=settings.intent_max_age_s,
            )
            relay = OutboxRelay(login.relay_dsn, SERVICE, settings.kafka)
            tasks.task("outbox-relay", kafka.then(relay.run), health=relay.healthy)
            rotation = timedelta(seconds=settings.kek_rotation_interval_s)
            tasks.every(
                "kek-rotation", 30.0, lambda: keep_kek_current(pool, envelope, events, rotation)
            )
            if login.rotates:
                tasks.every("db-login-rotation", settings.db_login_refresh_s, login.refresh)
            tasks.task(
                "consumers",
                kafka.then(lambda: run_broker(broker, kafka=settings.kafka)),
                health=lambda: consumers_healthy([intents, jobs, consents]),
            )
            _maintenance(tasks, settings, core, executor if settings.run_executor else None)
            # Calls on deprecated versions: weekly client.deprecation_digest (docs/design.md §10).
            app.state.deprecation_digests = digests = DeprecationDigests(
                app.state.deprecation_log, pool, events, app.state.api_versions.sunset, SERVICE
            )
            deprecation_jobs(tasks, digests)
            yield

    app = create_app(
        SERVICE,
        title="Clearway transfers",
        lifespan=lifespan,
        cursor_secret=settings.cursor_secret,
    )
    app.include_router(router)
    return app


async def _claims_pool(login: ServiceLogin) -> asyncpg.Pool:
    """Connections for idempotency-key claims, committing without waiting for the WAL
    flush (see ``store.claim_key`` for why that is safe), as the current login."""
    pool = await asyncpg.create_pool(
        login.dsn(),
        connect=login.connect,
        min_size=1,
        max_size=16,
        reset=transaction_reset,  # the claims keep no session state
        init=init_connection,
        server_settings={
            "search_path": SERVICE,
            "application_name": "clearway-transfer-claims",
            "synchronous_commit": "off",
        },
    )
    assert pool is not None
    return login.watch(pool)


def _database_check(pool: Any):
    async def database() -> bool:
        return await store.ping(pool)

    return database

"""Migrations and topics as their own commands (docs/design.md §12, ADR 0044):
``clearway-migrate`` and ``clearway-topics`` are idempotent, and a service started
after them without the admin's credentials or the right to create topics works."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from clearway.rail.bootstrap import build_app
from clearway.rail.settings import RailSettings
from clearway.shared.events import events_topic
from clearway.shared.kafka_link import TopicLayout
from clearway.shared.provision import (
    create_platform_topics,
    migrate_services,
    migrations,
    platform_topics,
)
from clearway.shared.settings import PlatformSettings
from clearway.shared.testing.helpers import eventually, serve
from clearway.shared.testing.issuer import TestIssuer

pytestmark = pytest.mark.integration

SERVICES = ["audit", "consent", "rail", "transfer", "vault", "webhooks"]


async def _applied(dsn: str) -> dict[str, int]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT table_schema FROM information_schema.tables"
            " WHERE table_name = 'schema_migrations'"
        )
        return {
            r["table_schema"]: await conn.fetchval(
                f'SELECT count(*) FROM "{r["table_schema"]}".schema_migrations'
            )
            for r in rows
        }
    finally:
        await conn.close()


def _without_credentials(dsn: str) -> str:
    parts = urlsplit(dsn)
    netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


async def test_clearway_migrate_migrates_every_service_and_again_changes_nothing(
    admin_dsn: str, tmp_path: Path
):
    assert list(migrations()) == SERVICES
    env = {"CLEARWAY_DATABASE_URL": admin_dsn, "CLEARWAY_LOCAL_DIR": str(tmp_path)}
    assert await migrate_services(env=env) == SERVICES
    first = await _applied(admin_dsn)
    assert set(first) == {"audit", "consent", "rail", "transfer", "vault", "webhooks"}
    assert await migrate_services(env=env) == SERVICES
    assert await _applied(admin_dsn) == first


async def test_a_service_runs_without_admin_credentials_after_the_commands(
    platform: PlatformSettings, tmp_path: Path
):
    layout = TopicLayout(partitions=2, replication_factor=1, min_insync_replicas=1)
    prefix = platform.topic_prefix
    created = await create_platform_topics(platform.kafka, prefix, layout)
    assert sorted(created) == platform_topics(prefix)
    assert f"{prefix}clearway.transfer.intents.v1.transfer-intents.dlt" in created
    assert await create_platform_topics(platform.kafka, prefix, layout) == []  # idempotent
    admin = AIOKafkaAdminClient(**platform.kafka.client_options())
    await admin.start()
    try:
        topic = f"{prefix}{events_topic('consent')}"
        [described] = await admin.describe_topics([topic])
        assert len(described["partitions"]) == 2
        [config] = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, {"min.insync.replicas": None})]
        )
        entries = {e[0]: e[1] for e in config.resources[0][4]}
        assert entries["min.insync.replicas"] == "1"
    finally:
        await admin.close()

    env = {"CLEARWAY_DATABASE_URL": platform.database_url, "CLEARWAY_LOCAL_DIR": str(tmp_path)}
    await migrate_services(["rail"], env=env)
    issuer = TestIssuer()
    settings = RailSettings(
        platform=platform.replace(
            database_url=_without_credentials(platform.database_url),  # no admin user
            migrate_at_start=False,
            create_topics_at_start=False,
            oauth_issuer=issuer.issuer,
            local_dir=tmp_path,
        ),
        jwks=issuer.jwks(),
    )
    async with serve(build_app(settings)) as url, httpx.AsyncClient(base_url=url) as http:

        async def ready() -> bool:
            return (await http.get("/readyz")).status_code == 200

        assert await eventually(ready, timeout=60)  # the revocation feed caught up

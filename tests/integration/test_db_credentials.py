"""Rotated database logins on a Postgres that checks passwords (docs/design.md §9, ADR 0016).

The shared test cluster trusts every local connection, so these tests start a
private one whose TCP logins need SCRAM passwords (the admin ``postgres`` stays
trusted): an old password keeps logging in during the overlap and is refused
after its ``VALID UNTIL``; a pool keeps serving queries across rotations.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from clearway.audit.bootstrap import build_app as audit_app
from clearway.audit.settings import AuditSettings
from clearway.consent.bootstrap import build_app as consent_app
from clearway.consent.settings import ConsentSettings
from clearway.rail.bootstrap import build_app as rail_app
from clearway.rail.settings import RailSettings
from clearway.shared.auth import CONSENT_EVENTS_TOPIC
from clearway.shared.crypto import Envelope
from clearway.shared.crypto.db_credentials import (
    RotatingLogin,
    admin_connection,
    current_login,
    keep_login_current,
    rotate_login,
)
from clearway.shared.crypto.keyring import KeyringProvider
from clearway.shared.crypto.settings import KeySettings, open_envelope
from clearway.shared.db import (
    Migration,
    create_pool,
    load_migrations,
    login_roles,
    migrate,
    reader_role,
    service_dsn,
)
from clearway.shared.event_writer import EventWriter
from clearway.shared.kafka import ensure_topics
from clearway.shared.kafka_link import TopicLayout
from clearway.shared.provision import create_platform_topics, migrate_services
from clearway.shared.settings import SettingsError
from clearway.shared.testing.fixtures import Stack, _localstack
from clearway.shared.testing.helpers import eventually
from clearway.transfer.bootstrap import build_app as transfer_app
from clearway.transfer.settings import TransferSettings
from clearway.vault.bootstrap import build_app as vault_app
from clearway.vault.settings import VaultSettings
from clearway.webhooks.bootstrap import build_app
from clearway.webhooks.settings import WebhooksSettings

pytestmark = pytest.mark.integration

HBA = """\
local all all trust
host all postgres 127.0.0.1/32 trust
host all all 127.0.0.1/32 scram-sha-256
"""
HITS = Migration("0001_hits", "CREATE TABLE hits (n bigint)")


@pytest.fixture(scope="module")
def scram_pg() -> Iterator[str]:
    ls = _localstack()
    # not under pytest's base directory: a pytest run started meanwhile (another
    # worktree) makes that private again, and Postgres runs as its own user
    base = Path(tempfile.mkdtemp(prefix="clearway-scram-"))
    port = ls.free_port()
    try:
        ls.start_postgres(base, port, tuned_for_tests=True)
        (base / "pg" / "data" / "pg_hba.conf").write_text(HBA)
        dsn = f"postgresql://postgres@127.0.0.1:{port}/clearway"

        async def reload() -> None:
            conn = await asyncpg.connect(dsn)
            try:
                await conn.execute("SELECT pg_reload_conf()")
            finally:
                await conn.close()

        asyncio.run(reload())
        yield dsn
    finally:
        ls.stop_postgres(base)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
async def service(scram_pg: str, tmp_path: Path):
    name = f"s{uuid.uuid4().hex[:8]}"
    await migrate(scram_pg, schema=name, service=name, migrations=[HITS], role_password=None)
    provider = KeyringProvider(name, tmp_path)
    provider.ensure()
    admin = await admin_connection(scram_pg, name)
    yield name, admin, Envelope(provider)
    await admin.close()


async def login(dsn: str, user: str, password: str) -> str:
    conn = await asyncpg.connect(service_dsn(dsn, "x", password, login=user))
    try:
        return str(await conn.fetchval("SELECT current_user"))
    finally:
        await conn.close()


async def test_old_password_works_during_the_overlap_and_not_after_valid_until(
    scram_pg: str, service
) -> None:
    name, admin, envelope = service
    events = EventWriter(name)
    old = await rotate_login(
        admin, envelope, events, service=name, lifetime=timedelta(seconds=3), reason="test"
    )
    new = await rotate_login(
        admin, envelope, events, service=name, lifetime=timedelta(minutes=5), reason="test"
    )
    assert (old.login, new.login) == login_roles(name)
    assert (await current_login(admin, envelope, name)).password == new.password
    # the overlap: both logins work, as members of the service role
    assert await login(scram_pg, old.login, old.password) == old.login
    assert await login(scram_pg, new.login, new.password) == new.login
    async with asyncpg.create_pool(
        service_dsn(scram_pg, name, new.password, login=new.login),
        min_size=1,
        max_size=1,
        server_settings={"search_path": name},
    ) as pool:
        await pool.execute("INSERT INTO hits VALUES (1)")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await pool.fetch("SELECT * FROM db_credentials")  # the sealed passwords: admin only
    # the group role itself has no password and cannot log in
    with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError):
        await login(scram_pg, f"clearway_{name}", new.password)
    # after VALID UNTIL the old password is refused; the new one still works
    await asyncio.sleep(max(0.0, (old.valid_until - datetime.now(UTC)).total_seconds()) + 1.1)
    with pytest.raises(asyncpg.InvalidPasswordError):
        await login(scram_pg, old.login, old.password)
    assert await login(scram_pg, new.login, new.password) == new.login
    # sealed at rest, audited without the password
    sealed = await admin.fetch("SELECT sealed FROM db_credentials")
    assert all(new.password.encode() not in bytes(r["sealed"]) for r in sealed)
    rows = await admin.fetch("SELECT headers, payload FROM outbox ORDER BY id")
    assert len(rows) == 2
    assert all(old.password not in str(r) and new.password not in str(r) for r in rows)


async def test_a_pool_keeps_serving_across_three_rotations(scram_pg: str, service) -> None:
    name, admin, envelope = service
    events = EventWriter(name)
    lifetime, interval = timedelta(seconds=3), timedelta(seconds=1)
    first = await rotate_login(
        admin, envelope, events, service=name, lifetime=lifetime, reason="first"
    )
    rotating = RotatingLogin(scram_pg, name, first)
    pool = rotating.watch(
        await create_pool(scram_pg, schema=name, min_size=2, max_size=4, connect=rotating.connect)
    )
    stop = asyncio.Event()
    served, failures, users = [0], [], set()

    async def queries() -> None:
        while not stop.is_set():
            try:
                async with pool.acquire() as conn:
                    users.add(await conn.fetchval("SELECT current_user"))
                    await conn.execute("INSERT INTO hits VALUES ($1)", served[0])
                served[0] += 1
            except Exception as e:  # every failure counts
                failures.append(repr(e))
            await asyncio.sleep(0.005)

    loops = [asyncio.create_task(queries()) for _ in range(4)]
    start = time.monotonic()
    generations = [first.generation]
    try:
        for _ in range(3):  # each rotation: the scheduled job is due after `interval`
            await asyncio.sleep(interval.total_seconds() + 0.2)
            await keep_login_current(
                rotating, envelope, events, schema=name, interval=interval, lifetime=lifetime
            )
            generations.append(rotating.current.generation)
        # the first password has expired by now: new connections still open
        await asyncio.sleep(max(0.0, lifetime.total_seconds() - (time.monotonic() - start)) + 1)
        await pool.expire_connections()
        await asyncio.sleep(0.5)
    finally:
        stop.set()
        await asyncio.gather(*loops)
        await pool.close()
    assert failures == [], failures[:5]
    assert generations == [1, 2, 3, 4]
    assert users == set(login_roles(name))
    assert served[0] > 100
    assert await admin.fetchval("SELECT count(*) FROM hits") == served[0]
    with pytest.raises(asyncpg.InvalidPasswordError):
        await login(scram_pg, first.login, first.password)


PRODUCTION = {
    "CLEARWAY_ENV": "production",
    "CLEARWAY_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "CLEARWAY_WEBHOOKS_KAFKA_PASSWORD": "a-kafka-password",
    "CLEARWAY_WEBHOOKS_HSM_PIN": "1234",
    "CLEARWAY_WEBHOOKS_CURSOR_KEY": base64.b64encode(b"k" * 32).decode(),
}


def test_production_refuses_a_static_database_password_unless_logins_rotate() -> None:
    for password in ({}, {"CLEARWAY_WEBHOOKS_DB_PASSWORD": "a-long-lived-one"}):
        with pytest.raises(SettingsError) as e:
            WebhooksSettings.from_env({**PRODUCTION, **password})
        assert list(e.value.problems) == ["CLEARWAY_WEBHOOKS_DB_PASSWORD"]
        assert "CLEARWAY_WEBHOOKS_DB_LOGINS=rotated" in str(e.value)
    ok = WebhooksSettings.from_env({**PRODUCTION, "CLEARWAY_WEBHOOKS_DB_LOGINS": "rotated"})
    assert ok.rotates_db_logins
    # the audit service's signer role: no static password in production either
    audit = {
        "CLEARWAY_ENV": "production",
        "CLEARWAY_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "CLEARWAY_AUDIT_KAFKA_PASSWORD": "a-kafka-password",
        "CLEARWAY_AUDIT_HSM_PIN": "1234",
        "CLEARWAY_AUDIT_CURSOR_KEY": base64.b64encode(b"k" * 32).decode(),
        "CLEARWAY_AUDIT_DB_PASSWORD": "a-long-lived-one",
        "CLEARWAY_AUDIT_SIGNER_DB_PASSWORD": "another-long-lived-one",
    }
    with pytest.raises(SettingsError) as e:
        AuditSettings.from_env(audit)
    assert set(e.value.problems) == {
        "CLEARWAY_AUDIT_DB_PASSWORD",
        "CLEARWAY_AUDIT_SIGNER_DB_PASSWORD",
    }
    assert AuditSettings.from_env({**audit, "CLEARWAY_AUDIT_DB_LOGINS": "rotated"})
    # the previous password must outlive the refresh of every replica
    with pytest.raises(SettingsError) as e:
        WebhooksSettings.from_env(
            {
                "CLEARWAY_WEBHOOKS_DB_LOGIN_ROTATION_S": "100",
                "CLEARWAY_WEBHOOKS_DB_LOGIN_LIFETIME_S": "150",
            }
        )


async def test_the_webhooks_service_runs_on_rotated_logins(
    scram_pg: str, stack: Stack, topic_prefix: str, tmp_path: Path
) -> None:
    settings = WebhooksSettings(
        platform=stack.platform(
            database_url=scram_pg, topic_prefix=topic_prefix, local_dir=tmp_path
        ),
        key_provider="keyring",
        db_logins="rotated",
        jwks={"keys": []},
        run_relay=False,
        run_consumer=False,
        run_dispatcher=False,
    )
    app = build_app(settings)
    async with app.router.lifespan_context(app):
        pool = app.state.pool
        assert await pool.fetchval("SELECT current_user") == "clearway_webhooks_a"
        assert await pool.fetchval("SELECT count(*) FROM endpoints") == 0
    admin = await admin_connection(scram_pg, "webhooks")
    try:
        row = await admin.fetchrow("SELECT login, valid_until FROM db_credentials")
        assert row["login"] == "clearway_webhooks_a"
        assert row["valid_until"] > datetime.now(UTC) + timedelta(days=1)
    finally:
        await admin.close()


def test_db_rotate_on_demand_from_the_cli_is_audited(
    scram_pg: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from clearway.shared.crypto.cli import main
    from clearway.webhooks.bootstrap import MIGRATIONS

    async def prepare() -> None:
        await migrate(
            scram_pg,
            schema="webhooks",
            service="webhooks",
            migrations=load_migrations(MIGRATIONS),
            role_password=None,
        )

    asyncio.run(prepare())
    monkeypatch.setenv("CLEARWAY_DATABASE_URL", scram_pg)
    monkeypatch.setenv("CLEARWAY_LOCAL_DIR", str(tmp_path))
    monkeypatch.setenv("CLEARWAY_WEBHOOKS_KEY_PROVIDER", "keyring")
    monkeypatch.setenv("CLEARWAY_WEBHOOKS_DB_LOGINS", "rotated")
    args = ["webhooks", "db-rotate", "--reason", "DBA left", "--operator", "alice"]
    assert main(args) == 0
    assert "has a new password until" in capsys.readouterr().out

    async def audited() -> list[asyncpg.Record]:
        conn = await admin_connection(scram_pg, "webhooks")
        try:
            return await conn.fetch(
                "SELECT payload FROM outbox WHERE headers::text LIKE '%db_credential_rotated%'"
            )
        finally:
            await conn.close()

    payloads = [json.loads(r["payload"]) for r in asyncio.run(audited())]
    assert any(p["reason"] == "DBA left" and p["actor"]["subject"] == "alice" for p in payloads)


def _apps() -> dict[str, tuple[Any, ...]]:
    """service → (settings class, build_app, its settings for a quick start without
    partners, the roles it logs in as with where the app keeps each role's pools)."""
    jwks = {"jwks": {"keys": []}}
    return {
        "transfer": (
            TransferSettings,
            transfer_app,
            {**jwks, "revocation_feed": False, "run_executor": False},
            {"transfer": [lambda s: s.core.pool, lambda s: s.core.claims]},
        ),
        "consent": (ConsentSettings, consent_app, {}, {"consent": [lambda s: s.consent.pool]}),
        "audit": (
            AuditSettings,
            audit_app,
            {**jwks, "consume": False, "verification_workers": 0},
            {"audit": [lambda s: s.pool], "audit_signer": [lambda s: s.signer_pool]},
        ),
        "rail": (
            RailSettings,
            rail_app,
            {**jwks, "run_relay": False},
            {"rail": [lambda s: s.pool]},
        ),
        "vault": (
            VaultSettings,
            vault_app,
            {**jwks, "run_relay": False},
            {"vault": [lambda s: s.vault.pool]},
        ),
        "webhooks": (
            WebhooksSettings,
            build_app,
            {**jwks, "run_relay": False, "run_consumer": False, "run_dispatcher": False},
            {"webhooks": [lambda s: s.pool]},
        ),
    }


@pytest.mark.parametrize("service", ["transfer", "consent", "audit", "rail", "vault", "webhooks"])
async def test_every_service_serves_on_rotated_logins_after_a_rotation(
    scram_pg: str, stack: Stack, topic_prefix: str, tmp_path: Path, service: str
) -> None:
    cls, build, values, roles = _apps()[service]
    platform = stack.platform(database_url=scram_pg, topic_prefix=topic_prefix, local_dir=tmp_path)
    # the revocation feed of the services that follow it reads the consent topic
    await ensure_topics(platform.kafka, [platform.topic(CONSENT_EVENTS_TOPIC)])
    settings: KeySettings = cls(
        platform=platform,
        key_provider="keyring",
        db_logins="rotated",
        db_login_refresh_s=0.2,
        **values,
    )
    app = build(settings)
    schema = "audit" if service == "audit" else cls.service
    # a fresh start: an earlier test may have left logins sealed with another keyring
    admin = await asyncpg.connect(scram_pg)
    try:
        await admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await admin.close()
    pools: dict[str, list[Callable[[Any], asyncpg.Pool]]] = roles

    async def users() -> set[str]:
        return {
            await get(app.state).fetchval("SELECT current_user")
            for getters in pools.values()
            for get in getters
        }

    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://t") as http,
    ):
        first = {login_roles(role)[0] for role in pools}
        assert await users() == first
        # an operator's rotation (as `clearway-keys <svc> db-rotate`); then the first
        # logins stop logging in at once, so new connections must use the new ones
        envelope = open_envelope(settings)
        admin = await admin_connection(scram_pg, schema)
        try:
            for role in pools:
                await rotate_login(
                    admin,
                    envelope,
                    EventWriter(cls.service, topic_prefix=platform.topic_prefix),
                    service=role,
                    lifetime=timedelta(hours=1),
                    reason="test",
                )
                await admin.execute(f"ALTER ROLE {login_roles(role)[0]} VALID UNTIL '-infinity'")
        finally:
            await admin.close()
            envelope.provider.close()
        second = {login_roles(role)[1] for role in pools}

        async def switched() -> bool:
            return await users() == second

        await eventually(switched, timeout=10)
        ready = await eventually(lambda: _ready(http), timeout=30, interval=0.2)
        assert ready.status_code == 200, ready.text


async def _ready(http: httpx.AsyncClient) -> httpx.Response | None:
    r = await http.get("/readyz")
    return r if r.status_code == 200 else None


@pytest.mark.parametrize("service", ["audit", "rail", "webhooks"])
async def test_a_service_reads_its_rotated_logins_without_admin_after_clearway_migrate(
    scram_pg: str, stack: Stack, topic_prefix: str, tmp_path: Path, service: str
) -> None:
    """ADR 0044: ``clearway-migrate`` sets the reader login and the first rotated logins;
    the service then starts with neither the admin's user nor password, reads its
    sealed logins as the reader, which can read nothing else, and rotates nothing."""
    cls, build, values, roles = _apps()[service]
    svc = cls.service
    admin = await asyncpg.connect(scram_pg)
    try:  # a fresh start: an earlier test may have left logins sealed with another keyring
        await admin.execute(f"DROP SCHEMA IF EXISTS {svc} CASCADE")
    finally:
        await admin.close()
    env = {
        "CLEARWAY_DATABASE_URL": scram_pg,
        "CLEARWAY_LOCAL_DIR": str(tmp_path),
        f"CLEARWAY_{svc.upper()}_DB_LOGINS": "rotated",
        f"CLEARWAY_{svc.upper()}_KEY_PROVIDER": "keyring",
        f"CLEARWAY_{svc.upper()}_DB_READER_PASSWORD": "reader-secret",
    }
    await migrate_services([svc], env=env)
    await migrate_services([svc], env=env)  # nothing due: nothing rotated again
    admin = await admin_connection(scram_pg, svc)
    try:
        generations = await admin.fetch("SELECT login, generation FROM db_credentials")
    finally:
        await admin.close()
    assert sorted((r["login"], r["generation"]) for r in generations) == sorted(
        (login_roles(role)[0], 1) for role in roles
    )

    reader_dsn = service_dsn(scram_pg, svc, "reader-secret", login=reader_role(svc))
    reader = await asyncpg.connect(reader_dsn, server_settings={"search_path": svc})
    try:
        assert await reader.fetchval("SELECT count(*) FROM db_credentials") == len(roles)
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await reader.fetchval("SELECT count(*) FROM outbox")
    finally:
        await reader.close()

    host = scram_pg.replace("postgres@", "")  # no admin user, no password
    platform = stack.platform(
        database_url=host,
        topic_prefix=topic_prefix,
        local_dir=tmp_path,
        migrate_at_start=False,
        create_topics_at_start=False,
    )
    await create_platform_topics(platform.kafka, topic_prefix, TopicLayout())
    settings: KeySettings = cls(
        platform=platform,
        key_provider="keyring",
        db_logins="rotated",
        db_reader_password="reader-secret",
        **values,
    )
    assert settings.reads_db_logins
    app = build(settings)
    async with app.router.lifespan_context(app):
        users = {
            await get(app.state).fetchval("SELECT current_user")
            for getters in roles.values()
            for get in getters
        }
        assert users == {login_roles(role)[0] for role in roles}


def test_a_service_that_does_not_migrate_needs_its_reader_password() -> None:
    with pytest.raises(SettingsError) as e:
        RailSettings.from_env(
            {"CLEARWAY_MIGRATE_AT_START": "false", "CLEARWAY_RAIL_DB_LOGINS": "rotated"}
        )
    assert "required with CLEARWAY_RAIL_DB_LOGINS=rotated" in e.value.problems[
        "CLEARWAY_RAIL_DB_READER_PASSWORD"
    ]
    production = {
        "CLEARWAY_ENV": "production",
        "CLEARWAY_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "CLEARWAY_RAIL_KAFKA_PASSWORD": "k",
        "CLEARWAY_RAIL_HSM_PIN": "1234",
        "CLEARWAY_RAIL_CURSOR_KEY": base64.b64encode(b"c" * 32).decode(),
        "CLEARWAY_RAIL_DB_LOGINS": "rotated",
    }
    # migrating at start (as the admin), the reader password is not asked for
    assert RailSettings.from_env(production).rotates_db_logins
    reading = RailSettings.from_env(
        {
            **production,
            "CLEARWAY_MIGRATE_AT_START": "false",
            "CLEARWAY_RAIL_DB_READER_PASSWORD": "r",
        }
    )
    assert reading.reads_db_logins

"""Pytest fixtures giving tests a real Postgres and a real Kafka broker.

Order of preference:
1. ``CLEARWAY_DATABASE_URL`` + ``CLEARWAY_KAFKA_BOOTSTRAP`` point at a running stack;
2. a reachable Docker engine: testcontainers starts Postgres and Kafka;
3. otherwise the embedded local stack (``deploy/local/localstack.py``) is started
   for the session on free ports and stopped at the end.
Failure to start is an error, never a skip: a test that did not run did not pass.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import asyncpg
import pytest
import pytest_asyncio

from clearway.shared.crypto.softhsm import ensure_token, softhsm_home
from clearway.shared.settings import PlatformSettings


@dataclass(frozen=True)
class Stack:
    """Admin connection to the test Postgres cluster and the Kafka bootstrap address."""

    database_url: str
    kafka_bootstrap: str
    kind: str


def repo_root() -> Path:
    env = os.environ.get("CLEARWAY_ROOT")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for p in here.parents:
        if (p / "deploy" / "local" / "localstack.py").exists():
            return p
    raise RuntimeError("cannot find the repository root (deploy/local/localstack.py)")


def _localstack() -> ModuleType:
    path = repo_root() / "deploy" / "local" / "localstack.py"
    spec = importlib.util.spec_from_file_location("clearway_localstack", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def _docker_engine() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=5).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="session", autouse=True)
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SoftHSM2 token directory for this test session (docs/design.md §9).

    ``SOFTHSM2_CONF`` is read once per process when the PKCS#11 module loads, so
    the whole session shares one configuration and its token ``clearway`` (the
    default ``hsm_token``), initialised here before anything loads the module:
    SoftHSM2 reads its token directory at ``C_Initialize``. Tests tell their keys
    apart by KEK name.
    """
    home = tmp_path_factory.mktemp("softhsm")
    os.environ["SOFTHSM2_CONF"] = str(home / "softhsm2.conf")
    ensure_token(home, "clearway")
    return softhsm_home(home)


@pytest.fixture(scope="session")
def stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    """The session's Kafka and Postgres (see module doc for where they come from)."""
    db, kafka = os.environ.get("CLEARWAY_DATABASE_URL"), os.environ.get("CLEARWAY_KAFKA_BOOTSTRAP")
    if db and kafka:
        yield Stack(db, kafka, "external")
        return
    if _docker_engine() and os.environ.get("CLEARWAY_NO_DOCKER") != "1":
        from testcontainers.kafka import KafkaContainer
        from testcontainers.postgres import PostgresContainer

        with (
            PostgresContainer("postgres:16", driver=None) as pg,
            KafkaContainer().with_kraft() as k,
        ):
            yield Stack(pg.get_connection_url(), k.get_bootstrap_server(), "testcontainers")
        return
    ls = _localstack()
    base = repo_root() / ".local" / f"test-stack-{os.getpid()}"
    # Shown on the terminal, not captured: the run's output proves which real
    # broker and database the tests ran against.
    capman = request.config.pluginmanager.getplugin("capturemanager")
    with capman.global_and_fixture_disabled() if capman else contextlib.nullcontext():
        print()
        ep = ls.up(base, tuned_for_tests=True)
    try:
        yield Stack(ep.database_url, ep.kafka_bootstrap, "localstack")
    finally:
        ls.down(base)
        import shutil

        shutil.rmtree(base, ignore_errors=True)


def _with_db(url: str, dbname: str) -> str:
    head, _, _ = url.rpartition("/")
    return f"{head}/{dbname}"


@pytest_asyncio.fixture
async def admin_dsn(stack: Stack) -> AsyncIterator[str]:
    """A fresh database for this test (admin rights); dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    conn = await asyncpg.connect(stack.database_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    yield _with_db(stack.database_url, name)
    conn = await asyncpg.connect(stack.database_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture
def topic_prefix() -> str:
    """A unique topic prefix so tests never see each other's messages."""
    return f"t{uuid.uuid4().hex[:10]}."


@pytest.fixture
def platform(stack: Stack, admin_dsn: str, topic_prefix: str) -> PlatformSettings:
    """Platform settings pointing at this test's database and topic namespace."""
    return PlatformSettings(
        database_url=admin_dsn, kafka_bootstrap=stack.kafka_bootstrap, topic_prefix=topic_prefix
    )

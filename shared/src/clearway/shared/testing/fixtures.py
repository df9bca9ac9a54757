"""Pytest fixtures giving tests a real Postgres and a real Kafka broker.

Order of preference:
1. ``CLEARWAY_DATABASE_URL`` + ``CLEARWAY_KAFKA_BOOTSTRAP`` point at a running stack;
2. a reachable Docker engine: testcontainers starts Postgres and Kafka
   (``testing.containers``: images from ``CLEARWAY_TEST_*_IMAGE``);
3. otherwise the embedded local stack (``deploy/local/localstack.py``) is started
   for the session on free ports and stopped at the end, its broker secured:
   SASL/SCRAM with a generated password per principal and ACLs enforced. Each
   test's topic prefix gets the services' ACLs (``kafka_acl.platform_acls``), the
   ``platform`` fixture hands the principals to the services it configures, and
   ``platform.kafka`` connects as the super user (for what a test itself reads
   and writes).
An external stack is secured when ``CLEARWAY_KAFKA_SECURITY_PROTOCOL`` says so;
the logins are then ``CLEARWAY_<NAME>_KAFKA_USERNAME/_PASSWORD`` (``ADMIN``, each
service, ``INITIATOR``).
Failure to start is an error, never a skip: a test that did not run did not pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import asyncpg
import pytest
import pytest_asyncio
from aiokafka.errors import UnknownTopicOrPartitionError

from clearway.shared.crypto.softhsm import ensure_token, softhsm_home
from clearway.shared.kafka_acl import (
    ADMIN,
    EVENT_DOMAINS,
    INITIATORS,
    SERVICES,
    acl_admin,
    create_acls,
    delete_acls,
    platform_acls,
    stack_users,
)
from clearway.shared.kafka_link import KafkaLogin, SecurityProtocol, principal
from clearway.shared.settings import PlatformSettings, kafka_login_from_env
from clearway.shared.testing.containers import container_stack

T = TypeVar("T")
#: Event domains of the kit's own tests, besides the services' (their followers may
#: dead-letter them).
TEST_DOMAINS = (*EVENT_DOMAINS, "platform")


@dataclass(frozen=True)
class Stack:
    """Admin connection to the test Postgres cluster and how to reach its Kafka."""

    database_url: str
    kafka_bootstrap: str
    kind: str
    kafka_security_protocol: SecurityProtocol = "PLAINTEXT"
    kafka_logins: dict[str, KafkaLogin] = field(default_factory=dict)
    """By name: ``admin`` (super user), each service, each initiator."""

    @property
    def secured(self) -> bool:
        return self.kafka_security_protocol != "PLAINTEXT"

    def platform(self, **values: Any) -> PlatformSettings:
        """Platform settings for this stack (``values``: database, topic prefix, …)."""
        return PlatformSettings(
            kafka_bootstrap=self.kafka_bootstrap,
            kafka_security_protocol=self.kafka_security_protocol,
            kafka_logins=self.kafka_logins,
            **values,
        )


def _logins(users: dict[str, str]) -> dict[str, KafkaLogin]:
    """The stack's users by the names services and tests look them up with."""
    names = {ADMIN: ADMIN} | {n: principal(n) for n in (*SERVICES, *INITIATORS)}
    return {n: KafkaLogin(user, users[user]) for n, user in names.items() if user in users}


def _external_logins() -> dict[str, KafkaLogin]:
    names = (ADMIN, *SERVICES, *INITIATORS)
    return {n: login for n in names if (login := kafka_login_from_env(n)) is not None}


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
        # podman's Docker-compatible socket takes about 4 s to answer `docker info`
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(autouse=True)
def logging_as_found() -> Iterator[None]:
    """Put the root logger's level back after each test (autouse: torn down after
    ``caplog``). A test that leaves it at DEBUG would make every later test create,
    redact and capture aiokafka's debug records of whole protocol structs."""
    root = logging.getLogger()
    level = root.level
    yield
    root.setLevel(level)


@pytest.fixture(scope="session", autouse=True)
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SoftHSM2 token directory for this test session (docs/design.md §9).

    ``SOFTHSM2_CONF`` is read once per process when the PKCS#11 module loads, so
    the whole session shares one configuration and its tokens ``clearway`` (the
    default ``hsm_token``) and ``clearway-us`` (another region's, as ``make run``
    gives the us deployments), initialised here before anything loads the module:
    SoftHSM2 reads its token directory at ``C_Initialize``. Tests tell their keys
    apart by KEK name.
    """
    home = tmp_path_factory.mktemp("softhsm")
    os.environ["SOFTHSM2_CONF"] = str(home / "softhsm2.conf")
    ensure_token(home, "clearway")
    ensure_token(home, "clearway-us")
    return softhsm_home(home)


@pytest.fixture(scope="session")
def stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    """The session's Kafka and Postgres (see module doc for where they come from)."""
    db, kafka = os.environ.get("CLEARWAY_DATABASE_URL"), os.environ.get("CLEARWAY_KAFKA_BOOTSTRAP")
    if db and kafka:
        protocol = PlatformSettings.from_env().kafka_security_protocol
        yield Stack(db, kafka, "external", protocol, _external_logins())
        return
    if _docker_engine() and os.environ.get("CLEARWAY_NO_DOCKER") != "1":
        with container_stack() as (database_url, bootstrap):
            yield Stack(database_url, bootstrap, "testcontainers")
        return
    ls = _localstack()
    base = repo_root() / ".local" / f"test-stack-{os.getpid()}"
    # Shown on the terminal, not captured: the run's output proves which real
    # broker and database the tests ran against.
    capman = request.config.pluginmanager.getplugin("capturemanager")
    with capman.global_and_fixture_disabled() if capman else contextlib.nullcontext():
        print()
        ep = ls.up(base, tuned_for_tests=True, sasl_users=stack_users())
    logins = _logins(ls.kafka_users(base) or {})
    try:
        yield Stack(ep.database_url, ep.kafka_bootstrap, "localstack", "SASL_PLAINTEXT", logins)
    finally:
        ls.down(base)
        import shutil

        shutil.rmtree(base, ignore_errors=True)


def _with_db(url: str, dbname: str) -> str:
    head, _, _ = url.rpartition("/")
    return f"{head}/{dbname}"


@contextlib.asynccontextmanager
async def _fresh_database(stack: Stack) -> AsyncIterator[str]:
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


@pytest_asyncio.fixture
async def admin_dsn(stack: Stack) -> AsyncIterator[str]:
    """A fresh database for this test (admin rights); dropped afterwards."""
    async with _fresh_database(stack) as dsn:
        yield dsn


@pytest_asyncio.fixture
async def other_region_dsn(stack: Stack) -> AsyncIterator[str]:
    """A second fresh database for this test, standing for another region's cluster
    (docs/design.md §9); dropped afterwards."""
    async with _fresh_database(stack) as dsn:
        yield dsn


class _BrokerJanitor:
    """One admin connection on its own event loop thread (a test's loop ends with the
    test) that prepares each test's topic prefix and clears it afterwards.

    On a secured stack a prefix gets the services' ACLs; afterwards its topics and
    ACLs are deleted, so the broker of a long session does not carry thousands of
    dead topics (every metadata request and pattern subscription would pay for them).
    """

    def __init__(self, stack: Stack) -> None:
        self._link = stack.platform().kafka
        self._secured = stack.secured
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._admin = self._run(self._open())

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=60)

    async def _open(self) -> Any:
        self._cm = acl_admin(self._link)
        return await self._cm.__aenter__()

    def grant(self, prefix: str) -> None:
        if self._secured:
            self._run(create_acls(self._admin, platform_acls(prefix, domains=TEST_DOMAINS)))

    def clear(self, prefix: str) -> None:
        """Delete the prefix's topics and ACLs; a failure is reported, never fatal."""
        try:
            self._run(self._clear(prefix))
        except Exception as exc:
            print(f"[fixtures] could not clear topics under {prefix}: {exc!r}", file=sys.stderr)

    async def _clear(self, prefix: str) -> None:
        topics = [t for t in await self._admin.list_topics() if t.startswith(prefix)]
        if topics:
            with contextlib.suppress(UnknownTopicOrPartitionError):
                await self._admin.delete_topics(topics)
        if self._secured:
            await delete_acls(self._admin, platform_acls(prefix, domains=TEST_DOMAINS))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._run(self._cm.__aexit__(None, None, None))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)


@pytest.fixture(scope="session")
def broker_janitor(stack: Stack) -> Iterator[_BrokerJanitor]:
    """Grants (on a secured stack) and clears each test's topic prefix."""
    janitor = _BrokerJanitor(stack)
    try:
        yield janitor
    finally:
        janitor.close()


@pytest.fixture
def topic_prefix(broker_janitor: _BrokerJanitor) -> Iterator[str]:
    """A unique topic prefix so tests never see each other's messages; on a secured
    broker each service's principal is granted its ACLs under it. The prefix's
    topics (and ACLs) are deleted when the test ends."""
    prefix = f"t{uuid.uuid4().hex[:10]}."
    broker_janitor.grant(prefix)
    yield prefix
    broker_janitor.clear(prefix)


@pytest.fixture
def platform(stack: Stack, admin_dsn: str, topic_prefix: str) -> PlatformSettings:
    """Platform settings pointing at this test's database and topic namespace, with the
    stack's Kafka logins (each service connects as its own principal)."""
    return stack.platform(database_url=admin_dsn, topic_prefix=topic_prefix)

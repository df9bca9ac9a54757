"""Least privilege on the broker (docs/design.md §9): with SASL/SCRAM and the
StandardAuthorizer on, a service's principal can do what its ACLs allow and
nothing else. Runs on the session's broker when it is secured (``make test``),
otherwise on a private secured broker started for this module."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError, TopicAuthorizationFailedError

from clearway.shared.events import events_topic
from clearway.shared.kafka import ensure_topics
from clearway.shared.kafka_acl import acl_admin, create_acls, platform_acls, stack_users
from clearway.shared.kafka_link import KafkaLink, KafkaLogin
from clearway.shared.relay import idempotent_producer
from clearway.shared.testing.fixtures import Stack, _localstack, _logins, repo_root

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def secured(stack: Stack) -> Iterator[Stack]:
    if stack.secured:
        yield stack
        return
    ls = _localstack()
    base = repo_root() / ".local" / f"acl-kafka-{uuid.uuid4().hex[:8]}"
    users = ls.new_kafka_users(stack_users())
    port = ls.free_port()
    try:
        ls.start_kafka(base, port, ls.free_port(), users=users)
        yield Stack("", f"127.0.0.1:{port}", "private", "SASL_PLAINTEXT", _logins(users))
    finally:
        ls.stop_kafka(base)
        shutil.rmtree(base, ignore_errors=True)


@pytest_asyncio.fixture
async def prefix(secured: Stack) -> AsyncIterator[str]:
    prefix = f"t{uuid.uuid4().hex[:10]}."
    async with acl_admin(secured.platform().kafka) as admin:
        await create_acls(admin, platform_acls(prefix))
    yield prefix


def as_(stack: Stack, name: str) -> KafkaLink:
    return stack.platform().kafka_link(stack.kafka_logins[name])


async def produce(link: KafkaLink, topic: str) -> None:
    producer = idempotent_producer(link, request_timeout_ms=10_000)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"{}", key=b"k")
    finally:
        await producer.stop()


@pytest.mark.parametrize("topic", ["clearway.transfer.events.v1", "clearway.transfer.intents.v1"])
async def test_the_webhooks_principal_cannot_produce_transfer_events_or_intents(
    secured, prefix, topic
):
    with pytest.raises(TopicAuthorizationFailedError):
        await produce(as_(secured, "webhooks"), prefix + topic)


async def test_only_initiators_write_intents_and_only_transfer_reads_them(secured, prefix):
    intents = prefix + "clearway.transfer.intents.v1"
    await ensure_topics(as_(secured, "transfer"), [intents])  # as the service does at start
    await produce(as_(secured, "initiator"), intents)
    with pytest.raises(TopicAuthorizationFailedError):
        await produce(as_(secured, "transfer"), intents)
    # an intent carries a bearer token: the services following every domain may not read it
    for name in ("webhooks", "audit"):
        consumer = AIOKafkaConsumer(intents, **as_(secured, name).client_options(), group_id=None)
        with pytest.raises(TopicAuthorizationFailedError):
            await consumer.start()
            await consumer.getmany(timeout_ms=5000)
        await consumer.stop()


async def test_each_service_writes_its_own_events_topic(secured, prefix):
    for name in ("transfer", "webhooks", "consent", "audit"):
        await produce(as_(secured, name), f"{prefix}{events_topic(name)}")


async def test_a_wrong_password_is_refused(secured):
    link = secured.platform().kafka_link(KafkaLogin("clearway-transfer", "not-the-password"))
    with pytest.raises(KafkaError):
        await produce(link, "anything")

"""Least privilege on Kafka: each service's principal and the ACLs it needs (docs/design.md §9).

Every service connects as its own principal ``User:clearway-<service>``; the
broker's StandardAuthorizer denies whatever no ACL allows. :func:`platform_acls`
is the plan: a service writes its own events topic and the dead-letter topics of
its consumer groups, reads the topics it consumes, and uses its own groups. The
transfer intents topic is written only by the ``initiators`` and read only by
the transfer service (an intent carries a bearer token: readers could replay it).

Topic ACLs are per topic prefix (``CLEARWAY_TOPIC_PREFIX``), so tests sharing a
broker under their own prefixes each get exact grants. :func:`create_acls`
applies a plan as the broker's super user (the embedded stack and the tests; a
managed cluster gets the same plan from its operators).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.admin import CreateAclsRequest_v1, DeleteAclsRequest_v1
from aiokafka.protocol.api import Request

from clearway.shared.dlt import REDRIVE_GROUP, dlt_topic
from clearway.shared.events import events_topic
from clearway.shared.kafka_link import INTENTS_TOPIC, KafkaLink, principal
from clearway.shared.residency import REGIONS

#: The services with Kafka principals; each has an events topic of its domain.
SERVICES = ("transfer", "webhooks", "consent", "audit", "vault", "rail")
#: The services with an events topic of their own (the rail's carries only the audited
#: rotations of its keys and database logins).
EVENT_DOMAINS = ("transfer", "webhooks", "consent", "audit", "vault", "rail")
#: Principals allowed to publish transfer intents (internal services that initiate;
#: ``clearway-initiator`` stands for them in the embedded stack and the tests).
INITIATORS = ("initiator",)
#: The super user of the embedded stack (creates topics, credentials and ACLs).
ADMIN = "admin"


def stack_users() -> list[str]:
    """The SASL users the embedded stack creates: the super user and every principal."""
    return [ADMIN, *(principal(s) for s in (*SERVICES, *INITIATORS))]


class Resource(IntEnum):
    """Kafka ``ResourceType`` codes (KIP-140)."""

    TOPIC = 2
    GROUP = 3


class Pattern(IntEnum):
    """Kafka ``PatternType`` codes (KIP-290)."""

    LITERAL = 3
    PREFIXED = 4


class Operation(IntEnum):
    """Kafka ``AclOperation`` codes; READ and WRITE imply DESCRIBE."""

    READ = 3
    WRITE = 4
    CREATE = 5
    DESCRIBE = 8


class Permission(IntEnum):
    DENY = 2
    ALLOW = 3


@dataclass(frozen=True)
class Acl:
    """One ACL binding: ``principal`` may (or may not) do ``operation`` on a resource."""

    principal: str
    resource: Resource
    name: str
    operation: Operation
    pattern: Pattern = Pattern.LITERAL
    permission: Permission = Permission.ALLOW

    def as_tuple(self) -> tuple[Any, ...]:
        return (
            int(self.resource),
            self.name,
            int(self.pattern),
            f"User:{self.principal}",
            "*",
            int(self.operation),
            int(self.permission),
        )


def _events(prefix: str, domain: str) -> str:
    return f"{prefix}{events_topic(domain)}"


def _grants(
    who: str,
    prefix: str,
    *,
    writes: Iterable[str] = (),
    reads: Iterable[str] = (),
    consumes: Iterable[tuple[str, str]] = (),
) -> list[Acl]:
    """``writes`` and ``reads`` are topics; ``consumes`` are (topic, group) pairs whose
    dead-letter topics the service writes. The service may create what it touches
    (``ensure_topics``, dead-letter topics created on first use)."""
    acls: list[Acl] = []
    consumed = list(consumes)
    writable = [*writes, *(dlt_topic(t, g) for t, g in consumed)]
    readable = [*reads, *(t for t, _ in consumed)]
    for t in dict.fromkeys([*writable, *readable]):
        acls.append(Acl(who, Resource.TOPIC, t, Operation.CREATE))
    acls += [Acl(who, Resource.TOPIC, t, Operation.WRITE) for t in dict.fromkeys(writable)]
    acls += [Acl(who, Resource.TOPIC, t, Operation.READ) for t in dict.fromkeys(readable)]
    groups = dict.fromkeys(g for _, g in consumed)
    acls += [Acl(who, Resource.GROUP, g, Operation.READ) for g in groups]
    if groups:  # the dead-letter depth metric reads the redrive progress (kafka_lag)
        acls.append(Acl(who, Resource.GROUP, REDRIVE_GROUP, Operation.DESCRIBE))
    return acls


def _every_event_topic(who: str, prefix: str, group: str, domains: Sequence[str]) -> list[Acl]:
    """A service that follows every domain's events topic with a pattern subscription."""
    return [
        # topics created later (a new domain) are readable at once: the subscription
        # pattern picks them up; the intents topic and its dead letters are denied
        Acl(who, Resource.TOPIC, f"{prefix}clearway.", Operation.READ, Pattern.PREFIXED),
        Acl(
            who,
            Resource.TOPIC,
            f"{prefix}{INTENTS_TOPIC}",
            Operation.READ,
            Pattern.PREFIXED,
            Permission.DENY,
        ),
        *_grants(who, prefix, consumes=[(_events(prefix, d), group) for d in domains]),
    ]


def platform_acls(
    prefix: str = "",
    *,
    domains: Sequence[str] = EVENT_DOMAINS,
    initiators: Sequence[str] = INITIATORS,
) -> list[Acl]:
    """The ACLs of every service principal for topics under ``prefix``.

    ``domains``: the events topics the followers of every domain may dead-letter
    (tests add their own); ``initiators``: who may publish transfer intents.
    """
    intents = f"{prefix}{INTENTS_TOPIC}"
    transfer, consent = _events(prefix, "transfer"), _events(prefix, "consent")
    webhooks, audit = principal("webhooks"), principal("audit")
    return [
        *_grants(
            principal("transfer"),
            prefix,
            writes=[transfer],
            reads=[consent],  # the revocation feed (no group)
            consumes=[
                (intents, "transfer-intents"),
                (transfer, "transfer-executor"),
                (consent, "transfer-consents"),  # the projection of consents
            ],
        ),
        # consents used by transfers: every region's deployment reads every
        # transfer.created in a group of its own (ADR 0039), one dead-letter topic
        *_grants(
            principal("consent"),
            prefix,
            writes=[consent, dlt_topic(transfer, "consent-transfers")],
            reads=[consent, transfer],
        ),
        *(
            Acl(principal("consent"), Resource.GROUP, f"consent-transfers-{r}", Operation.READ)
            for r in REGIONS
        ),
        *_grants(principal("vault"), prefix, writes=[_events(prefix, "vault")], reads=[consent]),
        # its revocation feed; its own topic for its audited key and login rotations
        *_grants(principal("rail"), prefix, writes=[_events(prefix, "rail")], reads=[consent]),
        *_grants(webhooks, prefix, writes=[_events(prefix, "webhooks")]),
        *_every_event_topic(
            webhooks, prefix, f"{prefix}webhooks", [d for d in domains if d != "webhooks"]
        ),
        # operators redrive its dead letters into its own consumer (dlt_admin): it reads
        # them (the prefixed READ above) and commits its progress in the redrive group
        # (by topic and partition, so it moves only its own dead letters' offsets)
        Acl(webhooks, Resource.GROUP, REDRIVE_GROUP, Operation.READ),
        *_grants(audit, prefix, writes=[_events(prefix, "audit")]),
        *_every_event_topic(audit, prefix, "audit", domains),
        *(Acl(principal(i), Resource.TOPIC, intents, Operation.WRITE) for i in initiators),
    ]


class _CreateAcls(Request[CreateAclsRequest_v1]):  # type: ignore[misc]
    """CreateAcls (KIP-140) with every binding in one request; aiokafka's own
    ``CreateAclsRequest`` carries one."""

    API_KEY = 30

    def __init__(self, acls: Sequence[Acl]) -> None:
        self.acls = acls

    def build(self, request_struct_class: type[CreateAclsRequest_v1]) -> CreateAclsRequest_v1:
        return request_struct_class([a.as_tuple() for a in self.acls])


class _DeleteAcls(Request[DeleteAclsRequest_v1]):  # type: ignore[misc]
    """DeleteAcls (KIP-140), one exact filter per binding, all in one request."""

    API_KEY = 31

    def __init__(self, acls: Sequence[Acl]) -> None:
        self.acls = acls

    def build(self, request_struct_class: type[DeleteAclsRequest_v1]) -> DeleteAclsRequest_v1:
        return request_struct_class([a.as_tuple() for a in self.acls])


@asynccontextmanager
async def acl_admin(link: KafkaLink) -> AsyncIterator[AIOKafkaAdminClient]:
    """An admin client over ``link`` (a super user's login) for :func:`create_acls`."""
    admin = AIOKafkaAdminClient(**link.client_options())
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


async def _send(admin: AIOKafkaAdminClient, request: Request[Any]) -> Any:
    # aiokafka has no public ACL API; its admin client sends any protocol Request.
    return await admin._send_request(request)


async def create_acls(admin: AIOKafkaAdminClient, acls: Sequence[Acl]) -> None:
    """Create ``acls`` (idempotent) with an :func:`acl_admin` client."""
    response = await _send(admin, _CreateAcls(acls))
    errors = [msg or str(code) for code, msg in response.creation_responses if code]
    if errors:
        raise RuntimeError(f"CreateAcls failed: {errors[:3]}")


async def delete_acls(admin: AIOKafkaAdminClient, acls: Sequence[Acl]) -> None:
    """Delete exactly ``acls`` (bindings that do not exist are no error)."""
    response = await _send(admin, _DeleteAcls(acls))
    errors = [msg or str(code) for code, msg, _ in response.filter_responses if code]
    if errors:
        raise RuntimeError(f"DeleteAcls failed: {errors[:3]}")

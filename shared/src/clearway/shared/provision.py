"""Migrations and topics as commands of their own (docs/design.md §12, ADR 0044).

``clearway-migrate`` applies every service's database migrations (or the named
services') as the admin of ``CLEARWAY_DATABASE_URL`` and, for a service with
rotated logins, sets its reader login and rotates its logins when due (so a
deployment also runs it on a schedule); ``clearway-topics`` creates
every topic of the platform, dead-letter topics included, with the configured
layout (``CLEARWAY_TOPIC_PARTITIONS``, ``_REPLICATION_FACTOR``,
``_MIN_INSYNC_REPLICAS``) as a Kafka principal allowed to create them, and with
``--acls`` also the services' ACLs. Both are idempotent: a second run changes
nothing. A deployment runs them before the services (helm's pre-install and
pre-upgrade jobs) and starts the services with ``CLEARWAY_MIGRATE_AT_START=false``
and ``CLEARWAY_CREATE_TOPICS_AT_START=false``, so the running pods hold only their
own role's and principal's credentials.

Each service registers its migration under the entry point group
``clearway.migrate`` (``transfer = "clearway.transfer.bootstrap:migrate_database"``,
a coroutine function taking the service's settings), named like its settings in
``clearway.settings``: the kit finds them without importing any service.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from importlib.metadata import entry_points
from typing import Any

from clearway.shared.crypto.service_login import provision_logins
from clearway.shared.crypto.settings import KeySettings
from clearway.shared.kafka import ensure_topics
from clearway.shared.kafka_acl import (
    ADMIN,
    Pattern,
    Resource,
    acl_admin,
    create_acls,
    platform_acls,
)
from clearway.shared.kafka_link import INTENTS_TOPIC, KafkaLink, TopicLayout, principal
from clearway.shared.settings import (
    PlatformSettings,
    ServiceSettings,
    SettingsError,
    kafka_login_from_env,
)
from clearway.shared.settings_doc import registered

__all__ = [
    "create_platform_topics",
    "migrate_services",
    "migrations",
    "platform_topics",
]

GROUP = "clearway.migrate"
Migrate = Callable[[Any], Awaitable[object]]


def migrations() -> dict[str, tuple[type[ServiceSettings], Migrate]]:
    """Each registered service's settings class and migration, by service name."""
    classes = {c.service: c for c in registered() if issubclass(c, ServiceSettings)}
    found: dict[str, tuple[type[ServiceSettings], Migrate]] = {}
    for ep in entry_points(group=GROUP):
        if ep.name not in classes:
            raise LookupError(f"{GROUP} entry point {ep.name!r} has no clearway.settings class")
        found[ep.name] = (classes[ep.name], ep.load())
    return dict(sorted(found.items()))


async def migrate_services(
    names: Sequence[str] = (), env: Mapping[str, str] | None = None
) -> list[str]:
    """Migrate ``names`` (default: every registered service) with the settings read from
    ``env`` (default ``os.environ``); returns the services migrated, in order.

    Only the database part of each service's settings is used: the job needs the admin
    DSN and each service's ``DB_LOGINS`` with its static passwords, or with rotated
    logins its ``DB_READER_PASSWORD`` and key store (HSM PIN: the KEK seals the
    passwords), not the service's other secrets, so production's refusal of missing
    service secrets does not apply here.
    Raises :class:`SettingsError` naming every bad variable of every service at once.
    """
    known = migrations()
    unknown = [n for n in names if n not in known]
    if unknown:
        raise LookupError(f"no migrations for {', '.join(unknown)}; known: {', '.join(known)}")
    chosen = list(names) or list(known)
    problems: dict[str, str] = {}
    ready: list[tuple[Any, Migrate]] = []
    for name in chosen:
        cls, migrate = known[name]
        try:
            ready.append((cls.from_env(env, production_checks=False), migrate))
        except SettingsError as e:
            problems |= e.problems
    if problems:
        raise SettingsError(problems)
    for settings, migrate in ready:
        await migrate(settings)
        if isinstance(settings, KeySettings) and settings.rotates_db_logins:
            await provision_logins(settings)
    return chosen


def platform_topics(prefix: str = "") -> list[str]:
    """Every topic of the platform under ``prefix``: the events topics, the intents topic
    and the dead-letter topic of every consumer group, as the ACL plan names them."""
    topics = {
        acl.name
        for acl in platform_acls(prefix)
        if acl.resource == Resource.TOPIC and acl.pattern == Pattern.LITERAL
    }
    return sorted(topics | {f"{prefix}{INTENTS_TOPIC}"})


async def create_platform_topics(
    link: KafkaLink, prefix: str, layout: TopicLayout, *, acls: bool = False
) -> list[str]:
    """Create the missing :func:`platform_topics` with ``layout`` over ``link`` and, with
    ``acls``, apply :func:`~clearway.shared.kafka_acl.platform_acls` (``link`` then logs
    in as a principal allowed to alter ACLs); returns the topics created now."""
    created = await ensure_topics(link, platform_topics(prefix), layout=layout)
    if acls:
        async with acl_admin(link) as admin:
            await create_acls(admin, platform_acls(prefix))
    return created


def migrate_main(argv: list[str] | None = None) -> int:
    """``clearway-migrate [SERVICE ...]``."""
    parser = argparse.ArgumentParser(
        prog="clearway-migrate",
        description="Apply the services' database migrations as the admin of"
        " CLEARWAY_DATABASE_URL (idempotent).",
    )
    parser.add_argument("services", nargs="*", help="services to migrate (default: all)")
    args = parser.parse_args(argv)
    try:
        done = asyncio.run(migrate_services(args.services))
    except SettingsError as e:
        print(f"clearway-migrate: invalid configuration\n{e}", file=sys.stderr)
        return 2
    except LookupError as e:
        print(f"clearway-migrate: {e}", file=sys.stderr)
        return 2
    print(f"clearway-migrate: {', '.join(done)} up to date")
    return 0


def topics_main(argv: list[str] | None = None) -> int:
    """``clearway-topics [--acls]``: the platform's topics (and ACLs) on the cluster of
    ``CLEARWAY_KAFKA_*``, logging in as ``CLEARWAY_ADMIN_KAFKA_USERNAME`` (default
    ``clearway-admin``) with ``CLEARWAY_ADMIN_KAFKA_PASSWORD``."""
    parser = argparse.ArgumentParser(
        prog="clearway-topics",
        description="Create the platform's topics with CLEARWAY_TOPIC_PARTITIONS,"
        " CLEARWAY_TOPIC_REPLICATION_FACTOR and CLEARWAY_TOPIC_MIN_INSYNC_REPLICAS"
        " (idempotent: existing topics are left as they are).",
    )
    parser.add_argument(
        "--acls", action="store_true", help="also apply every service principal's ACLs"
    )
    args = parser.parse_args(argv)
    try:
        platform = PlatformSettings.from_env()
    except SettingsError as e:
        print(f"clearway-topics: invalid configuration\n{e}", file=sys.stderr)
        return 2
    link = platform.kafka_link(kafka_login_from_env(ADMIN, os.environ))
    if link.sasl and link.login is None:
        print(
            "clearway-topics: CLEARWAY_ADMIN_KAFKA_PASSWORD is required with"
            f" {platform.kafka_security_protocol} (user: CLEARWAY_ADMIN_KAFKA_USERNAME,"
            f" default {principal(ADMIN)})",
            file=sys.stderr,
        )
        return 2
    created = asyncio.run(
        create_platform_topics(link, platform.topic_prefix, platform.topic_layout, acls=args.acls)
    )
    print(
        f"clearway-topics: {len(platform_topics(platform.topic_prefix))} topics present,"
        f" {len(created)} created now{' and ACLs applied' if args.acls else ''}"
    )
    return 0

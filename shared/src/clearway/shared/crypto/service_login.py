"""How a service's own connections log in (docs/design.md §9, ADR 0023, ADR 0025).

One object per database role a service connects as, the same in every service's
bootstrap: with ``DB_LOGINS=rotated`` it holds the :class:`RotatingLogin` (the
newest alternating login, unsealed with the service's KEK), otherwise the static
password's DSN (development). Pools, the outbox relay and any other connection the
service opens take their credentials from it::

    login = await open_service_login(settings, envelope, events, schema="vault")
    pool = await login.pool(schema="vault", max_size=10)
    relay = OutboxRelay(login.relay_dsn, "vault", settings.kafka)
    if login.rotates:
        tasks.every("db-login-rotation", settings.db_login_refresh_s, login.refresh)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

import asyncpg

from clearway.shared.crypto import store_credentials
from clearway.shared.crypto.db_credentials import (
    RotatingLogin,
    admin_connection,
    keep_login_current,
    open_rotating_login,
    rotate_if_due,
    scram_verifier,
)
from clearway.shared.crypto.envelope import Envelope
from clearway.shared.crypto.settings import KeySettings, open_envelope
from clearway.shared.db import create_pool, reader_role, service_dsn
from clearway.shared.event_writer import EventWriter

__all__ = ["ServiceLogin", "login_source", "open_service_login", "provision_logins"]


class ServiceLogin:
    """The credentials of one database role of a service: rotated or static."""

    def __init__(
        self,
        static_dsn: str,
        rotating: RotatingLogin | None = None,
        refresh: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._static, self.rotating, self._refresh = static_dsn, rotating, refresh

    @property
    def rotates(self) -> bool:
        """True when the role logs in with rotated passwords."""
        return self.rotating is not None

    def dsn(self) -> str:
        """The DSN of the current login (read it at each connect: it changes on rotation)."""
        return self._static if self.rotating is None else self.rotating.dsn()

    @property
    def relay_dsn(self) -> str | Callable[[], str]:
        """What a DSN-taking component such as ``OutboxRelay`` gets: with rotation the
        method :meth:`dsn` itself, called at each (re)connect."""
        return self._static if self.rotating is None else self.dsn

    @property
    def connect(self) -> Callable[..., Awaitable[asyncpg.Connection]] | None:
        """The ``connect=`` of a pool (``None``: ``asyncpg.connect`` with the static DSN)."""
        return None if self.rotating is None else self.rotating.connect

    def watch(self, pool: asyncpg.Pool) -> asyncpg.Pool:
        """Recycle ``pool``'s idle connections when the login changes; returns it."""
        if self.rotating is not None:
            self.rotating.watch(pool)
        return pool

    async def pool(
        self, *, schema: str, min_size: int = 1, max_size: int = 10, session_reset: bool = True
    ) -> asyncpg.Pool:
        """:func:`~clearway.shared.db.create_pool` logging in as the current login."""
        return self.watch(
            await create_pool(
                self.dsn(),
                schema=schema,
                min_size=min_size,
                max_size=max_size,
                connect=self.connect,
                session_reset=session_reset,
            )
        )

    async def refresh(self) -> None:
        """The Supervisor job (every ``DB_LOGIN_REFRESH_S``): the scheduled rotation, and
        picking up a login another replica or ``clearway-keys`` rotated."""
        if self._refresh is not None:
            await self._refresh()


def login_source(settings: KeySettings, database_url: str | None = None) -> tuple[str, bool]:
    """Where a service reads its rotated logins, and whether it rotates them itself:
    as the admin of ``database_url`` (default ``CLEARWAY_DATABASE_URL``), rotating when
    due, if it migrates at start; otherwise as its reader login, ``clearway-migrate``
    rotating (ADR 0044)."""
    url = database_url or settings.platform.database_url
    if not settings.reads_db_logins:
        return url, True
    assert settings.db_reader_password is not None  # the settings require it
    password = settings.db_reader_password.get_secret_value()
    return service_dsn(url, settings.service, password, login=reader_role(settings.service)), False


async def open_service_login(
    settings: KeySettings,
    envelope: Envelope,
    events: EventWriter,
    *,
    schema: str,
    role: str | None = None,
    static_password: str | None = None,
    database_url: str | None = None,
) -> ServiceLogin:
    """The login of role ``clearway_<role>`` (default: the service's own) on ``schema``,
    after its migrations. Rotated: rotates when due, then unseals the newest login;
    static: ``static_password`` (default ``DB_PASSWORD``). ``database_url``: the admin
    URL of another database than the platform's (its logins are sealed there)."""
    role = role or settings.service
    admin = database_url or settings.platform.database_url
    if not settings.rotates_db_logins:
        password = static_password or settings.db_password.get_secret_value()
        return ServiceLogin(service_dsn(admin, role, password))
    interval = timedelta(seconds=settings.db_login_rotation_s)
    lifetime = timedelta(seconds=settings.db_login_lifetime_s)
    source, rotates = login_source(settings, admin)
    rotating = await open_rotating_login(
        source,
        envelope,
        events,
        service=role,
        schema=schema,
        interval=interval,
        lifetime=lifetime,
        rotate=rotates,
    )

    async def refresh() -> None:
        await keep_login_current(
            rotating, envelope, events, schema=schema, interval=interval, lifetime=lifetime
        )

    return ServiceLogin("", rotating, refresh)  # never falls back to a static DSN


async def provision_logins(settings: KeySettings) -> None:
    """``clearway-migrate``'s part of rotated logins, as the admin after the service's
    migrations: the reader login with ``DB_READER_PASSWORD`` (when set), then each of
    :attr:`~KeySettings.db_roles` rotated when due (the first time: its first password),
    sealed with the service's KEK, so the service finds a login when it starts."""
    schema = settings.service
    envelope = open_envelope(settings)
    events = EventWriter(settings.service, topic_prefix=settings.platform.topic_prefix)
    conn = await admin_connection(settings.platform.database_url, schema)
    try:
        if settings.db_reader_password is not None:
            verifier = scram_verifier(settings.db_reader_password.get_secret_value())
            await store_credentials.ensure_reader(
                conn, schema, reader_role(settings.service), verifier
            )
        for role in settings.db_roles:
            await rotate_if_due(
                conn,
                envelope,
                events,
                service=role,
                interval=timedelta(seconds=settings.db_login_rotation_s),
                lifetime=timedelta(seconds=settings.db_login_lifetime_s),
            )
    finally:
        await conn.close()
        envelope.provider.close()

"""Rotated database logins of a service (docs/design.md §9, ADR 0016).

Postgres keeps one password per role, so the overlap between an old and a new
password comes from two login roles per service, ``clearway_<service>_a`` and
``_b``, both members of the ``NOLOGIN`` role ``clearway_<service>`` that holds the
grants (see :func:`clearway.shared.db.migrate` with ``role_password=None``).
A rotation gives the login *not* used last a fresh random password with
``VALID UNTIL now + lifetime``; the other login keeps logging in until its own
expiry, one rotation interval later than the new one was set. Sessions opened
before an expiry are not cut (Postgres checks ``VALID UNTIL`` at login only).

The password never sits in an environment file or in clear in the database: the
rotation stores it sealed with the service's KEK (:class:`Envelope`, bound to the
login's name) in ``db_credentials``, which only the admin role can read, and
sends Postgres a SCRAM-SHA-256 verifier (RFC 5802, RFC 7677), never the password.
Every replica unseals the newest login with the HSM and its pools open new
connections with it (:meth:`RotatingLogin.connect`); connections already open stay.
Each rotation emits an audited ``platform.db_credential_rotated`` event.

Who rotates (ADR 0044): a service that migrates at start rotates its own logins as
the admin. One that does not (a deployment's service pods hold no admin login)
reads the sealed passwords as its *reader* login, ``clearway_<service>_reader``,
which may select ``db_credentials`` and nothing else (ciphertext without the
service's KEK), and ``clearway-migrate``, run as a job, rotates when due.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from clearway.shared.actor import Actor
from clearway.shared.crypto import store_credentials as store
from clearway.shared.crypto.envelope import Context, Envelope
from clearway.shared.db import ident, init_connection, login_roles, role_name, service_dsn
from clearway.shared.event_writer import EventWriter

__all__ = [
    "DbLogin",
    "NoDbLogin",
    "RotatingLogin",
    "admin_connection",
    "current_login",
    "keep_login_current",
    "open_rotating_login",
    "rotate_if_due",
    "rotate_login",
    "scram_verifier",
]

EVENT = "platform.db_credential_rotated"
TABLE = "db_credentials"
SCRAM_ITERATIONS = 4096  # RFC 7677 §4: the minimum; Postgres' own default


class NoDbLogin(LookupError):
    """No rotated login exists yet for a service (rotate first)."""


@dataclass(frozen=True)
class DbLogin:
    """One login role of a service with its current password."""

    login: str
    password: str = field(repr=False)
    valid_until: datetime
    generation: int


def scram_verifier(
    password: str, *, salt: bytes | None = None, iterations: int = SCRAM_ITERATIONS
) -> str:
    """The ``SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`` verifier Postgres
    stores for ``password`` (RFC 5802 §3; the password is ASCII, so SASLprep is identity)."""
    salt = salt if salt is not None else os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.digest(salted, b"Server Key", "sha256")
    b64 = base64.b64encode
    return (
        f"SCRAM-SHA-256${iterations}:{b64(salt).decode()}"
        f"${b64(stored_key).decode()}:{b64(server_key).decode()}"
    )


def _context(service: str, login: str) -> Context:
    return Context(service, TABLE, "sealed", login)


def _rfc3339(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


async def rotate_login(
    conn: asyncpg.Connection,
    envelope: Envelope,
    events: EventWriter,
    *,
    service: str,
    lifetime: timedelta,
    reason: str,
    actor: Actor | None = None,
) -> DbLogin:
    """Give the login not used last a fresh password valid for ``lifetime``; returns it.

    ``conn`` is an admin connection on the service's schema. The password change,
    its sealed copy and the audited event commit together.
    """
    if not reason.strip():
        raise ValueError("a database login rotation needs a reason")
    first, second = login_roles(service)
    async with conn.transaction():
        await store.lock(conn, service)
        last = await store.newest(conn, (first, second))
        login = first if last is None or last["login"] == second else second
        generation = 1 if last is None else last["generation"] + 1
        password = secrets.token_urlsafe(32)  # 256 bits
        valid_until = (datetime.now(UTC) + lifetime).replace(microsecond=0)
        await store.set_password(conn, login, scram_verifier(password), valid_until)
        sealed = envelope.seal(password.encode(), _context(service, login))
        await store.save(conn, login, sealed, valid_until, generation)
        await events.emit(
            conn,
            EVENT,
            subject=f"db-login:{role_name(service)}",
            version=generation,
            actor=actor,
            data={
                "role": role_name(service),
                "login": login,
                "generation": generation,
                "valid_until": _rfc3339(valid_until),
                "reason": reason,
                "at": _rfc3339(datetime.now(UTC)),
            },
        )
    return DbLogin(login, password, valid_until, generation)


async def rotate_if_due(
    conn: asyncpg.Connection,
    envelope: Envelope,
    events: EventWriter,
    *,
    service: str,
    interval: timedelta,
    lifetime: timedelta,
) -> DbLogin | None:
    """The scheduled rotation: a new password once the newest one is ``interval`` old
    (or none exists). Replicas racing here rotate once: the check repeats under the lock."""
    last = await store.newest(conn, login_roles(service))
    if last is not None and datetime.now(UTC) - last["rotated_at"] < interval:
        return None
    async with conn.transaction():
        await store.lock(conn, service)
        last = await store.newest(conn, login_roles(service))
        if last is not None and datetime.now(UTC) - last["rotated_at"] < interval:
            return None  # another replica rotated first
        return await rotate_login(
            conn, envelope, events, service=service, lifetime=lifetime, reason="scheduled rotation"
        )


async def current_login(conn: asyncpg.Connection, envelope: Envelope, service: str) -> DbLogin:
    """The newest login of ``service`` with its unsealed password."""
    row = await store.newest(conn, login_roles(service))
    if row is None:
        raise NoDbLogin(f"{role_name(service)}: no rotated login yet")
    password = envelope.open(bytes(row["sealed"]), _context(service, row["login"]))
    return DbLogin(row["login"], password.decode(), row["valid_until"], row["generation"])


class RotatingLogin:
    """The login a service's pools use for new connections; :meth:`update` swaps it."""

    def __init__(
        self, admin_dsn: str, service: str, login: DbLogin, *, rotates: bool = True
    ) -> None:
        #: the DSN the logins are read (and, when ``rotates``, rotated) with: the
        #: admin's, or the reader login's
        self.admin_dsn, self.service, self._login = admin_dsn, service, login
        self.rotates = rotates
        self._pools: list[asyncpg.Pool] = []

    @property
    def current(self) -> DbLogin:
        return self._login

    def watch(self, pool: asyncpg.Pool) -> asyncpg.Pool:
        """Recycle ``pool``'s connections whenever the login changes; returns it."""
        self._pools.append(pool)
        return pool

    async def update(self, login: DbLogin) -> None:
        """Use ``login`` from the next new connection on. Watched pools close each
        connection once it is idle again (a query in flight finishes), so no session
        lingers on a login that is about to expire."""
        changed = login.generation != self._login.generation
        self._login = login
        if changed:
            for pool in self._pools:
                await pool.expire_connections()

    def dsn(self) -> str:
        """The current login as a DSN, for code that connects with a DSN string (pass the
        method itself where a callable is taken: ``OutboxRelay(login.dsn, …)``)."""
        c = self._login
        return service_dsn(self.admin_dsn, self.service, c.password, login=c.login)

    async def connect(self, *_dsn: Any, **kwargs: Any) -> asyncpg.Connection:
        """``asyncpg.connect`` with the current login: the ``connect=`` of a pool
        (:func:`clearway.shared.db.create_pool`), whose own DSN is ignored."""
        conn: asyncpg.Connection = await asyncpg.connect(self.dsn(), **kwargs)
        return conn


async def admin_connection(admin_dsn: str, schema: str) -> asyncpg.Connection:
    """An admin connection on ``schema`` with the kit's json codecs (for the outbox)."""
    conn: asyncpg.Connection = await asyncpg.connect(
        admin_dsn, server_settings={"search_path": ident(schema)[1:-1]}
    )
    await init_connection(conn)
    return conn


async def open_rotating_login(
    admin_dsn: str,
    envelope: Envelope,
    events: EventWriter,
    *,
    service: str,
    schema: str,
    interval: timedelta,
    lifetime: timedelta,
    rotate: bool = True,
) -> RotatingLogin:
    """At start (after :func:`~clearway.shared.db.migrate`): rotate if due, then the
    newest login for the service's pools. ``rotate=False``: ``admin_dsn`` is the
    reader login's, which only reads the newest login (a job rotates)."""
    conn = await admin_connection(admin_dsn, schema)
    try:
        if rotate:
            await rotate_if_due(
                conn, envelope, events, service=service, interval=interval, lifetime=lifetime
            )
        current = await current_login(conn, envelope, service)
        return RotatingLogin(admin_dsn, service, current, rotates=rotate)
    finally:
        await conn.close()


async def keep_login_current(
    login: RotatingLogin,
    envelope: Envelope,
    events: EventWriter,
    *,
    schema: str,
    interval: timedelta,
    lifetime: timedelta,
) -> None:
    """The periodic job of a service's Supervisor: the scheduled rotation (unless a job
    rotates, ``login.rotates`` false), and picking up a login another replica,
    ``clearway-migrate`` or ``clearway-keys <svc> db-rotate`` rotated."""
    conn = await admin_connection(login.admin_dsn, schema)
    try:
        if login.rotates:
            await rotate_if_due(
                conn,
                envelope,
                events,
                service=login.service,
                interval=interval,
                lifetime=lifetime,
            )
        await login.update(await current_login(conn, envelope, login.service))
    finally:
        await conn.close()

"""Server-side sessions (ADR 0045, ADR 0049): the browser holds only a random session id
in an ``HttpOnly``, ``SameSite=Lax`` cookie (``Secure`` over https); the console's own
Postgres schema holds the session under the SHA-256 of that id, so sessions survive a
restart and are shared by every console process, and a copied row is no cookie.

What a session carries (the user's access token, the OAuth ``state`` and PKCE verifier of
a pending sign-in, RFC 7636; the CSRF token) is sealed with the kit's envelope under the
console's KEK, bound to the row's id hash (a blob moved to another row does not open).

A session is *pending* from the sign-in redirect until the callback and *signed in*
afterwards, under a new id (no session fixation); the callback consumes the pending
row, so a sign-in completes once. A signed-in session ends at the user's token's expiry
or after ``session_ttl_s``, whichever is first: the database compares ``expires_at``
on every read. At most ``max_sessions`` signed-in and a quarter as many pending ones are
kept (the oldest go first).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg

from clearway.console import store
from clearway.shared.crypto import Context, Envelope, RecordUnreadable

COOKIE = "cw_console"
#: a pending sign-in must come back within this many seconds
PENDING_S = 300
#: longest session id a cookie may present (token_urlsafe(32) is 43 characters)
MAX_ID_CHARS = 64


@dataclass
class Session:
    id: str = field(repr=False)
    csrf: str = field(repr=False)
    expires_at: float
    # pending sign-in
    state: str | None = field(default=None, repr=False)
    verifier: str | None = field(default=None, repr=False)
    next_path: str = "/"
    # signed in
    subject: str | None = None
    tenant: str | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)
    token: str | None = field(default=None, repr=False)

    @property
    def signed_in(self) -> bool:
        return self.token is not None

    def live(self, now: float | None = None) -> bool:
        return (now or time.time()) < self.expires_at

    def csrf_ok(self, presented: str | None) -> bool:
        """The form's token is this session's (constant-time comparison)."""
        return presented is not None and hmac.compare_digest(presented, self.csrf)

    def sealed_fields(self) -> bytes:
        doc = {
            "csrf": self.csrf,
            "state": self.state,
            "verifier": self.verifier,
            "next_path": self.next_path,
            "subject": self.subject,
            "tenant": self.tenant,
            "scopes": sorted(self.scopes),
            "token": self.token,
        }
        return json.dumps(doc, separators=(",", ":")).encode()


def id_hash(session_id: str) -> bytes:
    """What the database holds of a session id: SHA-256 of the random id (256 bits of
    entropy, so no salt or slow hash is needed to keep it from being reversed)."""
    return hashlib.sha256(session_id.encode()).digest()


def _context(hashed: bytes) -> Context:
    return Context("console", "sessions", "sealed", hashed.hex())


class Sessions:
    """The console's sessions in its Postgres schema, sealed by ``envelope``."""

    def __init__(self, pool: asyncpg.Pool, envelope: Envelope, max_sessions: int) -> None:
        self.pool = pool
        self.envelope = envelope
        self._max = max_sessions
        self._max_pending = max(1, max_sessions // 4)

    async def _add(self, session: Session) -> Session:
        hashed = id_hash(session.id)
        sealed = self.envelope.seal(session.sealed_fields(), _context(hashed))
        async with self.pool.acquire() as conn:
            await store.insert_session(
                conn,
                hashed,
                pending=not session.signed_in,
                sealed=sealed,
                expires_at=datetime.fromtimestamp(session.expires_at, UTC),
                keep=self._max if session.signed_in else self._max_pending,
            )
        return session

    async def pending(self, state: str, verifier: str, next_path: str) -> Session:
        return await self._add(
            Session(
                id=secrets.token_urlsafe(32),
                csrf=secrets.token_urlsafe(32),
                expires_at=time.time() + PENDING_S,
                state=state,
                verifier=verifier,
                next_path=next_path,
            )
        )

    async def sign_in(
        self,
        pending: Session,
        *,
        subject: str,
        tenant: str,
        scopes: frozenset[str],
        token: str,
        expires_at: float,
    ) -> Session | None:
        """Replace the pending session by a signed-in one under a fresh id and CSRF token;
        ``None`` when the pending one was consumed meanwhile (a second callback)."""
        if not await self.drop(pending.id):
            return None
        return await self._add(
            Session(
                id=secrets.token_urlsafe(32),
                csrf=secrets.token_urlsafe(32),
                expires_at=expires_at,
                subject=subject,
                tenant=tenant,
                scopes=scopes,
                token=token,
            )
        )

    async def get(self, session_id: str | None) -> Session | None:
        """The live session of this id, or None (unknown, expired, or unreadable)."""
        if not session_id or len(session_id) > MAX_ID_CHARS:
            return None
        hashed = id_hash(session_id)
        async with self.pool.acquire() as conn:
            row = await store.get_session(conn, hashed)
        if row is None:
            return None
        try:
            doc = json.loads(self.envelope.open(bytes(row["sealed"]), _context(hashed)))
        except RecordUnreadable:
            return None
        return Session(
            id=session_id,
            csrf=doc["csrf"],
            expires_at=row["expires_at"].timestamp(),
            state=doc["state"],
            verifier=doc["verifier"],
            next_path=doc["next_path"],
            subject=doc["subject"],
            tenant=doc["tenant"],
            scopes=frozenset(doc["scopes"]),
            token=doc["token"],
        )

    async def drop(self, session_id: str) -> bool:
        """End a session; False when there was none."""
        async with self.pool.acquire() as conn:
            return await store.delete_session(conn, id_hash(session_id))

    async def purge(self) -> int:
        """Delete every expired session (a periodic job); returns how many."""
        async with self.pool.acquire() as conn:
            return await store.purge_sessions(conn)

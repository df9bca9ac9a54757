"""Server-side sessions (ADR 0045): the browser holds only a random session id in an
``HttpOnly``, ``SameSite=Lax`` cookie (``Secure`` over https); the user's access token,
the PKCE verifier and the CSRF token stay in this process's memory.

A session is *pending* from the sign-in redirect until the callback (it holds the OAuth
``state`` and the PKCE verifier, RFC 7636) and *signed in* afterwards, under a new id
(no session fixation). A signed-in session ends at the user's token's expiry or after
``session_ttl_s``, whichever is first. Memory holds at most ``max_sessions``; a restart
signs everyone out (the next page signs in again).
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field

COOKIE = "cw_console"
#: a pending sign-in must come back within this many seconds
PENDING_S = 300


@dataclass
class Session:
    id: str
    csrf: str
    expires_at: float
    # pending sign-in
    state: str | None = None
    verifier: str | None = None
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


class Sessions:
    """The live sessions of this process, oldest first. Pending sign-ins (anyone can
    start one) are bounded apart, so a flood of them never evicts a signed-in user."""

    def __init__(self, max_sessions: int) -> None:
        self._max = max_sessions
        self._max_pending = max(1, max_sessions // 4)
        self._by_id: OrderedDict[str, Session] = OrderedDict()
        self._pending: OrderedDict[str, Session] = OrderedDict()

    def _add(self, session: Session) -> Session:
        held = self._by_id if session.signed_in else self._pending
        limit = self._max if session.signed_in else self._max_pending
        held[session.id] = session
        while len(held) > limit:
            held.popitem(last=False)
        return session

    def pending(self, state: str, verifier: str, next_path: str) -> Session:
        return self._add(
            Session(
                id=secrets.token_urlsafe(32),
                csrf=secrets.token_urlsafe(32),
                expires_at=time.time() + PENDING_S,
                state=state,
                verifier=verifier,
                next_path=next_path,
            )
        )

    def sign_in(
        self,
        pending: Session,
        *,
        subject: str,
        tenant: str,
        scopes: frozenset[str],
        token: str,
        expires_at: float,
    ) -> Session:
        """Replace the pending session by a signed-in one under a fresh id and CSRF token."""
        self.drop(pending.id)
        return self._add(
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

    def get(self, session_id: str | None) -> Session | None:
        """The live session of this id; an expired one is dropped."""
        if not session_id:
            return None
        session = self._by_id.get(session_id) or self._pending.get(session_id)
        if session is None:
            return None
        if not session.live():
            self.drop(session_id)
            return None
        return session

    def drop(self, session_id: str) -> None:
        self._by_id.pop(session_id, None)
        self._pending.pop(session_id, None)

    def purge(self) -> int:
        """Drop every expired session (a periodic job); returns how many."""
        now = time.time()
        count = 0
        for held in (self._by_id, self._pending):
            dead = [k for k, s in held.items() if not s.live(now)]
            for k in dead:
                del held[k]
            count += len(dead)
        return count

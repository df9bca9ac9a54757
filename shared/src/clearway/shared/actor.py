"""Who did something: the one way every service names the actor of an event.

An access token says whom it is about (``sub``), which client holds it
(``client_id``) and, after an OAuth 2.0 Token Exchange, who acts for the
subject: RFC 8693 §4.1 ``act`` claims, nested so that the outermost one is the
current actor and each inner one the actor before it. Every event that records
an actor carries :meth:`Actor.as_data` (``subject``, ``client_id``,
``delegation`` outermost first), so the audit trail reads every service the
same way (docs/design.md §3, §8).

Pure: importable from domain modules (no web, database or pydantic imports).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

#: A longer ``act`` chain is cut here: a verified token never needs more, and an
#: unbounded walk over attacker-shaped JSON is not worth the risk.
MAX_DELEGATION = 10


class HasClaims(Protocol):
    """What :meth:`Actor.from_principal` reads; ``clearway.shared.auth.Principal`` has it."""

    @property
    def subject(self) -> str: ...

    @property
    def client_id(self) -> str: ...

    @property
    def claims(self) -> Mapping[str, Any]: ...


@dataclass(frozen=True)
class Actor:
    """The token's subject, its client, and the delegation chain (outermost first).

    ``delegation[0]`` is the party acting right now when the subject delegated
    (RFC 8693 ``act.sub``), ``delegation[1]`` the one that acted before it
    (``act.act.sub``), and so on. Without delegation the subject acts itself.
    """

    subject: str
    client_id: str | None = None
    delegation: tuple[str, ...] = ()

    @classmethod
    def from_principal(cls, principal: HasClaims) -> Actor:
        """The actor of a verified access token (its ``act`` claims walked, RFC 8693 §4.1)."""
        return cls(principal.subject, principal.client_id, delegation_of(principal.claims))

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any]) -> Actor:
        """The actor of a token's claims set (``sub``, ``client_id``, ``act``)."""
        client = claims.get("client_id")
        return cls(
            str(claims.get("sub", "")),
            str(client) if client is not None else None,
            delegation_of(claims),
        )

    @classmethod
    def system(cls, name: str) -> Actor:
        """The platform itself acting (a job, a seed, a timer): subject ``system:<name>``."""
        return cls(f"system:{name}")

    @property
    def acting(self) -> str:
        """Who acted right now: the outermost delegate, else the subject."""
        return self.delegation[0] if self.delegation else self.subject

    def as_data(self) -> dict[str, Any]:
        """The ``actor`` record every event schema declares."""
        return {
            "subject": self.subject,
            "client_id": self.client_id,
            "delegation": list(self.delegation),
        }

    @classmethod
    def from_data(cls, data: Any) -> Actor | None:
        """Read an ``actor`` record back (``None`` when there is none or it is unusable)."""
        if not isinstance(data, Mapping) or not data.get("subject"):
            return None
        client = data.get("client_id")
        chain = data.get("delegation")
        return cls(
            str(data["subject"]),
            str(client) if client else None,
            tuple(str(d) for d in chain) if isinstance(chain, list | tuple) else (),
        )


def delegation_of(claims: Mapping[str, Any]) -> tuple[str, ...]:
    """The subjects of the nested RFC 8693 ``act`` claims, outermost (current actor) first.

    The walk stops at an ``act`` that is not an object or names no ``sub``, and
    after :data:`MAX_DELEGATION` links.
    """
    chain: list[str] = []
    act = claims.get("act")
    while isinstance(act, Mapping) and len(chain) < MAX_DELEGATION:
        sub = act.get("sub")
        if not isinstance(sub, str) or not sub:
            break
        chain.append(sub)
        act = act.get("act")
    return tuple(chain)

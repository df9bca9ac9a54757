"""Who is calling: the verified content of an access token, and the two ways a
token can be refused (401 invalid, 403 insufficient scope).

Its own module so that the verifier and the revocation set both depend on it
without depending on each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any


class InvalidToken(Exception):
    """The token is missing, malformed, badly signed, expired, not for us, or revoked (401)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class InsufficientScope(Exception):
    """The token is valid but lacks scopes the operation needs (403)."""

    def __init__(self, missing: set[str]) -> None:
        super().__init__(f"missing scope(s): {' '.join(sorted(missing))}")
        self.missing = missing


#: The platform operator's own tenant: only its clients may hold platform scopes
#: (``platform:*``, docs/design.md §7), which act on any tenant.
PLATFORM_TENANT = "tnt_platform"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the verified content of an access token."""

    subject: str
    client_id: str
    tenant: str | None
    scopes: frozenset[str]
    consent_id: str | None
    jti: str
    expires_at: datetime
    issued_at: datetime
    authorization_details: tuple[Mapping[str, Any], ...] = field(
        default=(), hash=False, compare=False
    )
    claims: Mapping[str, Any] = field(
        default_factory=lambda: MappingProxyType({}), hash=False, compare=False
    )

    def require_scopes(self, *scopes: str) -> None:
        """Raise :class:`InsufficientScope` naming every one of ``scopes`` the token lacks."""
        missing = set(scopes) - self.scopes
        if missing:
            raise InsufficientScope(missing)

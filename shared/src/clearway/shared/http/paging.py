"""One list shape for every Clearway collection, with cursors a client cannot forge.

A list answers ``{"data": [...], "next_cursor": str | null, "has_more": bool}``
(docs/design.md §13). ``limit`` is 1-100 (default 20) on every route; ``cursor``
is the ``next_cursor`` of the previous page.

A cursor is ``base64url(version ‖ position ‖ HMAC-SHA256)`` (RFC 4648 §5, RFC
2104). The MAC covers the position *and* what the page is bound to: the
tenant, the route and the filters of the request that issued it. So a client
cannot edit the position, cannot carry a cursor to another route or filter,
and cannot replay another tenant's cursor in its own range, even though it
can read the position (timestamps and ids it already saw in ``data``): the
cursor is authenticated, not encrypted. Anything that fails the check is a
422 naming ``query.cursor``.

The key: the service setting ``CLEARWAY_<SVC>_CURSOR_KEY`` (base64, at least
32 bytes), handed to ``create_app`` by the service's bootstrap; production
refuses to start without it. Unset in development, each process draws a random
key (:func:`cursor_key`) and logs a warning: cursors then stop working after a
restart and across replicas (the client gets a 422 and starts from the first
page again). There is deliberately no built-in default key: one in the source
would let anyone mint cursors.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, TypeVar

from fastapi import Query, Request

from clearway.shared.http.problems import invalid_field

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
MAX_CURSOR_CHARS = 512

#: One position component: the keyset columns of the last row (e.g. ``(created_at, id)``).
Key = str | int | datetime
Position = tuple[Key, ...]

_VERSION = b"\x01"
_MAC_BYTES = 16  # HMAC-SHA256 truncated to 128 bits (RFC 2104 §5 allows ≥ half the output)
_MIN_KEY_BYTES = 32

logger = logging.getLogger(__name__)
T = TypeVar("T")


class CursorError(ValueError):
    """The cursor was not issued by us for this tenant, route and filter set."""


def cursor_key(service: str, configured: bytes | None = None) -> bytes:
    """The configured cursor MAC key, or a random per-process one (with a warning).

    Raises ``ValueError`` for a configured key shorter than 32 bytes (a short
    key would weaken every cursor).
    """
    if configured is None:
        logger.warning(
            "%s: no cursor key configured; cursors use a random per-process key and do not"
            " survive a restart",
            service,
        )
        return secrets.token_bytes(_MIN_KEY_BYTES)
    if len(configured) < _MIN_KEY_BYTES:
        raise ValueError(f"the cursor key must be at least {_MIN_KEY_BYTES} random bytes")
    return configured


class CursorCodec:
    """Issues and checks cursors with one MAC key (see the module docstring)."""

    def __init__(self, key: bytes) -> None:
        if len(key) < _MIN_KEY_BYTES:
            raise ValueError(f"a cursor key needs at least {_MIN_KEY_BYTES} bytes")
        self._key = key

    def encode(
        self, position: Position, *, tenant: str, scope: str, filters: Mapping[str, Any] | None
    ) -> str:
        """The cursor for the page after ``position`` in ``scope`` for ``tenant``."""
        body = json.dumps([_pack(k) for k in position], separators=(",", ":")).encode()
        mac = self._mac(body, tenant, scope, filters)
        return base64.urlsafe_b64encode(_VERSION + body + mac).decode().rstrip("=")

    def decode(
        self, cursor: str, *, tenant: str, scope: str, filters: Mapping[str, Any] | None
    ) -> Position:
        """The position a cursor stands for; ``CursorError`` when it is not one we issued
        for exactly this tenant, scope and filter set."""
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        except (binascii.Error, ValueError):
            raise CursorError("not base64url") from None
        if len(raw) <= 1 + _MAC_BYTES or raw[:1] != _VERSION:
            raise CursorError("unknown cursor format")
        body, mac = raw[1:-_MAC_BYTES], raw[-_MAC_BYTES:]
        if not hmac.compare_digest(mac, self._mac(body, tenant, scope, filters)):
            raise CursorError("not issued for this tenant, route and filters")
        try:  # authentic, so well-formed unless our own encoder changed
            return tuple(_unpack(k) for k in json.loads(body))
        except (ValueError, TypeError, KeyError) as e:
            raise CursorError("unreadable position") from e

    def _mac(
        self, body: bytes, tenant: str, scope: str, filters: Mapping[str, Any] | None
    ) -> bytes:
        # Length-prefixed JSON of every bound part: no two different bindings
        # serialise to the same bytes (no ambiguity between "a|b" and "a", "b").
        bound = json.dumps(
            [tenant, scope, _canonical(filters or {})], separators=(",", ":"), default=str
        ).encode()
        msg = len(bound).to_bytes(4, "big") + bound + body
        return hmac.new(self._key, msg, hashlib.sha256).digest()[:_MAC_BYTES]


@dataclass(frozen=True)
class PageRequest:
    """What a list route was asked for: ``limit`` and the cursor, bound to its route.

    Fetch ``fetch_limit`` rows after ``after(...)`` and hand them to ``page(...)``:
    the one extra row tells whether there is a next page without a second query.
    """

    limit: int
    cursor: str | None
    scope: str
    codec: CursorCodec

    @property
    def fetch_limit(self) -> int:
        """Rows to fetch: one more than the page holds."""
        return self.limit + 1

    def after(self, tenant: str, filters: Mapping[str, Any] | None = None) -> Position | None:
        """The position to continue after, or ``None`` for the first page.

        Raises a 422 validation problem naming ``query.cursor`` when the cursor is
        tampered, truncated, from another tenant, route or filter set.
        """
        if self.cursor is None:
            return None
        try:
            return self.codec.decode(self.cursor, tenant=tenant, scope=self.scope, filters=filters)
        except CursorError:
            raise invalid_field(
                ("query", "cursor"),
                "is not a cursor issued for this list; start again without it",
                "cursor_invalid",
            ) from None

    def page(
        self,
        rows: Sequence[T],
        *,
        tenant: str,
        position: Callable[[T], Position],
        render: Callable[[T], Any],
        filters: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The list body for ``rows`` (fetched with ``fetch_limit``)."""
        shown = rows[: self.limit]
        has_more = len(rows) > self.limit
        nxt = (
            self.codec.encode(position(shown[-1]), tenant=tenant, scope=self.scope, filters=filters)
            if has_more and shown
            else None
        )
        return list_body((render(r) for r in shown), next_cursor=nxt)


def list_body(items: Iterable[Any], *, next_cursor: str | None = None) -> dict[str, Any]:
    """The one list shape; an unpaged list (everything fits) is ``list_body(items)``."""
    return {"data": list(items), "next_cursor": next_cursor, "has_more": next_cursor is not None}


async def page_request(
    request: Request,
    limit: Annotated[
        int, Query(ge=1, le=MAX_LIMIT, description="Items per page (1-100).")
    ] = DEFAULT_LIMIT,
    cursor: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=MAX_CURSOR_CHARS,
            description="The next_cursor of the previous page.",
        ),
    ] = None,
) -> PageRequest:
    """FastAPI dependency: ``page: PageRequest = Depends(page_request)``.

    The scope a cursor is bound to is the route's path template, so a cursor of
    ``/v1/messages`` means nothing to ``/v1/audit/records``.
    """
    route = request.scope.get("route")
    scope = getattr(route, "path", None) or request.url.path
    codec: CursorCodec = request.app.state.cursors
    return PageRequest(limit=limit, cursor=cursor, scope=scope, codec=codec)


def _pack(key: Key) -> Any:
    if isinstance(key, datetime):
        return {"t": key.isoformat()}
    if isinstance(key, (str, int)) and not isinstance(key, bool):
        return key
    raise TypeError(f"cursor positions hold str, int or datetime, not {type(key).__name__}")


def _unpack(value: Any) -> Key:
    if isinstance(value, dict):
        return datetime.fromisoformat(value["t"])
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return value
    raise TypeError("bad position component")


def _canonical(filters: Mapping[str, Any]) -> list[list[Any]]:
    # Unset filters are left out, so ``?status=`` absent and ``None`` bind alike.
    return sorted([str(k), _pack_filter(v)] for k, v in filters.items() if v is not None)


def _pack_filter(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (list, tuple, set, frozenset)):
        return sorted(str(v) for v in value)
    return value if isinstance(value, (str, int, float, bool)) else str(value)

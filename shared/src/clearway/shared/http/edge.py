"""The HTTP edge: one pure ASGI middleware in front of every Clearway route.

Per request it binds the correlation id, resolves the ``Clearway-Version``,
reads the body against the size limit and refuses control characters
(``hygiene``) and card numbers (``card_guard``), stamps the correlation id and
version (and any deprecation signals) on the response, answers 503 while the
service started degraded waits for its database (``startup``), turns a crash into a
problem (503 when a dependency is down, else 500), and records latency and
deprecated calls. It is plain ASGI rather than ``BaseHTTPMiddleware``: no extra
task per request, and context variables set here are the ones the route sees.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Collection
from typing import Any

from opentelemetry import trace
from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from clearway.shared.context import correlation_id_var, new_correlation_id, tenant_var
from clearway.shared.deprecations import DeprecationLog
from clearway.shared.http.card_guard import card_number_field, card_number_problem
from clearway.shared.http.hygiene import (
    DEFAULT_MAX_BODY_BYTES,
    body_control_field,
    control_character_problem,
    header_control_field,
    path_control_field,
    query_control_field,
    read_body,
    replay,
)
from clearway.shared.http.problems import CORRELATION_HEADER, problem_for
from clearway.shared.http.startup import Startup
from clearway.shared.http.versioning import VERSION_HEADER, ApiVersions
from clearway.shared.metrics import DEPRECATED_CALLS_TOTAL, HTTP_REQUEST_DURATION_SECONDS
from clearway.shared.versions import VERSION_CLAIM

SPAN_ATTRIBUTE = "clearway.correlation_id"
UNMATCHED_ROUTE = "unmatched"

_CORRELATION_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

logger = logging.getLogger(__name__)


def accept_correlation_id(value: str | None) -> str:
    """The caller's correlation id when it is well formed, otherwise a fresh one.

    Anything else is replaced rather than trusted: it ends up in logs, spans and
    events, so it must not carry markup, newlines or unbounded length.
    """
    if value is not None and _CORRELATION_ID.fullmatch(value):
        return value
    return new_correlation_id()


#: headers a route may set itself (an operation deprecated on its own, RFC 9745)
_ROUTE_FIRST = frozenset({"Deprecation", "Sunset"})

class EdgeMiddleware:
    """Correlation, versioning, input hygiene, error boundary and request metrics for
    one service; ``max_body_bytes`` bounds every request body (413 beyond it).

    The version of a request (docs/design.md §10) is its ``Clearway-Version`` header,
    else the client's pin (the ``cw_ver`` claim of the token the route verified),
    else ``versions.unpinned``. JSON responses are rendered at the current version
    and downgraded here for older ones; calls on a deprecated version are counted
    and, with ``usage``, recorded for the client's weekly digest."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        service: str,
        versions: ApiVersions,
        unversioned: Collection[str] = (),
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        usage: DeprecationLog | None = None,
        startup: Startup | None = None,
    ) -> None:
        self.app = app
        self.startup = startup
        self.service = service
        self.versions = versions
        self.usage = usage
        self.unversioned = frozenset(unversioned)
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_headers = Headers(scope=scope)
        cid = accept_correlation_id(request_headers.get(CORRELATION_HEADER))
        state: dict[str, Any] = scope.setdefault("state", {})
        state["correlation_id"] = cid
        token = correlation_id_var.set(cid)
        span = trace.get_current_span()
        if span.is_recording():
            span.set_attribute(SPAN_ATTRIBUTE, cid)

        stamped: list[tuple[str, str]] = [(CORRELATION_HEADER, cid)]
        status = 500
        response_started = False
        versioned = scope["path"] not in self.unversioned
        asked: str | None = None  # the version the header named
        version: str | None = None
        held: Message | None = None  # a response start waiting for its body to be downgraded
        chunks: list[bytes] = []

        async def send_stamped(message: Message) -> None:
            nonlocal status, response_started, version, held
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                headers = MutableHeaders(scope=message)
                if versioned:
                    version = asked or self.versions.pinned(_pin(state))
                    state["api_version"] = version
                    stamped.append((VERSION_HEADER, version))
                    stamped.extend(self.versions.deprecation_headers(version))
                for name, value in stamped:
                    if name == "Link":  # the route may have its own links (pagination)
                        headers.append(name, value)
                    elif name in _ROUTE_FIRST and name in headers:
                        continue  # a deprecated operation states its own dates
                    else:
                        headers[name] = value
                if version is not None and _downgradable(headers, self.versions, version):
                    held = message
                    return
            elif held is not None:
                chunks.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                body = _downgraded(b"".join(chunks), self.versions, version or "")
                MutableHeaders(scope=held)["content-length"] = str(len(body))
                start, held = held, None
                await send(start)
                message = {"type": "http.response.body", "body": body, "more_body": False}
            await send(message)

        try:
            if versioned:
                header = request_headers.get(VERSION_HEADER)
                if header is not None:
                    versioned = False  # a refused header gets no version stamped back
                    asked = self.versions.resolve(header)
                    versioned = True
                state["api_version"] = asked or self.versions.resolve(None)
            receive = await self._screened(scope, receive, request_headers)
            # Started degraded (http.startup): only the probes and /metrics answer.
            refusal = self.startup.refusal() if self.startup is not None else None
            if refusal is not None and scope["path"] not in self.unversioned:
                raise refusal
            await self.app(scope, receive, send_stamped)
        except Exception as exc:
            if response_started:  # too late for a problem: let the server abort the response
                logger.exception("error after the response started", exc_info=exc)
                raise
            response = problem_for(Request(scope, receive), exc)
            await response(scope, receive, send_stamped)
        finally:
            correlation_id_var.reset(token)
            route = _route_template(scope)
            HTTP_REQUEST_DURATION_SECONDS.labels(
                self.service, scope["method"], route, str(status)
            ).observe(time.perf_counter() - started)
            if version is not None and version in self.versions.deprecated:
                self._deprecated_call(scope, state, version, f"{scope['method']} {route}")

    def _deprecated_call(
        self, scope: Scope, state: dict[str, Any], version: str, feature: str
    ) -> None:
        """Count a call on a deprecated version, and note it for the client's digest."""
        principal = state.get("principal")
        client = getattr(principal, "client_id", None) or state.get("client_id")
        DEPRECATED_CALLS_TOTAL.labels(
            self.service, str(client or "anonymous"), version, feature
        ).inc()
        if self.usage is not None and client:
            tenant = getattr(principal, "tenant", None) or tenant_var.get() or ""
            self.usage.record(tenant, str(client), version, feature)

    async def _screened(self, scope: Scope, receive: Receive, headers: Headers) -> Receive:
        """Refuse control characters, oversized bodies and card numbers before any route
        or dependency runs; the ``receive`` to hand on replays the body read here."""
        loc = (
            path_control_field(scope["path"], _path_templates(scope))
            or query_control_field(scope["query_string"])
            or header_control_field(scope["headers"])
        )
        if loc is not None:
            raise control_character_problem(loc)
        messages = await read_body(receive, self.max_body_bytes, headers.get("content-length"))
        body = messages[0].get("body", b"")
        loc = body_control_field(headers.get("content-type"), body)
        if loc is not None:
            raise control_character_problem(loc)
        loc = card_number_field(
            scope, lambda: _operations(scope), headers.get("content-type"), body
        )
        if loc is not None:
            raise card_number_problem(loc)
        return replay(messages, receive)


def request_version(request: Request) -> str:
    """The dated version ``request`` is served with: its ``Clearway-Version`` header, else
    the pin of the token a route dependency verified, else the unpinned default. For
    routes that record it, e.g. the version a new webhook endpoint is pinned to."""
    versions: ApiVersions = request.app.state.api_versions
    header = request.headers.get(VERSION_HEADER)
    if header is not None:
        return versions.resolve(header)
    return versions.pinned(_pin(request.scope.get("state", {})))


def _pin(state: dict[str, Any]) -> object:
    """The pinned version the consent issuer put in the caller's token, if any."""
    principal = state.get("principal")
    claims = getattr(principal, "claims", None) or {}
    return claims.get(VERSION_CLAIM)


def _downgradable(headers: MutableHeaders, versions: ApiVersions, version: str) -> bool:
    """A whole JSON body (not a stream, not a problem) that ``version`` sees differently."""
    return (
        versions.transforms(version)
        and headers.get("content-type", "").split(";")[0].strip() == "application/json"
        and "content-length" in headers
    )


def _downgraded(body: bytes, versions: ApiVersions, version: str) -> bytes:
    try:
        doc = json.loads(body)
    except ValueError:
        return body
    # The rendering FastAPI's JSONResponse uses, so both versions look alike.
    out = json.dumps(versions.downgrade(doc, version), ensure_ascii=False, separators=(",", ":"))
    return out.encode()


def _path_templates(scope: Scope) -> list[str]:
    """The app's documented route paths (``/v1/transfers/{transfer_id}``)."""
    return list(_operations(scope))


def _operations(scope: Scope) -> dict[str, Any]:
    """The ``paths`` of the app's OpenAPI document: public API (FastAPI includes
    routers lazily, so its route list is not flat), built once and cached, and
    read only for requests that were refused or not routed."""
    openapi = getattr(scope.get("app"), "openapi", None)
    paths = openapi().get("paths", {}) if callable(openapi) else {}
    return paths if isinstance(paths, dict) else {}


def _route_template(scope: Scope) -> str:
    """The matched route's path template (``/v1/transfers/{transfer_id}``), never the raw path.

    Raw paths would make one time series per id; requests refused before
    routing (a bad version header, a control character, a body too large) are
    matched here so they still count against their route.
    """
    path = getattr(scope.get("route"), "path", None)
    if isinstance(path, str):
        return path
    route_path = scope["path"]
    for template in _path_templates(scope):
        if compile_path(template)[0].match(route_path):
            return template
    return UNMATCHED_ROUTE

"""RFC 9457 problem details: the one shape every Clearway HTTP error takes.

Every error body is ``application/problem+json`` with a stable ``type`` URI,
a human ``title``, the ``status``, a ``detail``, the ``instance`` (request
path) and the ``correlation_id`` (docs/design.md §13, conventions). Nothing the client sent is
echoed back and no stack trace leaves the process: a rejected field may hold a
card number, and a traceback tells an attacker how we are built.
"""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Iterator, Mapping, Sequence
from http import HTTPStatus
from typing import Any
from urllib.parse import quote

import asyncpg
import httpx
from aiokafka import errors as kafka_errors
from fastapi import FastAPI, Request, Response, params
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from clearway.shared.cards import mask_cards
from clearway.shared.context import current_correlation_id, new_correlation_id
from clearway.shared.crypto.keys import KeyUnavailable
from clearway.shared.residency import WrongRegion

CORRELATION_HEADER = "X-Correlation-ID"
PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_BASE_URI = "https://docs.clearway.dev/problems/"

# Seconds a client should wait after a 503 for a dependency that is down: long enough
# for a pool to reconnect after a database restart or failover, short enough to notice.
UNAVAILABLE_RETRY_AFTER_SECONDS = 5

_MEMBERS = frozenset({"type", "title", "status", "detail", "instance", "correlation_id"})

logger = logging.getLogger(__name__)


def problem_type_uri(slug: str) -> str:
    """The documented ``type`` URI for a problem slug (``validation-error`` → its docs page)."""
    return PROBLEM_BASE_URI + slug


class ProblemError(Exception):
    """An error a service answers with on purpose, rendered as a problem+json response.

    ``extensions`` become extra members of the body (RFC 9457 §3.2), e.g.
    ``ProblemError(409, "transfer-conflict", "Transfer already exists", transfer_id=...)``.
    """

    def __init__(
        self,
        status: int,
        type_slug: str,
        title: str,
        detail: str | None = None,
        headers: Mapping[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.type = problem_type_uri(type_slug)
        self.title = title
        self.detail = detail
        self.headers = dict(headers or {})
        self.extensions = extensions


class ProblemResponse(JSONResponse):
    """A JSON response served as ``application/problem+json``."""

    media_type = PROBLEM_MEDIA_TYPE


def problem_response(
    request: Request,
    *,
    status: int,
    type_uri: str,
    title: str,
    detail: str | None = None,
    headers: Mapping[str, str] | None = None,
    extensions: Mapping[str, Any] | None = None,
) -> ProblemResponse:
    """Render one problem for ``request``; the standard members win over same-named extensions.

    The correlation id also goes out as ``X-Correlation-ID``, so even an error
    raised outside the edge middleware can be traced from the client's side.
    """
    correlation_id = _correlation_id(request)
    body: dict[str, Any] = {
        "type": type_uri,
        "title": title,
        "status": status,
        "detail": detail or title,
        "instance": instance_uri(request),
        "correlation_id": correlation_id,
    }
    for key, value in (extensions or {}).items():
        if key not in _MEMBERS:
            body[key] = jsonable_encoder(value)
    return ProblemResponse(
        body, status_code=status, headers={**(headers or {}), CORRELATION_HEADER: correlation_id}
    )


def instance_uri(request: Request) -> str:
    """The request path as a URI reference (RFC 9457 §3.1.5): percent-encoded, so a
    control character the client put in the path is never echoed raw, and with any
    card number masked (docs/design.md §9)."""
    return quote(mask_cards(request.url.path), safe="/:@!$&'()*+,;=~")


def problem_for(request: Request, exc: BaseException) -> Response:
    """The response for any exception that reached the HTTP edge."""
    if isinstance(exc, ProblemError):
        return problem_response(
            request,
            status=exc.status,
            type_uri=exc.type,
            title=exc.title,
            detail=exc.detail,
            headers=exc.headers,
            extensions=exc.extensions,
        )
    if isinstance(exc, WrongRegion):
        return problem_for(request, misdirected(exc))
    if isinstance(exc, RequestValidationError):
        return _validation_problem(request, exc.errors())
    if isinstance(exc, StarletteHTTPException):
        return _http_problem(request, exc)
    cause = unavailable_dependency(exc)
    if cause is not None:
        return _unavailable_problem(request, cause)
    logger.exception(
        "unhandled error answering %s %s", request.method, request.url.path, exc_info=exc
    )
    return problem_response(
        request,
        status=500,
        type_uri=problem_type_uri("internal-error"),
        title="Internal server error",
        detail="Something went wrong on our side. Quote the correlation_id when you contact us.",
    )


# Errors that say "the database or broker cannot be reached right now" rather than
# "this request is wrong" or "our code is wrong". A timeout counts: inside a request
# it is a pool acquire, a statement or a produce that a dependency did not answer.
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    ConnectionError,  # refused, reset, aborted, broken pipe
    TimeoutError,  # asyncio.TimeoutError is TimeoutError since Python 3.11
    socket.gaierror,
    asyncpg.PostgresConnectionError,  # SQLSTATE class 08, incl. a connection that died
    asyncpg.exceptions.OperatorInterventionError,  # class 57: shutdown, starting up, canceled
    asyncpg.exceptions.InsufficientResourcesError,  # class 53: too many connections, disk full
    kafka_errors.KafkaConnectionError,
    kafka_errors.KafkaTimeoutError,
    kafka_errors.NoBrokersAvailable,
    kafka_errors.NodeNotReadyError,
    kafka_errors.RequestTimedOutError,
    httpx.TransportError,  # an HTTP dependency (the rail, a JWKS endpoint) unreachable
    KeyUnavailable,  # the HSM holding the key-encryption keys (docs/design.md §9)
)
# A bare OSError is also what asyncio raises when every address of a host refused
# the connection ("Multiple exceptions: ...", errno None). File errors are bugs.
_NETWORK_ERRNOS = frozenset(
    {None, errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN, errno.ETIMEDOUT}
)


def unavailable_dependency(exc: BaseException) -> BaseException | None:
    """The exception in ``exc``'s chain (causes, exception groups) that says a database,
    broker or other dependency cannot be reached; ``None`` when it is something else."""
    for candidate in _chain(exc):
        if isinstance(candidate, _UNAVAILABLE):
            return candidate
        if type(candidate) is OSError and candidate.errno in _NETWORK_ERRNOS:
            return candidate
    return None


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, its explicit or implicit cause, and members of exception groups (bounded)."""
    seen: set[int] = set()
    pending: list[tuple[BaseException, int]] = [(exc, 0)]
    while pending:
        current, level = pending.pop()
        if id(current) in seen or level > 8:
            continue
        seen.add(id(current))
        yield current
        if isinstance(current, BaseExceptionGroup):
            pending.extend((member, level + 1) for member in current.exceptions)
        cause = current.__cause__
        if cause is None and not current.__suppress_context__:
            cause = current.__context__
        if cause is not None:
            pending.append((cause, level + 1))


def _unavailable_problem(request: Request, cause: BaseException) -> Response:
    # One line, no traceback and no message: driver messages can carry host names,
    # user names or statement text; the type and errno are enough to act on.
    logger.warning(
        "dependency unavailable answering %s %s: %s.%s (errno %s)",
        request.method,
        request.url.path,
        type(cause).__module__,
        type(cause).__qualname__,
        getattr(cause, "errno", None),
    )
    return problem_for(request, unavailable())


def unavailable(
    detail: str = "A service this request depends on is unavailable; retry after a short wait.",
) -> ProblemError:
    """503 ``service-unavailable`` with ``Retry-After`` (RFC 9110 §15.6.4, §10.2.3): a
    dependency is down, the request was not acted on and may be sent again."""
    return ProblemError(
        503,
        "service-unavailable",
        "Service unavailable",
        detail,
        headers={"Retry-After": str(UNAVAILABLE_RETRY_AFTER_SECONDS)},
    )


def misdirected(exc: WrongRegion) -> ProblemError:
    """421 Misdirected Request (RFC 9110 §15.5.20) for a tenant this region does not
    serve: ``region`` names where the tenant's data lives, so a client or gateway can
    go there (docs/design.md §9). Ids only; the request was not acted on."""
    return ProblemError(
        421,
        "wrong-region",
        f"Tenant served in region {exc.region}",
        f"This deployment serves region {exc.served}; the tenant's data lives in region"
        f" {exc.region}. Send the request to that region.",
        region=exc.region,
    )


def install_problem_handlers(app: FastAPI) -> None:
    """Answer validation errors, HTTP exceptions, ``ProblemError``, requests for another
    region's tenant and crashes as problems."""

    async def handle(request: Request, exc: Exception) -> Response:
        return problem_for(request, exc)

    kinds = (ProblemError, WrongRegion, RequestValidationError, StarletteHTTPException, Exception)
    for kind in kinds:
        app.add_exception_handler(kind, handle)


def field_name(loc: Sequence[str | int]) -> str:
    """A dotted field path for a pydantic error location: ``amount``, ``metadata.x``,
    ``header.idempotency-key``; body fields lose their ``body`` prefix."""
    parts = [str(part) for part in loc]
    if parts and parts[0] == "body":
        parts = parts[1:]
    return ".".join(parts) or "body"


class ValidationProblem(ProblemError):
    """A 422 ``validation-error`` with the same body FastAPI's request validation gets.

    Raise it for a check a pydantic model cannot express (a cross-field range, an
    unknown scope, a cursor we did not issue), so that a client parses one shape:
    ``errors: [{field, message, type}]`` and a ``detail`` naming the first field.
    """

    def __init__(
        self,
        *errors: FieldError,
        type_slug: str = "validation-error",
        title: str = "Request validation failed",
        detail: str | None = None,
    ) -> None:
        # A more specific 422 (e.g. ``card-number-refused``) keeps the same ``errors``
        # body under its own type, so clients read the field at fault one way.
        fields = [e.as_json() for e in errors]
        super().__init__(422, type_slug, title, detail or _validation_detail(fields), errors=fields)


class FieldError:
    """One entry of a validation problem's ``errors``: which field, why, and a machine type."""

    __slots__ = ("field", "message", "type")

    def __init__(self, field: str | Sequence[str | int], message: str, type: str) -> None:
        self.field = field if isinstance(field, str) else field_name(field)
        self.message = message
        self.type = type

    def as_json(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message, "type": self.type}


def invalid_field(
    field: str | Sequence[str | int], message: str, type: str = "value_error"
) -> ValidationProblem:
    """A validation problem for one field: ``raise invalid_field("until", "must be after since")``.

    ``field`` is a dotted name or a pydantic-style location (``("query", "cursor")``
    becomes ``query.cursor``, as FastAPI names a query parameter); ``message``
    must not echo the rejected value (it may be a card number or a secret).
    """
    return ValidationProblem(FieldError(field, message, type))


def _validation_detail(fields: Sequence[Mapping[str, str]]) -> str:
    if not fields:
        return "The request is invalid."
    first = fields[0]
    detail = f"Field '{first['field']}' is invalid: {first['message']}."
    if len(fields) > 1:
        detail += f" ({len(fields) - 1} more invalid field(s) in 'errors'.)"
    return detail


def _validation_problem(request: Request, raw: Sequence[Any]) -> ProblemResponse:
    errors: list[Mapping[str, Any]] = [e for e in raw if isinstance(e, Mapping)]
    malformed = next((e for e in errors if e.get("type") == "json_invalid"), None)
    if malformed is not None:
        return _malformed_body(request, malformed)
    accepted = _body_media_types(request)
    if any(_in_body(e) for e in errors) and not _accepts(accepted, request):
        return problem_response(
            request,
            status=415,
            type_uri=problem_type_uri("unsupported-media-type"),
            title="Unsupported media type",
            detail=f"The body must be sent as {' or '.join(accepted)}.",
            # RFC 9110 §15.5.16: Accept says which media types would have been taken.
            headers={"Accept": ", ".join(accepted)},
        )
    # Only loc, msg and type leave: pydantic's ``input`` and ``ctx`` can hold the
    # rejected value itself (a PAN in the wrong field must not come back).
    problem = ValidationProblem(
        *(
            FieldError(e.get("loc", ()), str(e.get("msg", "")), str(e.get("type", "")))
            for e in errors
        )
    )
    return problem_response(
        request,
        status=problem.status,
        type_uri=problem.type,
        title=problem.title,
        detail=problem.detail,
        extensions=problem.extensions,
    )


_JSON = ("application/json",)
_FORM = ("application/x-www-form-urlencoded", "multipart/form-data")


def _in_body(error: Mapping[str, Any]) -> bool:
    loc = error.get("loc", ())
    return bool(loc) and loc[0] == "body"


def _body_media_types(request: Request) -> tuple[str, ...]:
    """The media types the matched route parses its body from: forms or JSON."""
    body = getattr(request.scope.get("route"), "body_field", None)
    return _FORM if isinstance(getattr(body, "field_info", None), params.Form) else _JSON


def _accepts(accepted: tuple[str, ...], request: Request) -> bool:
    """Whether the request's Content-Type is one of ``accepted`` (JSON: ``+json`` too,
    RFC 6839 §3.1); a request without one is judged by its body's validation."""
    given = request.headers.get("content-type")
    if given is None:
        return True
    media = given.split(";", 1)[0].strip().lower()
    return media in accepted or (accepted == _JSON and media.endswith("+json"))


def _malformed_body(request: Request, error: Mapping[str, Any]) -> ProblemResponse:
    loc = error.get("loc", ())
    where = f" at character {loc[1]}" if len(loc) > 1 and isinstance(loc[1], int) else ""
    return problem_response(
        request,
        status=400,
        type_uri=problem_type_uri("malformed-body"),
        title="Malformed request body",
        detail=f"The request body is not valid JSON{where}.",
    )


def _http_problem(request: Request, exc: StarletteHTTPException) -> Response:
    status = exc.status_code
    headers = dict(exc.headers or {})
    if status in (204, 304):  # no body allowed (RFC 9110 §15.3.5, §15.4.5)
        return Response(status_code=status, headers=headers)
    phrase = _phrase(status)
    if isinstance(exc.detail, Mapping):  # the auth module raises problem fields this way
        fields = exc.detail
        return problem_response(
            request,
            status=status,
            type_uri=_type_uri(fields.get("type"), status),
            title=str(fields.get("title") or phrase),
            detail=str(fields["detail"]) if fields.get("detail") else None,
            headers=headers,
            extensions=fields,
        )
    detail = exc.detail if isinstance(exc.detail, str) and exc.detail else phrase
    if detail == phrase and status == 404 and "route" not in request.scope:
        detail = f"No resource is served at {request.url.path}."
    elif detail == phrase and status == 405:
        allowed = headers.get("Allow") or headers.get("allow")
        detail = f"{request.method} is not allowed here" + (f"; use {allowed}." if allowed else ".")
    return problem_response(
        request,
        status=status,
        type_uri=_type_uri(None, status),
        title=phrase,
        detail=detail,
        headers=headers,
    )


def _type_uri(given: object, status: int) -> str:
    """A problem ``type`` from an HTTPException detail: absolute URIs kept, slugs expanded."""
    if isinstance(given, str) and given:
        return given if ":" in given else problem_type_uri(given)
    try:
        slug = HTTPStatus(status).name.lower().replace("_", "-")
    except ValueError:
        slug = f"http-{status}"
    return problem_type_uri(slug)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _correlation_id(request: Request) -> str:
    cid = current_correlation_id() or getattr(request.state, "correlation_id", None)
    return str(cid) if cid else new_correlation_id()

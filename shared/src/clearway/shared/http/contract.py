"""The published contract: every service's OpenAPI document says what the kit answers.

The routes of a service declare their own bodies, success responses and the
problems only they raise (``responses={409: {"description": "..."}}``). What the
kit itself answers is declared here, once, for every operation
(docs/design.md §10, §13):

- every error response is ``application/problem+json`` with the RFC 9457 schema
  ``Problem`` (``errors`` for validation problems), whoever declared its status;
- problems any versioned operation can get from the edge: 400 (unsupported
  ``Clearway-Version``, a body that is not JSON), 413 (body too large), 415 (a media
  type the operation does not take), 422 (validation, control characters), 500 and
  503 (a dependency down, with ``Retry-After``);
- 401 and 403 on each operation that requires scopes, 404 on each with a path
  parameter;
- the ``bearer`` security scheme (RFC 6750, RFC 9068 JWT access tokens), and per
  operation the scopes it requires, read from its ``require_scope`` dependencies
  (``route_scopes``), so a scope is declared once, where it is enforced.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field, create_model

from clearway.shared.auth.fastapi import route_scopes
from clearway.shared.http.problems import PROBLEM_MEDIA_TYPE, problem_type_uri

SECURITY_SCHEME = "bearer"
_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
_SCHEMAS = "#/components/schemas/"
_RESPONSES = "#/components/responses/"

# The problems the kit answers, by status: (type slug of the example, title, when).
_KIT_PROBLEMS: dict[int, tuple[str, str, str]] = {
    400: (
        "unsupported-version",
        "Unsupported API version",
        "The Clearway-Version header names no served version (`unsupported-version`,"
        " with `supported_versions`), or the body is not JSON (`malformed-body`).",
    ),
    401: (
        "invalid-token",
        "Invalid token",
        "No bearer token, or one that is expired, revoked, not for this service or not"
        " signed by the issuer (RFC 6750 §3.1; see `WWW-Authenticate`).",
    ),
    403: (
        "insufficient-scope",
        "Insufficient scope",
        "The token lacks a scope this operation requires (`missing_scopes`), or the"
        " operation is for platform operators only.",
    ),
    404: ("not-found", "Not Found", "Nothing with this id is visible to the caller's tenant."),
    413: (
        "payload-too-large",
        "Payload too large",
        "The body exceeds the service's request size limit.",
    ),
    415: (
        "unsupported-media-type",
        "Unsupported media type",
        "The body's Content-Type is not one this operation takes.",
    ),
    422: (
        "validation-error",
        "Request validation failed",
        "A parameter, header or body field is invalid (`errors` names each field)."
        " Control characters are refused in every string.",
    ),
    500: (
        "internal-error",
        "Internal server error",
        "A fault on our side; quote the `correlation_id`.",
    ),
    503: (
        "service-unavailable",
        "Service unavailable",
        "A dependency (database, broker, token issuer) is unavailable; retry after"
        " `Retry-After` seconds.",
    ),
}
# What FastAPI puts in a response a route declared with a description only.
_FASTAPI_FILLER: dict[str, Any] = {"application/json": {"schema": {}}}
_FASTAPI_VALIDATION = _SCHEMAS + "HTTPValidationError"
_EVERY_OPERATION = (400, 422, 500, 503)
_WITH_BODY = (413, 415)


class FieldProblem(BaseModel):
    """One invalid field of a validation problem."""

    field: str = Field(description="Dotted path: `amount`, `query.cursor`, `header.x`.")
    message: str
    type: str = Field(description="Machine-readable reason, e.g. `string_too_long`.")


class Problem(BaseModel):
    """An RFC 9457 problem details object, as every Clearway error is answered."""

    model_config = ConfigDict(
        extra="allow",  # RFC 9457 §3.2: problem types add extension members
        json_schema_extra={
            "examples": [
                {
                    "type": problem_type_uri("validation-error"),
                    "title": "Request validation failed",
                    "status": 422,
                    "detail": "Field 'amount' is invalid: Input should be greater than 0.",
                    "instance": "/v1/transfers",
                    "correlation_id": "corr_5f0c8a1e2b7d4c3a9e6f1b2d3c4a5e6f",
                    "errors": [
                        {
                            "field": "amount",
                            "message": "Input should be greater than 0",
                            "type": "greater_than",
                        }
                    ],
                }
            ]
        },
    )

    type: str = Field(description="A URI naming the problem type; its page documents it.")
    title: str
    status: int = Field(ge=100, le=599)
    detail: str
    instance: str = Field(description="The request path.")
    correlation_id: str = Field(description="Also sent as X-Correlation-ID; quote it to us.")
    errors: list[FieldProblem] | None = Field(
        default=None, description="Validation problems: each invalid field."
    )


# ``clearway.shared.money.money`` renders it (docs/design.md §10); the money step's
# ``downgrade_schema`` finds it by its component name ``Money``.
class Money(BaseModel):
    """An amount and its currency (from `2026-12-01`; before: minor units and `currency`)."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"value": "125.00", "currency": "EUR"}]}
    )

    value: str = Field(
        pattern=r"^-?[0-9]+(\.[0-9]+)?$",
        description="A decimal string with exactly the currency's ISO 4217 minor-unit"
        ' digits (`"500"` for JPY); read it as a decimal, never a float.',
    )
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code.")


def page_of(item: type[BaseModel], name: str) -> type[BaseModel]:
    """The schema of one page of ``item`` in the kit's list shape (``http.paging``).

    For the document only, as every success model of a route that answers a dict
    (``response_model=None, responses=documented(page_of(X, "XList"), ...)``): the
    runtime answer does not change. The page has no example of its own: ``item``'s
    examples are shown through its ``$ref``, so a version step's ``downgrade_schema``
    that rewrites ``item`` rewrites them too (docs/design.md §10).
    """
    model: type[BaseModel] = create_model(
        name,
        __doc__=f"One page of {item.__name__} items, in the list shape.",
        data=(list[item], ...),  # type: ignore[valid-type]
        next_cursor=(
            str | None,
            Field(description="Pass as `cursor` for the next page; null on the last."),
        ),
        has_more=(bool, ...),
    )
    return model


def documented(model: type[BaseModel], description: str, status: int = 200) -> dict[int, Any]:
    """``responses=`` declaring a success answer of ``model``'s shape, for the document
    only: with ``response_model=None`` the route answers what it returns, unchanged."""
    return {status: {"model": model, "description": description}}


def install_contract(app: FastAPI) -> None:
    """Make ``app.openapi()`` declare the kit's problems and security.

    The document is built lazily (on first request for it), so routers included
    after ``create_app`` are covered.
    """
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = build()
            declare(document, route_scopes(app))
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def declare(document: dict[str, Any], scopes: Mapping[tuple[str, str], set[str]]) -> None:
    """Complete a generated OpenAPI ``document`` in place (see the module docstring)."""
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    problem = Problem.model_json_schema(ref_template=_SCHEMAS + "{model}")
    schemas.update(problem.pop("$defs", {}))
    schemas["Problem"] = problem
    responses = components.setdefault("responses", {})
    for status, (slug, title, when) in _KIT_PROBLEMS.items():
        responses[_response_name(status)] = _problem_response(status, slug, title, when)
    security = components.setdefault("securitySchemes", {})
    security.pop("HTTPBearer", None)
    security[SECURITY_SCHEME] = {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "An RFC 9068 access token from the consent service's token endpoint;"
        " each operation lists the scopes it requires.",
    }
    for path, item in document.get("paths", {}).items():
        for method in _METHODS:
            operation = item.get(method)
            if operation is not None:
                _declare_operation(operation, scopes.get((method.upper(), path), set()))


def _declare_operation(operation: dict[str, Any], scopes: set[str]) -> None:
    parameters = operation.get("parameters", [])
    statuses = list(_EVERY_OPERATION)
    if "requestBody" in operation:
        statuses += _WITH_BODY
    if any(p.get("in") == "path" for p in parameters):
        statuses.append(404)
    bearer = operation.pop("security", None) is not None
    if scopes:
        statuses += [401, 403]
        operation["security"] = [{SECURITY_SCHEME: sorted(scopes)}]
        listed = ", ".join(f"`{s}`" for s in sorted(scopes))
        note = f"Requires a bearer token with scope(s) {listed}."
        description = operation.get("description")
        operation["description"] = f"{description}\n\n{note}" if description else note
    elif bearer:  # authenticates a token without requiring a scope
        statuses.append(401)
        operation["security"] = [{SECURITY_SCHEME: []}]
    responses = operation.setdefault("responses", {})
    if _FASTAPI_VALIDATION in str(responses.get("422")):
        del responses["422"]  # FastAPI's own: ours is a problem (the component below)
    problem = {"schema": {"$ref": _SCHEMAS + "Problem"}}
    for status, response in responses.items():
        if status[:1] in "45" and "$ref" not in response:
            content = response.get("content")
            if not content or content == _FASTAPI_FILLER:
                # Route-declared problems (409, 429, …) keep their description and get the body.
                response["content"] = {PROBLEM_MEDIA_TYPE: problem}
            elif int(status) in statuses:
                # A route's own error format (OAuth's RFC 6749 §5.2 JSON): the edge may
                # still answer this status, as a problem.
                content.setdefault(PROBLEM_MEDIA_TYPE, problem)
    for status in statuses:
        responses.setdefault(str(status), {"$ref": _RESPONSES + _response_name(status)})


def _response_name(status: int) -> str:
    return f"Problem{status}"


def _problem_response(status: int, slug: str, title: str, when: str) -> dict[str, Any]:
    example = {
        "type": problem_type_uri(slug),
        "title": title,
        "status": status,
        "detail": title + ".",
        "instance": "/v1/…",
        "correlation_id": "corr_5f0c8a1e2b7d4c3a9e6f1b2d3c4a5e6f",
    }
    response: dict[str, Any] = {
        "description": f"{HTTPStatus(status).phrase}. {when}",
        "content": {
            PROBLEM_MEDIA_TYPE: {"schema": {"$ref": _SCHEMAS + "Problem"}, "example": example}
        },
    }
    if status == 401:
        response["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}
    if status == 503:
        response["headers"] = {"Retry-After": {"schema": {"type": "integer"}}}
    return response

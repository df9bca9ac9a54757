"""The one FastAPI dependency every route uses to authenticate and authorise.

Errors are raised as ``fastapi.HTTPException`` whose ``detail`` is a dict holding
the RFC 9457 problem fields; ``clearway.shared.http`` renders such an exception as
``application/problem+json`` (adding the correlation id), so this module does not
depend on it. The ``WWW-Authenticate`` header follows RFC 6750 §3.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import fastapi.routing
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from clearway.shared.auth.jwks import JwksUnavailable
from clearway.shared.auth.principal import (
    PLATFORM_TENANT,
    InsufficientScope,
    InvalidToken,
    Principal,
)
from clearway.shared.auth.verify import TokenVerifier

PROBLEM_BASE = "https://docs.clearway.dev/problems/"

# auto_error=False: a missing token is answered by us as problem+json, not by FastAPI.
# Declaring the scheme also puts bearer auth into the OpenAPI document.
_bearer = HTTPBearer(auto_error=False)
# RFC 6750 §3: error_description may not contain '"' or '\'.
_UNSAFE_IN_HEADER = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")


class ScopeRequirement:
    """A dependency returning the caller's :class:`Principal` if it holds ``scopes``."""

    def __init__(self, scopes: frozenset[str]) -> None:
        self.scopes = scopes

    def __repr__(self) -> str:
        return f"require_scope({', '.join(sorted(self.scopes))})"

    async def __call__(
        self,
        request: Request,
        credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),
    ) -> Principal:
        verifier = getattr(request.app.state, "token_verifier", None)
        if not isinstance(verifier, TokenVerifier):
            raise RuntimeError("app.state.token_verifier is not set (see the service bootstrap)")
        if credentials is None:
            # RFC 6750 §3.1: a request without credentials gets no error code.
            raise _problem(
                401, "invalid-token", "Invalid token", "bearer token required", _challenge("Bearer")
            )
        try:
            principal = await verifier.verify(credentials.credentials)
            principal.require_scopes(*self.scopes)
        except InvalidToken as error:
            reason = _UNSAFE_IN_HEADER.sub("", error.reason)
            challenge = f'Bearer error="invalid_token", error_description="{reason}"'
            raise _problem(
                401, "invalid-token", "Invalid token", error.reason, _challenge(challenge)
            ) from None
        except InsufficientScope as error:
            missing = sorted(error.missing)
            challenge = (
                f'Bearer error="insufficient_scope", scope="{" ".join(sorted(self.scopes))}"'
            )
            raise _problem(
                403,
                "insufficient-scope",
                "Insufficient scope",
                f"missing scope(s): {' '.join(missing)}",
                _challenge(challenge),
                missing_scopes=missing,
            ) from None
        except JwksUnavailable:
            raise _problem(
                503,
                "auth-unavailable",
                "Token verification unavailable",
                "the token issuer's keys cannot be fetched; retry shortly",
                {"Retry-After": "5"},
            ) from None
        request.state.principal = principal
        return principal


class PlatformScopeRequirement(ScopeRequirement):
    """A :class:`ScopeRequirement` that also requires a client of the operator tenant."""

    def __repr__(self) -> str:
        return f"require_platform_scope({', '.join(sorted(self.scopes))})"

    async def __call__(
        self,
        request: Request,
        credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),
    ) -> Principal:
        principal = await super().__call__(request, credentials)
        # Defence in depth: consent grants platform scopes to operator clients only.
        if principal.tenant != PLATFORM_TENANT:
            raise _problem(
                403,
                "platform-operator-only",
                "Platform operators only",
                f"only clients of {PLATFORM_TENANT} act on other tenants",
                {},
            )
        return principal


def require_scope(*scopes: str) -> ScopeRequirement:
    """A dependency for ``Depends``/``Security`` that authenticates the bearer token,
    refuses revoked tokens and requires every one of ``scopes``.

    ``app.state.token_verifier`` must hold the service's :class:`TokenVerifier`; the
    principal is also left on ``request.state.principal`` for logging and audit.
    """
    if not scopes or not all(isinstance(s, str) and s and " " not in s for s in scopes):
        raise ValueError("require_scope needs at least one scope token, e.g. 'payments:read'")
    return ScopeRequirement(frozenset(scopes))


def require_platform_scope(*scopes: str) -> PlatformScopeRequirement:
    """:func:`require_scope` for the platform operator's routes (``/v1/platform/…``):
    the caller must also be a client of :data:`PLATFORM_TENANT` (docs/design.md §7)."""
    return PlatformScopeRequirement(require_scope(*scopes).scopes)


def route_scopes(app: FastAPI) -> dict[tuple[str, str], set[str]]:
    """The scopes each route of ``app`` requires, by ``(method, path)``.

    Routes that use no :func:`require_scope` map to an empty set. Dependencies of
    the routers a route was included through count as the route's own.
    """
    result: dict[tuple[str, str], set[str]] = {}
    for path, methods, dependant in _api_routes(app):
        scopes: set[str] = set()
        for call in _calls(dependant.dependencies):
            if isinstance(call, ScopeRequirement):
                scopes |= call.scopes
        for method in methods:
            result[(method, path)] = set(scopes)
    return result


def _api_routes(app: FastAPI) -> Iterator[tuple[str, set[str], Any]]:
    iter_route_contexts = getattr(fastapi.routing, "iter_route_contexts", None)
    if iter_route_contexts is None:
        # Older FastAPI copies included routers' routes, prefix and dependencies
        # applied, into app.routes.
        for route in app.routes:
            if isinstance(route, APIRoute):
                yield route.path, set(route.methods or ()), route.dependant
        return
    # Newer FastAPI includes routers lazily; route contexts carry the effective
    # path and dependant (with the including routers' dependencies).
    for context in iter_route_contexts(app.routes):
        if isinstance(context.original_route, APIRoute):
            yield str(context.path), set(context.methods or ()), context.dependant


def _calls(dependencies: list[Any]) -> Iterator[Any]:
    for dependant in dependencies:
        yield dependant.call
        yield from _calls(dependant.dependencies)


def _challenge(value: str) -> dict[str, str]:
    return {"WWW-Authenticate": value}


def _problem(
    status: int,
    type_suffix: str,
    title: str,
    detail: str,
    headers: dict[str, str],
    **extra: Any,
) -> HTTPException:
    problem = {
        "type": PROBLEM_BASE + type_suffix,
        "title": title,
        "status": status,
        "detail": detail,
        **extra,
    }
    return HTTPException(status, detail=problem, headers=headers)

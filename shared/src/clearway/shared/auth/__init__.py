"""Token verification every service uses: RFC 9068 access tokens, scopes, revocation.

Wire it in a service's lifespan with one call, on the service's Supervisor (the
revocation feed is restarted by it, and ``/readyz`` is 503 until the feed caught up)::

    async with Supervisor(SERVICE, app) as tasks:
        await verify_tokens(app, tasks, settings, audience="clearway-transfer")

and declare each route's scope::

    @router.post("/v1/transfers")
    async def create(principal: Principal = Security(require_scope("payments:initiate"))): ...
"""

from clearway.shared.auth.fastapi import (
    PlatformScopeRequirement,
    ScopeRequirement,
    require_platform_scope,
    require_scope,
    route_scopes,
)
from clearway.shared.auth.jwks import HttpJwksSource, Jwks, JwksFetcher, JwksUnavailable
from clearway.shared.auth.principal import (
    PLATFORM_TENANT,
    InsufficientScope,
    InvalidToken,
    Principal,
)
from clearway.shared.auth.revocation import (
    CONSENT_EVENTS_TOPIC,
    REVOCATION_EVENT_TYPES,
    RevocationFeed,
    RevocationSet,
    apply_record,
)
from clearway.shared.auth.verify import TokenVerifier
from clearway.shared.auth.wiring import verify_tokens

__all__ = [
    "CONSENT_EVENTS_TOPIC",
    "PLATFORM_TENANT",
    "REVOCATION_EVENT_TYPES",
    "HttpJwksSource",
    "InsufficientScope",
    "InvalidToken",
    "Jwks",
    "JwksFetcher",
    "JwksUnavailable",
    "PlatformScopeRequirement",
    "Principal",
    "RevocationFeed",
    "RevocationSet",
    "ScopeRequirement",
    "TokenVerifier",
    "apply_record",
    "require_platform_scope",
    "require_scope",
    "route_scopes",
    "verify_tokens",
]

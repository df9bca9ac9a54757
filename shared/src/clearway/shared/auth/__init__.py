"""Token verification every service uses: RFC 9068 access tokens, scopes, revocation.

Wire it in a service's bootstrap::

    revocations = RevocationSet()
    app.state.token_verifier = TokenVerifier(
        issuer=settings.issuer,
        audience="clearway-transfer",
        jwks_source=HttpJwksSource.for_issuer(settings.issuer),
        revocations=revocations,
    )
    feed = RevocationFeed(settings.kafka, consent_topic, revocations)
    # in the lifespan, on the service's Supervisor (restarted and reported in /readyz):
    tasks.task("revocation-feed", feed.run, health=feed.healthy)

and declare each route's scope::

    @router.post("/v1/transfers")
    async def create(principal: Principal = Security(require_scope("payments:initiate"))): ...
"""

from clearway.shared.auth.fastapi import ScopeRequirement, require_scope, route_scopes
from clearway.shared.auth.jwks import HttpJwksSource, Jwks, JwksFetcher, JwksUnavailable
from clearway.shared.auth.principal import InsufficientScope, InvalidToken, Principal
from clearway.shared.auth.revocation import (
    REVOCATION_EVENT_TYPES,
    RevocationFeed,
    RevocationSet,
    apply_record,
)
from clearway.shared.auth.verify import TokenVerifier

__all__ = [
    "REVOCATION_EVENT_TYPES",
    "HttpJwksSource",
    "InsufficientScope",
    "InvalidToken",
    "Jwks",
    "JwksFetcher",
    "JwksUnavailable",
    "Principal",
    "RevocationFeed",
    "RevocationSet",
    "ScopeRequirement",
    "TokenVerifier",
    "apply_record",
    "require_scope",
    "route_scopes",
]

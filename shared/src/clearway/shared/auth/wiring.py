"""Token verification for a service in one call: verifier, revocation set, feed, readiness.

docs/design.md §7: every service that verifies tokens refuses a revoked consent,
token or client within a second. A service's lifespan calls :func:`verify_tokens`
once, on its :class:`~clearway.shared.supervisor.Supervisor`::

    async with Supervisor(SERVICE, app) as tasks:
        await verify_tokens(app, tasks, settings, audience="clearway-vault")
        yield

It builds the :class:`TokenVerifier` with a :class:`RevocationSet`, leaves it on
``app.state.token_verifier`` (where :func:`require_scope` looks), and runs the
:class:`RevocationFeed` as the critical task ``revocation-feed``, so ``/readyz``
answers 503 naming ``task:revocation-feed`` until the feed has applied every
revocation published before the service started, and again whenever it cannot read.
"""

from __future__ import annotations

from typing import Any, Protocol

from clearway.shared.auth.jwks import HttpJwksSource, Jwks, JwksFetcher
from clearway.shared.auth.revocation import (
    CONSENT_EVENTS_TOPIC,
    REVOKED_TOKEN_GRACE_S,
    RevocationFeed,
    RevocationSet,
)
from clearway.shared.auth.verify import TokenVerifier
from clearway.shared.kafka import ensure_service_topics
from clearway.shared.settings import ServiceSettings
from clearway.shared.supervisor import Supervisor

#: The supervised task (and readiness check ``task:revocation-feed``) of the feed.
FEED_TASK = "revocation-feed"


class _HasState(Protocol):
    state: Any


async def verify_tokens(
    app: _HasState,
    tasks: Supervisor,
    settings: ServiceSettings,
    *,
    audience: str,
    jwks: Jwks | JwksFetcher | None = None,
    follow_revocations: bool = True,
    poll_timeout_ms: int = 100,
    past_use_s: float = 0.0,
) -> TokenVerifier:
    """Verify the platform's access tokens for ``audience`` and honour revocations.

    Keys come from ``jwks`` (a JWK Set or an async source), else from the platform's
    ``CLEARWAY_OAUTH_JWKS_URL`` (default ``<issuer>/.well-known/jwks.json``): the issuer
    is the identifier tokens carry, the JWK Set URL is where this service reaches it.
    Revocations come from the consent service's topic (created by the feed's task if
    absent, so a service starting before the consent service still becomes ready).
    ``follow_revocations=False`` is for isolated tests only: such a service accepts a
    revoked token until it expires.

    ``past_use_s`` is how far in the past a time of use given to
    :meth:`TokenVerifier.verify` (``at``) may lie: a revoked token id is then kept that
    much longer after the token's expiry, so a token valid at that time but revoked
    since is still refused.
    """
    revocations = RevocationSet(prune_grace_s=REVOKED_TOKEN_GRACE_S + past_use_s)
    source = jwks if jwks is not None else HttpJwksSource(settings.platform.jwks_url)
    verifier = TokenVerifier(settings.issuer, audience, source, revocations=revocations)
    if follow_revocations:
        platform = settings.platform
        topic = platform.topic(CONSENT_EVENTS_TOPIC)
        feed = RevocationFeed(settings.kafka, topic, revocations, poll_timeout_ms=poll_timeout_ms)

        async def follow() -> None:
            # Made in the task, not before it: a broker that is down at start holds up
            # the feed (and readiness), never the service's start (docs/design.md §12).
            await ensure_service_topics(settings, [topic])
            await feed.run()

        tasks.task(FEED_TASK, follow, health=feed.healthy)
    app.state.token_verifier = verifier
    app.state.revocations = revocations
    return verifier

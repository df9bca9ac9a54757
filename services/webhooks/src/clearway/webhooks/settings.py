"""The webhook service's settings: ``CLEARWAY_WEBHOOKS_<FIELD>`` (see docs/configuration.md)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import Field, SecretStr, model_validator

from clearway.shared.crypto.rotation import SealedColumn
from clearway.shared.crypto.settings import KeySettings
from clearway.shared.crypto.signing import Algorithm
from clearway.shared.settings import Csv, internal
from clearway.webhooks.domain import JITTER, RETRY_SCHEDULE

EVENTS_TOPIC = "clearway.webhooks.events.v1"
#: The service's Ed25519 key of v1a signatures in the HSM
#: (``clearway-keys webhooks rotate|retire --key webhooks-v1a``).
V1A_KEY = "webhooks-v1a"


class WebhooksSettings(KeySettings):
    """Signed webhook delivery to partners' endpoints."""

    service: ClassVar[str] = "webhooks"
    sealed_columns: ClassVar[tuple[SealedColumn, ...]] = (
        SealedColumn("endpoint_secrets", "sealed"),
    )
    supports_rotated_db_logins: ClassVar[bool] = True
    signing_keys: ClassVar[tuple[str, ...]] = (V1A_KEY,)

    port: int = 8002
    db_password: SecretStr = SecretStr("webhooks-dev")
    jwks: Mapping[str, Any] | None = internal()
    """A static JWK Set (tests); ``None`` fetches ``CLEARWAY_OAUTH_JWKS_URL``."""
    schedule: Csv[tuple[float, ...]] = RETRY_SCHEDULE
    """Delays in seconds between delivery attempts (comma-separated)."""
    jitter: float = JITTER
    """Random spread of each retry delay, as a fraction of it."""
    request_timeout_s: float = 15.0
    """Deadline of one whole delivery attempt: DNS, connect, send and the capped
    response read. At least 2 s shorter than the lease."""
    lease_s: float = 45.0
    """How long a claimed attempt is protected from other workers; after a crash the
    message becomes due again once its lease ran out."""
    workers: int = 4
    """Concurrent delivery workers."""
    batch_size: int = 100
    """Attempts one worker keeps in flight (it claims more as they finish)."""
    max_connections: int = 256
    """Outbound HTTP connection pool size."""
    endpoint_concurrency: int = 16
    """Attempts in flight to one endpoint, per process."""
    breaker_threshold: int = 5
    """Failed attempts in a row that open an endpoint's circuit breaker."""
    breaker_cooldown_s: float = 30.0
    """How long an open breaker pauses its endpoint (doubling per further failure)."""
    breaker_max_cooldown_s: float = 600.0
    """The longest pause of an open breaker."""
    poll_interval_s: float = 0.25
    """How often an idle dispatcher looks for due messages."""
    allow_networks: Csv[tuple[str, ...]] = ()
    """Non-public networks (CIDR, comma-separated) the SSRF guard lets through."""
    rotation_grace_s: float = 24 * 3600
    """How long the previous signing secret stays valid after a rotation."""
    v1a_rotation_interval_s: float = Field(90 * 86400.0, gt=0)
    """Age at which a new Ed25519 (v1a) signing key version is made."""
    v1a_overlap_s: float = Field(7 * 86400.0, ge=0)
    """How long the previous v1a key keeps signing beside a new one (partners switch
    keys meanwhile) before its private key is destroyed in the HSM; shorter than the
    rotation interval."""
    v1a_refresh_s: float = Field(30.0, gt=0)
    """How often each process runs the v1a key's scheduled rotation and retirement and
    picks up versions made or retired elsewhere (``clearway-keys``)."""
    disable_after_failing_s: float = 5 * 24 * 3600
    """An endpoint failing continuously for this long is disabled."""
    max_payload_bytes: int = 256 * 1024
    """Largest event payload delivered."""
    response_body_limit: int = 1024
    """Bytes of a receiver's response body kept with the attempt."""
    retention_interval_s: float = Field(3600.0, gt=0)
    """How often the retention purge runs (rules: ``webhooks.retention_rules``)."""
    run_relay: bool = True
    """Run the outbox relay in this process."""
    run_consumer: bool = True
    """Consume the domain event topics in this process."""
    run_dispatcher: bool = True
    """Deliver webhooks from this process."""

    @model_validator(mode="after")
    def _deadline_inside_lease(self) -> WebhooksSettings:
        # An attempt that outlived its lease would be sent again by another worker
        # while still in flight; 2 s leave room to record its outcome.
        if self.request_timeout_s + 2 > self.lease_s:
            raise ValueError("lease_s must exceed request_timeout_s by at least 2 seconds")
        # Rotation runs before retirement in each scheduled run: with an overlap as long
        # as the interval, every run that could retire rotates first, and old private
        # keys would pile up in the HSM, every one of them signing.
        if self.v1a_overlap_s >= self.v1a_rotation_interval_s:
            raise ValueError("v1a_overlap_s must be shorter than v1a_rotation_interval_s")
        return self

    def signing_algorithm(self, name: str) -> Algorithm | None:
        # Standard Webhooks v1a is Ed25519 only: never the ECDSA fallback
        return "Ed25519" if name == V1A_KEY else super().signing_algorithm(name)

    def topic(self, name: str) -> str:
        return self.platform.topic(name)

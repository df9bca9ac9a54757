"""The webhook service's settings: ``CLEARWAY_WEBHOOKS_<FIELD>`` (see docs/configuration.md)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import SecretStr

from clearway.shared.crypto.rotation import SealedColumn
from clearway.shared.crypto.settings import KeySettings
from clearway.shared.settings import Csv, internal
from clearway.webhooks.domain import JITTER, RETRY_SCHEDULE

EVENTS_TOPIC = "clearway.webhooks.events.v1"


class WebhooksSettings(KeySettings):
    """Signed webhook delivery to partners' endpoints."""

    service: ClassVar[str] = "webhooks"
    sealed_columns: ClassVar[tuple[SealedColumn, ...]] = (
        SealedColumn("endpoint_secrets", "sealed"),
    )

    port: int = 8002
    db_password: SecretStr = SecretStr("webhooks-dev")
    jwks: Mapping[str, Any] | None = internal()
    """A static JWK Set (tests); ``None`` fetches ``<issuer>/.well-known/jwks.json``."""
    schedule: Csv[tuple[float, ...]] = RETRY_SCHEDULE
    """Delays in seconds between delivery attempts (comma-separated)."""
    jitter: float = JITTER
    """Random spread of each retry delay, as a fraction of it."""
    request_timeout_s: float = 15.0
    """Timeout of one delivery request."""
    lease_s: float = 45.0
    """How long a claimed attempt is protected from other workers; after a crash the
    message becomes due again once its lease ran out."""
    workers: int = 4
    """Concurrent delivery workers."""
    batch_size: int = 100
    """Due messages claimed per round."""
    max_connections: int = 256
    """Outbound HTTP connection pool size."""
    poll_interval_s: float = 0.25
    """How often an idle dispatcher looks for due messages."""
    allow_networks: Csv[tuple[str, ...]] = ()
    """Non-public networks (CIDR, comma-separated) the SSRF guard lets through."""
    rotation_grace_s: float = 24 * 3600
    """How long the previous signing secret stays valid after a rotation."""
    disable_after_failing_s: float = 5 * 24 * 3600
    """An endpoint failing continuously for this long is disabled."""
    max_payload_bytes: int = 256 * 1024
    """Largest event payload delivered."""
    response_body_limit: int = 1024
    """Bytes of a receiver's response body kept with the attempt."""
    run_relay: bool = True
    """Run the outbox relay in this process."""
    run_consumer: bool = True
    """Consume the domain event topics in this process."""
    run_dispatcher: bool = True
    """Deliver webhooks from this process."""

    def topic(self, name: str) -> str:
        return self.platform.topic(name)

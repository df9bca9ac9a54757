"""The transfer service's settings: ``CLEARWAY_TRANSFER_<FIELD>`` (see docs/configuration.md)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, ClassVar

from pydantic import SecretStr

from clearway.shared.auth.client_credentials import ServiceTokenSource
from clearway.shared.settings import Base64Secret, ServiceSettings, internal


class TransferSettings(ServiceSettings):
    """Transfer intents executed exactly once."""

    service: ClassVar[str] = "transfer"

    port: int = 8001
    db_password: SecretStr = SecretStr("transfer-dev")
    jwks_url: str | None = None
    """JWK Set URL of the issuer; unset: ``<issuer>/.well-known/jwks.json``."""
    jwks: dict[str, Any] | None = internal()
    """A static JWK Set (tests)."""
    rail_url: str = "http://127.0.0.1:8005"
    """Base URL of the payment rail (the sandbox rail locally)."""
    token_url: str | None = None
    """OAuth token endpoint for service tokens; unset: ``<issuer>/oauth/token``."""
    client_id: str = "clearway-transfer"
    """This service's OAuth client at the consent service (client credentials for the rail)."""
    client_secret: SecretStr | None = None
    """Secret of ``client_id``; unset: calls to the rail carry no token (the rail refuses them)."""
    reference_secret: Base64Secret = b"clearway-dev-reference-key"
    """HMAC key (base64) deriving a transfer's reference from its idempotency key."""
    lock_timeout_s: float = 30.0
    """How long a request waits for a concurrent one holding the same idempotency key."""
    key_retention: timedelta = timedelta(days=7)
    """How long idempotency keys are kept (seconds, or ISO 8601 such as ``P7D``)."""
    maintenance_interval_s: float = 30.0
    """Interval of the maintenance jobs (stale and expired keys, open transfers)."""
    sweep_grace_s: float = 10.0
    """Age after which an open transfer is picked up again by the executor's sweep."""
    revocation_feed: bool = True
    """Follow the consent service's revocations (off only in isolated tests)."""
    run_executor: bool = True
    """Execute transfers in this replica (off: another replica executes)."""
    seed_demo: bool = False
    """Register the demo tenants' accounts at start (development only)."""

    def service_tokens(self, scope: str) -> ServiceTokenSource | None:
        """Short-lived tokens for ``scope`` (``rail:charges``) from the consent service,
        or ``None`` without a client secret (docs/design.md §7)."""
        if self.client_secret is None:
            return None
        return ServiceTokenSource(
            self.token_url or f"{self.issuer}/oauth/token",
            self.client_id,
            self.client_secret,
            scope=scope,
        )

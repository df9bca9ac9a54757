"""The transfer service's settings: ``CLEARWAY_TRANSFER_<FIELD>`` (see docs/configuration.md)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, ClassVar

from pydantic import SecretStr

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


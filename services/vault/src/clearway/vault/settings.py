"""The card vault's settings: ``CLEARWAY_VAULT_<FIELD>`` (see docs/configuration.md)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import Field, SecretStr

from clearway.shared.crypto.rotation import SealedColumn
from clearway.shared.crypto.settings import KeySettings
from clearway.shared.settings import internal

EVENTS_TOPIC = "clearway.vault.events.v1"


class VaultSettings(KeySettings):
    """The card vault: tokenizes card numbers, detokenizes them for the rail only."""

    service: ClassVar[str] = "vault"
    supports_rotated_db_logins: ClassVar[bool] = True
    sealed_columns: ClassVar[tuple[SealedColumn, ...]] = (
        SealedColumn("cards", "sealed", "token"),
        SealedColumn("fingerprint_keys", "sealed"),
    )

    port: int = 8006
    db_password: SecretStr = SecretStr("vault-dev")
    jwks: Mapping[str, Any] | None = internal()
    """A static JWK Set (tests); ``None`` fetches ``CLEARWAY_OAUTH_JWKS_URL``."""
    retention_interval_s: float = Field(3600.0, gt=0)
    """How often the retention purge runs (rules: ``vault.retention_rules``)."""
    run_relay: bool = True
    """Run the outbox relay (the vault's audit events) in this process."""

    def topic(self, name: str) -> str:
        return self.platform.topic(name)

"""The transfer service's settings: ``CLEARWAY_TRANSFER_<FIELD>`` (see docs/configuration.md)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, ClassVar

from pydantic import Field, SecretStr, model_validator

from clearway.shared.auth.client_credentials import ServiceTokenSource
from clearway.shared.crypto.keyring import development_secret
from clearway.shared.crypto.settings import KeySettings
from clearway.shared.dev_clients import seeded_client_secret
from clearway.shared.mode import Mode
from clearway.shared.residency import Region
from clearway.shared.settings import Base64Secret, SettingsError, internal


class TransferSettings(KeySettings):
    """Transfer intents executed exactly once. Its KEK seals its rotated database
    passwords (docs/design.md §9)."""

    service: ClassVar[str] = "transfer"
    supports_rotated_db_logins: ClassVar[bool] = True

    port: int = 8001
    db_password: SecretStr = SecretStr("transfer-dev")
    jwks: dict[str, Any] | None = internal()
    """A static JWK Set (tests)."""
    rail_url: str = "http://127.0.0.1:8005"
    """Base URL of the live payment rail, where live tenants' transfers go (the sandbox
    rail locally)."""
    sandbox_rail_url: str = "http://127.0.0.1:8005"
    """Base URL of the sandbox rail, where test-mode transfers (of a tenant's sandbox
    twin, ``<tenant>_test``) go; locally the same sandbox rail as ``rail_url``. In
    production it must differ from ``rail_url`` (docs/design.md §10)."""
    vault_urls: dict[Region, str] = {"eu": "http://127.0.0.1:8006", "us": "http://127.0.0.1:8106"}
    """Base URL of the card vault of each region, JSON (``{"eu": "https://…", "us": …}``):
    a ``tok_`` source is checked and detokenized at the vault of the tenant's region
    (``CLEARWAY_TENANT_REGIONS``; docs/design.md §9)."""
    token_url: str | None = None
    """OAuth token endpoint for service tokens; unset: ``<issuer>/oauth/token``."""
    client_id: str = "clearway-transfer"
    """This service's OAuth client at the consent service (service tokens for the rail and
    the vault)."""
    client_secret: SecretStr | None = None
    """Secret of ``client_id``; unset in development: the one the consent service's demo
    seed wrote to ``<local dir>/dev-clients.json``; neither: calls to the rail carry no
    token (the rail refuses them)."""
    reference_secret: Base64Secret | None = None
    """HMAC key (base64 of 32 random bytes) deriving a transfer's reference from its
    idempotency key, the same on every replica and for ever (references stay unique
    after keys are purged); unset in development: generated once in the development
    keyring directory (``<local dir>/keys/transfer-reference.secret``)."""
    lock_timeout_s: float = 30.0
    """How long a request waits for a concurrent one holding the same idempotency key."""
    key_retention: timedelta = timedelta(days=7)
    """Default retention of idempotency keys (seconds, or ISO 8601 such as ``P7D``): the
    rule ``idempotency_keys`` of ``transfer.retention_rules`` unless an operator overrode
    it (``clearway-retention transfer set``)."""
    intent_max_age_s: float = Field(86400.0, gt=0)
    """Oldest Kafka intent executed: an intent's token is judged at the time the intent
    was sent (its record timestamp), so a backlog after an outage still executes; one
    sent longer ago than this is refused and dead-lettered (docs/design.md §3)."""
    maintenance_interval_s: float = 30.0
    """Interval of the maintenance jobs (stale keys, retention purge, open transfers)."""
    sweep_grace_s: float = 10.0
    """Age after which an open transfer is picked up again by the executor's sweep."""
    revocation_feed: bool = True
    """Follow the consent service's revocations (off only in isolated tests)."""
    run_executor: bool = True
    """Execute transfers in this replica (off: another replica executes)."""
    seed_demo: bool = False
    """Register the demo tenants' accounts at start (development only)."""

    @model_validator(mode="after")
    def _a_vault_per_region(self) -> TransferSettings:
        missing = self.platform.residency().regions_in_use() - self.vault_urls.keys()
        if missing:
            raise ValueError(
                f"{self.env_name('vault_urls')} has no vault for region(s)"
                f" {', '.join(sorted(missing))} where tenants live"
            )
        return self

    def production_problems(self) -> dict[str, str]:
        """The kit's refusals and test-mode transfers sent to the live rail."""
        problems = super().production_problems()
        if _same_url(self.rail_url, self.sandbox_rail_url):
            problems[self.env_name("sandbox_rail_url")] = (
                "is the live rail: test-mode transfers would move real money"
            )
        return problems

    def rail_url_for(self, mode: Mode) -> str:
        """The rail that transfers of ``mode`` go to (docs/design.md §10)."""
        return self.sandbox_rail_url if mode is Mode.TEST else self.rail_url

    def modes_on_rail(self, url: str) -> tuple[Mode, ...]:
        """The modes whose transfers go to the rail at ``url`` (both when the live and
        the sandbox rail are one, as locally): what a reconciliation of it compares."""
        return tuple(m for m in Mode if _same_url(self.rail_url_for(m), url))

    def reference_key(self) -> bytes:
        """The reference HMAC key: the configured one, or in development the one generated
        in the development keyring directory; never a built-in value (docs/design.md §9).
        In production an unset key is refused (``from_env`` refuses it before this)."""
        if self.reference_secret is not None:
            return self.reference_secret.get_secret_value()
        if self.platform.env == "production":
            raise SettingsError({self.env_name("reference_secret"): "required in production"})
        return development_secret(self.platform.local_dir / "keys", "transfer-reference")

    def service_tokens(self, scope: str) -> ServiceTokenSource | None:
        """Short-lived tokens for ``scope`` (``rail:charges``, ``cards:detokenize``, …)
        from the consent service, or ``None`` without a client secret (docs/design.md §7)."""
        secret = self.client_secret
        if secret is None and self.platform.env != "production":
            seeded = seeded_client_secret(self.platform.local_dir, self.client_id)
            secret = SecretStr(seeded) if seeded is not None else None
        if secret is None:
            return None
        return ServiceTokenSource(
            self.token_url or f"{self.issuer}/oauth/token", self.client_id, secret, scope=scope
        )


def _same_url(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")

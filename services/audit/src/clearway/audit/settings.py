"""The audit service's settings: ``CLEARWAY_AUDIT_<FIELD>`` (see docs/configuration.md)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import Field, SecretStr

from clearway.audit import handlers
from clearway.audit.signing import KEY_NAME, Keyring
from clearway.shared.crypto.settings import KeySettings, open_signing_provider
from clearway.shared.settings import internal


class AuditSettings(KeySettings):
    """The tamper-evident audit log. ``platform.database_url`` is an admin DSN:
    migrations run with it, the service then connects as its own append-only role and
    as its signer role. The checkpoint signing key lives in the key store
    (``KEY_PROVIDER``, ``HSM_*``); its KEK seals the rotated passwords of both roles."""

    service: ClassVar[str] = "audit"
    supports_rotated_db_logins: ClassVar[bool] = True
    rotated_roles: ClassVar[tuple[str, ...]] = ("audit_signer",)  # store_roles.SIGNER_ROLE
    signing_keys: ClassVar[tuple[str, ...]] = (KEY_NAME,)

    port: int = 8004
    db_password: SecretStr = SecretStr("clearway-audit-dev")
    signer_db_password: SecretStr = SecretStr("clearway-audit-signer-dev")
    """Static password of ``clearway_audit_signer``, the role that writes checkpoints and
    cuts (development only: with ``DB_LOGINS=rotated`` its logins rotate like the
    service's own, and production refuses a static one)."""
    verification_workers: int = 2
    """Threads that read (libpq) and hash blocks of records during a verification job."""
    verification_concurrency: int = 1
    """Verification jobs running at once in one process (others wait, queued)."""
    verification_min_interval_s: float = 60.0
    """Least time between two verification requests of one tenant (else 429)."""
    jwks: dict[str, Any] | None = internal()
    """A fixed JWK Set (tests); else the platform's ``CLEARWAY_OAUTH_JWKS_URL``."""
    keyring: Keyring | None = internal()
    """A keyring in memory (tests); else the key store's ``audit-checkpoint`` keys."""
    checkpoint_key_rotation_interval_s: float = Field(365 * 86400.0, gt=0)
    """Age at which a new checkpoint signing key version starts signing."""
    checkpoint_interval_s: float = 60.0
    """Interval between signed checkpoints of the log."""
    partition_unit: Literal["month", "week", "day", "hour"] = "month"
    """Size of the log's time partitions."""
    consume: bool = True
    """Consume the domain event topics (off: API and checkpoints only)."""
    metadata_max_age_ms: int = 30_000
    """How often the consumer refreshes topic metadata (finds new topics)."""
    clock: Callable[[], datetime] = internal(handlers.utc_now)
    """The time source (tests use a fake clock)."""

    def development_secrets(self) -> list[str]:
        found = super().development_secrets()
        if self.rotates_db_logins:  # the signer's static password is not used either
            found = [v for v in found if v != self.env_name("signer_db_password")]
        return found

    def production_problems(self) -> dict[str, str]:
        problems = super().production_problems()
        if not self.rotates_db_logins:
            problems[self.env_name("signer_db_password")] = (
                "a static database password is refused in production: set"
                f" {self.env_name('db_logins')}=rotated (the signer's logins rotate too)"
            )
        return problems

    def load_keyring(self) -> Keyring:
        """The checkpoint keys; raises ``KeyUnavailable`` when the HSM is down, so the
        service refuses to start."""
        return self.keyring or Keyring(open_signing_provider(self, KEY_NAME))

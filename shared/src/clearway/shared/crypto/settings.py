"""Key settings of a service that holds keys (docs/design.md §9).

A service whose settings derive from :class:`KeyStoreSettings` gets
``CLEARWAY_<SVC>_KEY_PROVIDER`` (``hsm`` or ``keyring``), the PKCS#11 module,
token and PIN, and the development keyring's directory; one that seals data
derives from :class:`KeySettings`, which adds the KEK's rotation and the data-key
cache. ``CLEARWAY_ENV=production`` refuses the development keyring and requires
the HSM PIN.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator

from clearway.shared.crypto.envelope import BatchPolicy, DekCache, Envelope
from clearway.shared.crypto.hsm import HsmProvider
from clearway.shared.crypto.hsm_signing import HsmSigningProvider
from clearway.shared.crypto.keyring import KeyringProvider
from clearway.shared.crypto.keys import KeyProvider
from clearway.shared.crypto.rotation import SealedColumn
from clearway.shared.crypto.signing import Algorithm, KeyringSigningProvider, SigningProvider
from clearway.shared.crypto.softhsm import DEFAULT_MODULE, ensure_token
from clearway.shared.settings import ServiceSettings

__all__ = [
    "KeySettings",
    "KeyStoreSettings",
    "open_envelope",
    "open_provider",
    "open_signing_provider",
]


class KeyStoreSettings(ServiceSettings):
    """Base of the settings of a service holding keys (not itself a service)."""

    abstract_settings: ClassVar[bool] = True
    #: the signing keys of the service (names), rotated by ``clearway-keys``
    signing_keys: ClassVar[tuple[str, ...]] = ()

    key_provider: Literal["hsm", "keyring"] = "hsm"
    """Where the service's keys live: ``hsm`` (PKCS#11) or ``keyring`` (a local
    file, development only; refused in production)."""
    hsm_module: str = DEFAULT_MODULE
    """Path of the PKCS#11 module of the HSM."""
    hsm_token: str = "clearway"  # noqa: S105 - a token label, not a secret
    """Label of the HSM token holding the service's keys."""
    hsm_pin: SecretStr | None = None
    """User PIN of the HSM token; unset in development: a local SoftHSM2 token with a
    generated PIN under the platform's local directory."""
    keyring_dir: Path | None = None
    """Directory of the development keyring (default ``<local dir>/keys``)."""

    @property
    def rotates_db_logins(self) -> bool:
        """Whether the service logs in with rotated passwords (needs a KEK to seal them:
        :class:`KeySettings`)."""
        return False

    def development_secrets(self) -> list[str]:
        found = super().development_secrets()
        if self.key_provider == "keyring":
            found = [v for v in found if v != self.env_name("hsm_pin")]
        if self.rotates_db_logins:  # the password is not used at all
            found = [v for v in found if v != self.env_name("db_password")]
        return found

    def production_problems(self) -> dict[str, str]:
        problems = super().production_problems()
        if self.key_provider == "keyring":
            problems[self.env_name("key_provider")] = (
                "the development keyring is refused in production: set it to hsm"
                f" with {self.env_name('hsm_module')}, {self.env_name('hsm_token')}"
                f" and {self.env_name('hsm_pin')}"
            )
        if self.hsm_pin is None:
            problems[self.env_name("hsm_pin")] = "required in production (the HSM user PIN)"
        return problems

    def signing_algorithm(self, name: str) -> Algorithm | None:
        """The algorithm signing key ``name`` must use; ``None``: the key store's best."""
        return None

    def token_pin(self) -> str:
        """The HSM user PIN; in development a local SoftHSM2 token's generated one."""
        if self.hsm_pin is not None:
            return self.hsm_pin.get_secret_value()
        return ensure_token(self.platform.local_dir, self.hsm_token)


class KeySettings(KeyStoreSettings):
    """Base of the settings of a service holding secrets at rest (not itself a service)."""

    abstract_settings: ClassVar[bool] = True
    #: the columns of the service holding envelope blobs (re-wrapped on rotation)
    sealed_columns: ClassVar[tuple[SealedColumn, ...]] = ()

    kek_rotation_interval_s: float = Field(90 * 86400.0, gt=0)
    """Age at which a new key-encryption key version becomes primary."""
    dek_cache_size: int = Field(4096, ge=0)
    """Unwrapped batch keys kept in memory (0: no key cache at all)."""
    dek_cache_records: int = Field(256, ge=0)
    """Data keys of records sealed or opened recently kept in memory, so opening them
    again needs no derivation (0: none; ADR 0031)."""
    dek_cache_ttl_s: float = Field(60.0, ge=0)
    """How long an unwrapped key stays usable in memory."""
    batch_key_records: int = Field(65_536, gt=0, le=1 << 20)
    """Records sealed under one batch key before a new one is wrapped in the HSM."""
    batch_key_seconds: float = Field(300.0, gt=0)
    """Age at which a batch key stops sealing (it keeps opening its records)."""
    db_logins: Literal["static", "rotated"] = "static"
    """``rotated``: the service logs in as two alternating roles whose random passwords
    a job rotates, sealed with its KEK (docs/design.md §9); ``static``: ``DB_PASSWORD``
    (development only; refused in production)."""
    db_login_rotation_s: float = Field(86400.0, gt=0)
    """Age at which a rotated database login gets a fresh password."""
    db_login_lifetime_s: float = Field(2 * 86400.0, gt=0)
    """How long a rotated password logs in (``VALID UNTIL``); the previous one keeps
    working for the lifetime minus the rotation interval."""
    db_login_refresh_s: float = Field(60.0, gt=0)
    """How often each replica checks for a due rotation and picks up the newest login."""
    db_reader_password: SecretStr | None = Field(default=None, validate_default=True)
    """Password of ``clearway_<svc>_reader``, the login that may read only the sealed
    rotated passwords: with ``DB_LOGINS=rotated`` and ``CLEARWAY_MIGRATE_AT_START=false``
    the service reads its logins with it and ``clearway-migrate`` (which sets it)
    rotates them, so the service holds no admin login (ADR 0044)."""
    tenant_key_refresh_s: float = Field(30.0, gt=0)
    """How often each replica drops the tenant keys of tenants crypto-shredded elsewhere
    (ADR 0027)."""

    #: set by a service whose bootstrap uses rotated logins (``db_logins=rotated``)
    supports_rotated_db_logins: ClassVar[bool] = False
    #: the roles whose logins rotate (``clearway_<role>``): the service's own, and any
    #: other role it connects as
    rotated_roles: ClassVar[tuple[str, ...]] = ()

    @field_validator("db_logins")
    @classmethod
    def _supported(cls, value: str) -> str:
        if value == "rotated" and not cls.supports_rotated_db_logins:
            raise ValueError("this service does not rotate its database logins yet")
        return value

    @model_validator(mode="after")
    def _overlap(self) -> KeySettings:
        # every replica must pick up the new login before the previous one expires
        if self.db_login_lifetime_s < self.db_login_rotation_s + 2 * self.db_login_refresh_s:
            raise ValueError(
                f"{self.env_name('db_login_lifetime_s')} must exceed"
                f" {self.env_name('db_login_rotation_s')} by two refresh intervals"
            )
        return self

    @field_validator("db_reader_password")
    @classmethod
    def _reader(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        platform = info.data.get("platform")
        reads = info.data.get("db_logins") == "rotated" and not (
            platform is None or platform.migrate_at_start
        )
        if reads and value is None:
            raise ValueError(
                f"required with {cls.env_name('db_logins')}=rotated when the service does not"
                " migrate at start (CLEARWAY_MIGRATE_AT_START=false): it reads its logins with it"
            )
        return value

    @property
    def rotates_db_logins(self) -> bool:
        return self.db_logins == "rotated"

    @property
    def reads_db_logins(self) -> bool:
        """True when the service only reads its rotated logins (as its reader login) and
        ``clearway-migrate`` rotates them: it holds no admin login."""
        return self.rotates_db_logins and not self.platform.migrate_at_start

    @property
    def db_roles(self) -> tuple[str, ...]:
        """The roles whose logins rotate: the service's own first."""
        return (self.service, *self.rotated_roles)

    def development_secrets(self) -> list[str]:
        found = super().development_secrets()
        if not self.reads_db_logins:  # the reader login is not used
            found = [v for v in found if v != self.env_name("db_reader_password")]
        return found

    def static_db_password_refusal(self) -> str:
        if not self.supports_rotated_db_logins:
            return super().static_db_password_refusal()
        return (
            "a static database password is refused in production: set"
            f" {self.env_name('db_logins')}=rotated (passwords rotated by the service,"
            " sealed with its HSM key)"
        )


def open_provider(settings: KeySettings, name: str | None = None) -> KeyProvider:
    """The key provider of ``settings`` for KEK ``name`` (default: the service).

    Creates the KEK's first version when absent; raises
    :class:`~clearway.shared.crypto.keys.KeyUnavailable` with a clear message when
    the HSM cannot be reached, so a service refuses to start.
    """
    name = name or settings.service
    local = settings.platform.local_dir
    provider: KeyProvider
    if settings.key_provider == "keyring":
        provider = KeyringProvider(name, settings.keyring_dir or local / "keys")
    else:
        provider = HsmProvider(
            name,
            module=settings.hsm_module,
            token_label=settings.hsm_token,
            pin=settings.token_pin(),
        )
    provider.ensure()
    return provider


def open_signing_provider(
    settings: KeyStoreSettings, name: str, algorithm: Algorithm | None = None
) -> SigningProvider:
    """The signing keys ``name`` of ``settings``' key store, version 1 created on first
    start; ``algorithm`` forces one (default: Ed25519, or ECDSA P-256 on a token
    without EdDSA). Raises
    :class:`~clearway.shared.crypto.keys.KeyUnavailable` when the HSM is down."""
    provider: SigningProvider
    if settings.key_provider == "keyring":
        directory = settings.keyring_dir or settings.platform.local_dir / "keys"
        provider = KeyringSigningProvider(name, directory, algorithm=algorithm or "Ed25519")
    else:
        provider = HsmSigningProvider(
            name,
            module=settings.hsm_module,
            token_label=settings.hsm_token,
            pin=settings.token_pin(),
            algorithm=algorithm,
        )
    provider.ensure()
    return provider


def open_envelope(settings: KeySettings, name: str | None = None) -> Envelope:
    """An :class:`Envelope` over :func:`open_provider` with the configured DEK cache."""
    cache = DekCache(
        settings.dek_cache_size, settings.dek_cache_ttl_s, records=settings.dek_cache_records
    )
    batches = BatchPolicy(settings.batch_key_records, settings.batch_key_seconds)
    return Envelope(open_provider(settings, name), cache, batches)

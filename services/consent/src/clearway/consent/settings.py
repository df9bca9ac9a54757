"""The consent service's settings: ``CLEARWAY_CONSENT_<FIELD>`` (see docs/configuration.md)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, SecretStr

from clearway.consent.keys import ALGORITHMS, TOKEN_KEY
from clearway.shared.crypto.rotation import SealedColumn
from clearway.shared.crypto.settings import KeySettings
from clearway.shared.crypto.signing import Algorithm
from clearway.shared.events import events_topic
from clearway.shared.settings import Csv


class ConsentSettings(KeySettings):
    """The OAuth 2.0 authorization server and consent store; its public URL is the
    platform's ``CLEARWAY_OAUTH_ISSUER``."""

    service: ClassVar[str] = "consent"
    supports_rotated_db_logins: ClassVar[bool] = True
    #: the token-signing keys in the HSM (``clearway-keys consent rotate --key consent-token``)
    signing_keys: ClassVar[tuple[str, ...]] = (TOKEN_KEY,)
    sealed_columns: ClassVar[tuple[SealedColumn, ...]] = (
        SealedColumn("session_keys", "sealed"),
        SealedColumn("index_keys", "sealed"),
        # consent evidence and user PII (clearway.consent.personal)
        *(
            SealedColumn("consents", c)
            for c in ("subject", "purpose", "authorization_details", "history", "evidence")
        ),
        SealedColumn("users", "username", "subject"),
        SealedColumn("users", "display_name", "subject"),
    )

    port: int = 8003
    global_database_url: str | None = None
    """Database of the global authorization server's tables (clients, signing keys,
    issued tokens, seen assertions; docs/design.md §9): unset, this deployment's own
    database (``CLEARWAY_DATABASE_URL``) holds them, as in the issuer's region; a
    deployment of another region points it at that database and keeps its users,
    consents and their evidence in its own."""
    signing_hsm_token: str | None = None
    """Label of the HSM token holding the token-signing keys, shared by every region's
    deployment (one issuer), logged in with ``HSM_PIN``; unset: ``HSM_TOKEN``, the
    token of the region's KEK."""
    db_password: SecretStr = SecretStr("consent-dev")
    signing_alg: Literal["ES256", "EdDSA"] = "ES256"
    """JWS algorithm of access tokens signed by new keys (RFC 7518 §3.4, RFC 8037): the
    key pairs are generated in the HSM; ES256 because relying parties' support of
    ``EdDSA`` varies."""
    token_ttl_s: int = 300
    """Lifetime of access tokens."""
    code_ttl_s: int = 60
    """Lifetime of authorization codes."""
    par_ttl_s: int = 90
    """Lifetime of pushed authorization requests (RFC 9126 ``expires_in``)."""
    consent_ttl_s: int = 3600
    """How long an authorised consent stays valid."""
    key_activation_delay_s: float = 10.0
    """Delay between publishing a new signing key and signing with it."""
    key_rotation_interval_s: float = 86400.0
    """Age at which the signing key is rotated."""
    manual_key_rotation_interval_s: float = 300.0
    """Least time between the newest signing key's activation and an operator's
    rotation (``platform:keys``); a rotation while a new key is pending is always refused."""
    secret_overlap_s: int = 86400
    """How long a rotated client secret keeps working."""
    lock_after: int = 5
    """Failed logins after which an account is locked."""
    auth_anomaly_addresses: int = 20
    """Distinct source addresses failing one client's authentication within
    ``auth_anomaly_window_s`` that make an anomaly (``client.auth_anomaly``)."""
    auth_anomaly_window_s: float = 600.0
    """Window of the anomaly pattern, in seconds."""
    auth_guard_s: float = 900.0
    """After an anomaly, how long only addresses that authenticated the client within
    the last day are checked (the client is never locked for its known callers)."""
    argon2_time_cost: int = 3
    """argon2id passes for new client-secret and password hashes (RFC 9106 §4 second
    recommended option by default); hashes carry their own parameters."""
    argon2_memory_kib: int = 65536
    """argon2id memory for new hashes, in KiB."""
    sign_in_window_s: float = Field(300.0, gt=0)
    """Window of the sign-in form's rate limits (each attempt costs an argon2 check)."""
    sign_in_max_per_username: int = Field(5, gt=0)
    """Sign-in attempts per username in a window (a success starts it again); more get 429."""
    sign_in_max_per_address: int = Field(30, gt=0)
    """Sign-in attempts per client address in a window; more get 429."""
    seed_demo: bool = False
    """Seed the demo tenants and clients at start (``make run`` turns it on); refused in
    production (the demo users share a published password)."""
    sign_in_clients: Csv[tuple[str, ...]] = ("clearway-console",)
    """First-party clients of the operator tenant that may push a sign-in request (no
    ``consent_id``): the user's own token, narrowed to the user's role (docs/design.md §7)."""
    console_redirect_uris: Csv[tuple[str, ...]] = (
        "http://127.0.0.1:8007/auth/callback",
        "http://localhost:8007/auth/callback",
    )
    """Redirect URIs the demo seed registers for the console client ``clearway-console``."""
    expiry_sweep_s: float = 5.0
    """Interval of the sweep that expires due consents."""
    retention_interval_s: float = Field(3600.0, gt=0)
    """How often the retention purge runs (rules: ``consent.retention_rules``)."""

    @property
    def global_database(self) -> str:
        """The admin URL of the database holding the authorization server's tables."""
        return self.global_database_url or self.platform.database_url

    @property
    def global_elsewhere(self) -> bool:
        """Whether the global tables live in another database than the region's."""
        return self.global_database != self.platform.database_url

    def signing_store(self) -> ConsentSettings:
        """These settings with the signing token as the key store (its keys only)."""
        return self.model_copy(update={"hsm_token": self.signing_hsm_token or self.hsm_token})

    def signing_algorithm(self, name: str) -> Algorithm | None:
        return ALGORITHMS[self.signing_alg] if name == TOKEN_KEY else None

    def production_problems(self) -> dict[str, str]:
        problems = super().production_problems()
        if self.seed_demo:
            problems[self.env_name("seed_demo")] = (
                "refused in production: the demo users' password is published"
            )
        return problems

    @property
    def topic(self) -> str:
        return self.platform.topic(events_topic(self.service))

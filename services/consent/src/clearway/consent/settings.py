"""The consent service's settings, read from the environment by ``from_env``."""

from __future__ import annotations

import base64
import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from clearway.shared.settings import PlatformSettings

log = logging.getLogger(__name__)

DEFAULT_ISSUER = "http://127.0.0.1:8003"
# Development-only fallback; production sets CLEARWAY_CONSENT_KEK (32 bytes, base64).
_DEV_SECRET = b"clearway-consent-development-only"


@dataclass(frozen=True)
class ConsentSettings:
    platform: PlatformSettings = field(default_factory=PlatformSettings)
    issuer: str = DEFAULT_ISSUER
    port: int = 8003
    role_password: str = "consent-dev"  # noqa: S105 (dev default, overridden by env)
    #: AES-256 key-encryption key for private signing keys at rest.
    kek: bytes = hashlib.sha256(_DEV_SECRET + b"/kek").digest()
    #: HMAC key of the development login session cookie and CSRF tokens.
    session_key: bytes = hashlib.sha256(_DEV_SECRET + b"/session").digest()
    alg: str = "ES256"
    token_ttl_s: int = 300
    code_ttl_s: int = 60
    par_ttl_s: int = 90
    consent_ttl_s: int = 3600
    key_activation_delay_s: float = 10.0
    key_rotation_interval_s: float = 86400.0
    secret_overlap_s: int = 86400
    lock_after: int = 5
    #: argon2id cost for new client-secret and password hashes (RFC 9106 §4 second
    #: recommended option by default); hashes carry their own parameters.
    argon2_time_cost: int = 3
    argon2_memory_kib: int = 65536
    seed_demo: bool = False
    local_dir: Path = Path(".local")
    expiry_sweep_s: float = 5.0

    @property
    def topic(self) -> str:
        return self.platform.topic("clearway.consent.events.v1")

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> ConsentSettings:
        e = dict(os.environ if env is None else env)
        d = cls()
        kek = base64.b64decode(e["CLEARWAY_CONSENT_KEK"]) if "CLEARWAY_CONSENT_KEK" in e else d.kek
        if "CLEARWAY_CONSENT_KEK" not in e:
            log.warning("CLEARWAY_CONSENT_KEK not set: using the development key-encryption key")
        session = e.get("CLEARWAY_CONSENT_SESSION_KEY")
        # The embedded stack runner (deploy/local/platform.py) sets CLEARWAY_LOCAL_DIR;
        # there, demo data is seeded unless CLEARWAY_SEED_DEMO=0.
        seed = e.get("CLEARWAY_SEED_DEMO", "1" if "CLEARWAY_LOCAL_DIR" in e else "0") == "1"
        return cls(
            platform=PlatformSettings.from_env(e),
            issuer=e.get("CLEARWAY_OAUTH_ISSUER", DEFAULT_ISSUER).rstrip("/"),
            port=int(e.get("CLEARWAY_PORT", "8003")),
            role_password=e.get("CLEARWAY_CONSENT_DB_PASSWORD", d.role_password),
            kek=kek,
            session_key=base64.b64decode(session) if session else d.session_key,
            alg=e.get("CLEARWAY_CONSENT_SIGNING_ALG", d.alg),
            key_rotation_interval_s=float(
                e.get("CLEARWAY_CONSENT_KEY_ROTATION_S", d.key_rotation_interval_s)
            ),
            argon2_time_cost=int(e.get("CLEARWAY_CONSENT_ARGON2_TIME_COST", d.argon2_time_cost)),
            argon2_memory_kib=int(e.get("CLEARWAY_CONSENT_ARGON2_MEMORY_KIB", d.argon2_memory_kib)),
            seed_demo=seed,
            local_dir=Path(e.get("CLEARWAY_LOCAL_DIR", ".local")),
        )

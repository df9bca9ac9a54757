"""The webhook service's settings; tests build them directly, ``from_env`` reads ``CLEARWAY_*``."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from clearway.shared.settings import PlatformSettings
from clearway.webhooks.domain import JITTER, RETRY_SCHEDULE

#: Development-only key for secrets at rest. Production sets
#: CLEARWAY_WEBHOOKS_SECRET_KEY; the HSM/KMS envelope (docs/design.md §9) replaces it
#: with the data protection work.
DEV_SECRET_KEY = hashlib.sha256(b"clearway-webhooks-dev-only").digest()
EVENTS_TOPIC = "clearway.webhooks.events.v1"


@dataclass(frozen=True)
class WebhooksSettings:
    platform: PlatformSettings = field(default_factory=PlatformSettings)
    port: int = 8002
    issuer: str = "http://127.0.0.1:8003"
    #: a static JWK Set (tests); ``None`` fetches ``<issuer>/.well-known/jwks.json``
    jwks: Mapping[str, Any] | None = None
    role_password: str = "webhooks-dev"  # noqa: S105 (the dev role's password)
    secret_key: bytes = DEV_SECRET_KEY
    schedule: tuple[float, ...] = RETRY_SCHEDULE
    jitter: float = JITTER
    request_timeout_s: float = 15.0
    #: how long a claimed attempt is protected from other workers; after a crash
    #: the message becomes due again once its lease ran out
    lease_s: float = 45.0
    workers: int = 4
    batch_size: int = 100
    max_connections: int = 256
    poll_interval_s: float = 0.25
    #: networks the SSRF guard lets through although they are not public
    allow_networks: tuple[str, ...] = ()
    rotation_grace_s: float = 24 * 3600
    disable_after_failing_s: float = 5 * 24 * 3600
    max_payload_bytes: int = 256 * 1024
    response_body_limit: int = 1024
    run_relay: bool = True
    run_consumer: bool = True
    run_dispatcher: bool = True

    def topic(self, name: str) -> str:
        return self.platform.topic(name)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WebhooksSettings:
        e = os.environ if env is None else env
        d = cls()

        def num(name: str, default: float) -> float:
            return float(e[name]) if e.get(name) else default

        key = e.get("CLEARWAY_WEBHOOKS_SECRET_KEY")
        schedule = e.get("CLEARWAY_WEBHOOKS_SCHEDULE")
        nets = e.get("CLEARWAY_WEBHOOKS_ALLOW_NETWORKS", "")
        return cls(
            platform=PlatformSettings.from_env(dict(e)),
            port=int(e.get("CLEARWAY_PORT", d.port)),
            issuer=e.get("CLEARWAY_OAUTH_ISSUER", d.issuer),
            role_password=e.get("CLEARWAY_WEBHOOKS_ROLE_PASSWORD", d.role_password),
            secret_key=base64.b64decode(key) if key else d.secret_key,
            schedule=tuple(float(x) for x in schedule.split(",")) if schedule else d.schedule,
            jitter=num("CLEARWAY_WEBHOOKS_JITTER", d.jitter),
            request_timeout_s=num("CLEARWAY_WEBHOOKS_REQUEST_TIMEOUT", d.request_timeout_s),
            lease_s=num("CLEARWAY_WEBHOOKS_LEASE", d.lease_s),
            workers=int(num("CLEARWAY_WEBHOOKS_WORKERS", d.workers)),
            batch_size=int(num("CLEARWAY_WEBHOOKS_BATCH", d.batch_size)),
            poll_interval_s=num("CLEARWAY_WEBHOOKS_POLL", d.poll_interval_s),
            allow_networks=tuple(n.strip() for n in nets.split(",") if n.strip()),
            rotation_grace_s=num("CLEARWAY_WEBHOOKS_ROTATION_GRACE", d.rotation_grace_s),
            disable_after_failing_s=num(
                "CLEARWAY_WEBHOOKS_DISABLE_AFTER", d.disable_after_failing_s
            ),
        )

"""What the handlers need at hand, wired once by the bootstrap."""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg
from argon2 import PasswordHasher

from clearway.consent.keys import KeyRing
from clearway.consent.personal import PersonalData
from clearway.consent.settings import ConsentSettings
from clearway.consent.throttle import AuthThrottle
from clearway.shared.crypto.tenant_keys import TenantKeys
from clearway.shared.event_writer import EventWriter
from clearway.shared.residency import Residency


@dataclass
class Service:
    settings: ConsentSettings
    #: The region's users, consents and the flow around them (docs/design.md §9).
    pool: asyncpg.Pool
    #: The global authorization server's tables: clients, signing keys, issued tokens,
    #: seen assertions (the same database as ``pool`` in the issuer's region).
    global_pool: asyncpg.Pool
    keys: KeyRing
    #: HMAC key of the page session cookie and CSRF tokens (generated once, stored sealed)
    session_key: bytes = b""
    #: The one way this service emits: ``clearway.consent.events.v2``, ``/clearway/consent``.
    events: EventWriter = field(init=False)
    #: Sealing and blind indexes of consent evidence and user PII (its key loaded at start),
    #: each value bound to its tenant's key in this region's database (ADR 0027, 0039)
    pii: PersonalData = field(init=False)
    #: Failed client authentication by (client, address) (docs/design.md §7).
    throttle: AuthThrottle = field(init=False)
    #: The tenants whose users and consents this deployment holds (docs/design.md §9):
    #: another region's tenant is refused (421) before anything of it is read or written.
    residency: Residency = field(init=False)

    def __post_init__(self) -> None:
        self.events = EventWriter("consent", topic_prefix=self.settings.platform.topic_prefix)
        self.pii = PersonalData(self.keys.envelope, TenantKeys(self.keys.envelope, self.pool))
        self.residency = self.settings.platform.residency()
        self.throttle = AuthThrottle(
            anomaly_addresses=self.settings.auth_anomaly_addresses,
            anomaly_window_s=self.settings.auth_anomaly_window_s,
            guard_s=self.settings.auth_guard_s,
        )

    def hash_secret(self, secret: str) -> str:
        """An argon2id hash at the configured cost."""
        hasher = PasswordHasher(
            time_cost=self.settings.argon2_time_cost, memory_cost=self.settings.argon2_memory_kib
        )
        return hasher.hash(secret)

    @property
    def topic(self) -> str:
        return self.settings.topic

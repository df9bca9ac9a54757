"""The sandbox rail's settings: ``CLEARWAY_RAIL_<FIELD>`` (see docs/configuration.md)."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import SecretStr

from clearway.shared.crypto.settings import KeySettings
from clearway.shared.settings import internal


class RailSettings(KeySettings):
    """The sandbox payment rail (a stand-in for a real scheme, with fault injection). Its
    KEK seals its rotated database passwords (docs/design.md §9)."""

    service: ClassVar[str] = "rail"
    supports_rotated_db_logins: ClassVar[bool] = True

    port: int = 8005
    db_password: SecretStr = SecretStr("rail-dev")
    fault_seed: int | None = None
    """Seed of the fault injector's random choices (unset: random)."""
    jwks: dict[str, Any] | None = internal()
    """A static JWK Set (tests)."""
    run_relay: bool = True
    """Run the outbox relay (the audited rotations of its keys and logins) in this process."""

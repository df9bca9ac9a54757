"""The sandbox rail's settings: ``CLEARWAY_RAIL_<FIELD>`` (see docs/configuration.md)."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import SecretStr

from clearway.shared.settings import ServiceSettings, internal


class RailSettings(ServiceSettings):
    """The sandbox payment rail (a stand-in for a real scheme, with fault injection)."""

    service: ClassVar[str] = "rail"
    uses_kafka: ClassVar[bool] = False

    port: int = 8005
    db_password: SecretStr = SecretStr("rail-dev")
    fault_seed: int | None = None
    """Seed of the fault injector's random choices (unset: random)."""
    jwks_url: str | None = None
    """JWK Set URL of the issuer of service tokens; unset: ``<issuer>/.well-known/jwks.json``."""
    jwks: dict[str, Any] | None = internal()
    """A static JWK Set (tests)."""

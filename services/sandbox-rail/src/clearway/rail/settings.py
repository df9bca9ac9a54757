"""The sandbox rail's settings: ``CLEARWAY_RAIL_<FIELD>`` (see docs/configuration.md)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import SecretStr

from clearway.shared.settings import ServiceSettings


class RailSettings(ServiceSettings):
    """The sandbox payment rail (a stand-in for a real scheme, with fault injection)."""

    service: ClassVar[str] = "rail"

    port: int = 8005
    db_password: SecretStr = SecretStr("rail-dev")
    fault_seed: int | None = None
    """Seed of the fault injector's random choices (unset: random)."""

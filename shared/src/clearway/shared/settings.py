"""Connection settings every service reads from its environment.

``CLEARWAY_DATABASE_URL`` and ``CLEARWAY_KAFKA_BOOTSTRAP`` point at an existing
Postgres/Kafka; ``CLEARWAY_TOPIC_PREFIX`` lets tests and sandboxes share a
broker without sharing topics.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class PlatformSettings:
    """Where the platform's infrastructure is and how this process names things."""

    database_url: str = "postgresql://postgres@127.0.0.1:55432/clearway"
    kafka_bootstrap: str = "127.0.0.1:59092"
    topic_prefix: str = ""
    otlp_endpoint: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> PlatformSettings:
        """Read the ``CLEARWAY_*`` variables, falling back to the embedded stack's ports."""
        e = os.environ if env is None else env
        d = cls()
        return cls(
            database_url=e.get("CLEARWAY_DATABASE_URL", d.database_url),
            kafka_bootstrap=e.get("CLEARWAY_KAFKA_BOOTSTRAP", d.kafka_bootstrap),
            topic_prefix=e.get("CLEARWAY_TOPIC_PREFIX", ""),
            otlp_endpoint=e.get("OTEL_EXPORTER_OTLP_ENDPOINT"),
        )

    def topic(self, name: str) -> str:
        """The physical topic for a logical one (``clearway.transfer.events.v1``)."""
        return f"{self.topic_prefix}{name}"

    def with_database(self, url: str) -> PlatformSettings:
        return replace(self, database_url=url)

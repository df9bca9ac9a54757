"""Small helpers shared by the kit's integration tests."""

from __future__ import annotations

from clearway.shared.db import Migration, migrate
from clearway.shared.events import Event, new_event

SCHEMA = "kitdemo"
EFFECTS = Migration(
    "0001_effects",
    # No unique constraint on purpose: a double application would show as a
    # second row, so the tests count effects rather than trusting the inbox.
    "CREATE TABLE effects (id bigserial PRIMARY KEY, event_id text NOT NULL,"
    " correlation_id text, amount bigint NOT NULL)",
)


async def migrate_effects(database_url: str) -> None:
    """The ``kitdemo`` schema with its ``effects`` table (and the kit's inbox/outbox)."""
    await migrate(
        database_url, schema=SCHEMA, service="kitdemo", migrations=[EFFECTS], role_password="dev"
    )


def demo_event(i: int, *, keys: int = 97) -> Event:
    """Event ``i`` of a stream of ``kit.demo`` events spread over ``keys`` aggregates."""
    return new_event(
        type="kit.demo",
        source="/tests",
        aggregate_id=f"agg_{i % keys}",
        aggregate_version=i,
        data={"amount": i},
        correlation_id=f"corr_{i}",
    )

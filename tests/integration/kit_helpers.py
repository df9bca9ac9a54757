"""Small helpers shared by the kit's integration tests."""

from __future__ import annotations

from clearway.shared.db import Migration

SCHEMA = "kitdemo"
EFFECTS = Migration(
    "0001_effects",
    # No unique constraint on purpose: a double application would show as a
    # second row, so the tests count effects rather than trusting the inbox.
    "CREATE TABLE effects (id bigserial PRIMARY KEY, event_id text NOT NULL,"
    " correlation_id text, amount bigint NOT NULL)",
)

-- Calls on deprecated API versions (docs/design.md §10): counts per ISO week (its
-- Monday, UTC), client, version and feature (method and route template), flushed by
-- the service's deprecation-usage job; deprecation_digests marks the weeks whose
-- client.deprecation_digest was written (once, whatever the number of replicas).
CREATE TABLE IF NOT EXISTS deprecated_calls (
    week          date        NOT NULL,
    tenant        text        NOT NULL,
    client_id     text        NOT NULL,
    version       text        NOT NULL,
    feature       text        NOT NULL,
    calls         bigint      NOT NULL CHECK (calls > 0),
    last_call_at  timestamptz NOT NULL,
    PRIMARY KEY (week, client_id, version, feature)
);

CREATE TABLE IF NOT EXISTS deprecation_digests (
    week       date        NOT NULL,
    client_id  text        NOT NULL,
    sent_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (week, client_id)
);

-- The kit's bookkeeping in every service schema (docs/design.md §4).
-- outbox: events written in the same transaction as the state change; the relay
-- publishes and deletes them. inbox: (consumer, event_id) applied by this service.
CREATE TABLE IF NOT EXISTS outbox (
    id          bigserial PRIMARY KEY,
    event_id    text        NOT NULL,
    topic       text        NOT NULL,
    key         bytea,
    headers     jsonb       NOT NULL,
    payload     bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE OR REPLACE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('clearway_outbox_' || TG_TABLE_SCHEMA, '');
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS outbox_notify ON outbox;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();

CREATE TABLE IF NOT EXISTS inbox (
    consumer        text        NOT NULL,
    event_id        text        NOT NULL,
    correlation_id  text,
    processed_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
CREATE INDEX IF NOT EXISTS inbox_correlation ON inbox (correlation_id);

-- Webhook delivery (docs/design.md §1, §6): endpoints, secrets, messages, attempts,
-- dead letters and replay jobs. Nothing is ever deleted by the dispatcher:
-- a message ends delivered, failed (dead-lettered) or skipped.
CREATE TABLE endpoints (
    id                text PRIMARY KEY,
    tenant            text NOT NULL,
    url               text NOT NULL,
    description       text NOT NULL DEFAULT '',
    event_types       text[] NOT NULL,
    rate_limit_per_s  double precision,
    disabled          boolean NOT NULL DEFAULT false,
    disabled_reason   text,
    failing_since     timestamptz,
    -- per-endpoint throttle shared by every worker: the earliest time the next
    -- request may start (rate limit slots, Retry-After of a 429)
    next_allowed_at   timestamptz NOT NULL DEFAULT 'epoch',
    deleted_at        timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX endpoints_tenant ON endpoints (tenant) WHERE deleted_at IS NULL;

-- whsec_ secrets, AES-256-GCM encrypted; expires_at is set on the old secret
-- when it is rotated (it keeps signing until then).
CREATE TABLE endpoint_secrets (
    id           bigserial PRIMARY KEY,
    endpoint_id  text NOT NULL REFERENCES endpoints (id),
    nonce        bytea NOT NULL,
    ciphertext   bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz
);
CREATE INDEX endpoint_secrets_endpoint ON endpoint_secrets (endpoint_id);

CREATE TABLE messages (
    id               text PRIMARY KEY,
    tenant           text NOT NULL,
    endpoint_id      text NOT NULL REFERENCES endpoints (id),
    event_id         text NOT NULL,
    event_type       text NOT NULL,
    correlation_id   text,
    traceparent      text,
    payload          bytea NOT NULL,
    status           text NOT NULL CHECK (status IN ('pending', 'delivered', 'failed', 'skipped')),
    attempts         integer NOT NULL DEFAULT 0,  -- every attempt ever (numbers attempt rows)
    round_attempts   integer NOT NULL DEFAULT 0,  -- attempts since the last (re)queue: the schedule
    queued_by        text NOT NULL DEFAULT 'event',  -- event | resend | replay:<job id>
    next_attempt_at  timestamptz,
    last_status_code integer,
    delivered_at     timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (endpoint_id, event_id)
);
CREATE INDEX messages_due ON messages (next_attempt_at) WHERE status = 'pending';
CREATE INDEX messages_tenant_created ON messages (tenant, created_at, id);
CREATE INDEX messages_endpoint_created ON messages (endpoint_id, created_at, id);
CREATE INDEX messages_event ON messages (event_id);
CREATE INDEX messages_correlation ON messages (correlation_id);

CREATE OR REPLACE FUNCTION messages_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('clearway_webhooks_due', '');
    RETURN NULL;
END $$;
CREATE TRIGGER messages_notify AFTER INSERT ON messages
    FOR EACH STATEMENT EXECUTE FUNCTION messages_notify();

CREATE TABLE attempts (
    id             bigserial PRIMARY KEY,
    message_id     text NOT NULL REFERENCES messages (id),
    attempt_no     integer NOT NULL,
    trigger        text NOT NULL,
    outcome        text NOT NULL,
    response_code  integer,
    latency_ms     double precision NOT NULL,
    response_body  text NOT NULL DEFAULT '',
    error          text,
    attempted_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX attempts_message ON attempts (message_id, attempt_no);

CREATE TABLE dead_letters (
    id            bigserial PRIMARY KEY,
    message_id    text NOT NULL REFERENCES messages (id),
    endpoint_id   text NOT NULL,
    tenant        text NOT NULL,
    reason        text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dead_letters_message ON dead_letters (message_id);

CREATE TABLE replay_jobs (
    id             text PRIMARY KEY,
    tenant         text NOT NULL,
    endpoint_id    text NOT NULL REFERENCES endpoints (id),
    status_filter  text NOT NULL CHECK (status_filter IN ('failed', 'skipped', 'all')),
    since          timestamptz NOT NULL,
    until          timestamptz NOT NULL,
    dry_run        boolean NOT NULL,
    state          text NOT NULL CHECK (state IN ('running', 'done')),
    -- resumable: (created_at, id) of the last message handled by the current run
    cursor_at      timestamptz,
    cursor_id      text,
    total          integer NOT NULL DEFAULT 0,
    processed      integer NOT NULL DEFAULT 0,
    queued         integer NOT NULL DEFAULT 0,
    skipped        integer NOT NULL DEFAULT 0,
    runs           integer NOT NULL DEFAULT 1,
    started_at     timestamptz NOT NULL DEFAULT now(),
    finished_at    timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now()
);

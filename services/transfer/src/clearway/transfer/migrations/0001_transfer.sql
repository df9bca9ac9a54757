-- Transfers, their idempotency keys, the double-entry ledger and reconciliation runs.
CREATE TABLE IF NOT EXISTS transfers (
    id              text PRIMARY KEY,
    tenant          text        NOT NULL,
    client_id       text        NOT NULL,
    reference       text        NOT NULL,
    fingerprint     text        NOT NULL,
    amount          bigint      NOT NULL CHECK (amount > 0),
    currency        text        NOT NULL,
    source          text        NOT NULL,
    destination     text        NOT NULL,
    description     text,
    metadata        jsonb       NOT NULL DEFAULT '{}',
    status          text        NOT NULL,
    version         integer     NOT NULL DEFAULT 1,
    rail_charge_id  text,
    failure_reason  text,
    actor           jsonb,
    correlation_id  text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    -- A second transfer for the same key stays impossible after the key is purged.
    UNIQUE (tenant, reference)
);
CREATE INDEX IF NOT EXISTS transfers_open ON transfers (status, updated_at)
    WHERE status IN ('pending', 'submitted');
CREATE INDEX IF NOT EXISTS transfers_reference ON transfers (reference);

CREATE TABLE IF NOT EXISTS idempotency_keys (
    tenant        text        NOT NULL,
    client_id     text        NOT NULL,
    key           text        NOT NULL,
    fingerprint   text        NOT NULL,
    state         text        NOT NULL,
    status_code   integer,
    response      jsonb,
    reference     text        NOT NULL,
    locked_at     timestamptz NOT NULL DEFAULT now(),
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    PRIMARY KEY (tenant, client_id, key)
);
CREATE INDEX IF NOT EXISTS idempotency_keys_expiry ON idempotency_keys (expires_at);

CREATE TABLE IF NOT EXISTS ledger_postings (
    id           bigserial PRIMARY KEY,
    transfer_id  text        NOT NULL REFERENCES transfers (id),
    account      text        NOT NULL,
    leg          text        NOT NULL CHECK (leg IN ('debit', 'credit')),
    amount       bigint      NOT NULL,
    currency     text        NOT NULL,
    posted_at    timestamptz NOT NULL DEFAULT now(),
    -- One debit and one credit per transfer, ever.
    UNIQUE (transfer_id, leg)
);

CREATE TABLE IF NOT EXISTS reconciliation_runs (
    id          text PRIMARY KEY,
    started_at  timestamptz NOT NULL DEFAULT now(),
    matched     integer     NOT NULL,
    missing_at_rail     integer NOT NULL,
    unexpected_at_rail  integer NOT NULL,
    mismatched  integer     NOT NULL
);
CREATE TABLE IF NOT EXISTS reconciliation_items (
    run_id     text NOT NULL REFERENCES reconciliation_runs (id),
    reference  text NOT NULL,
    kind       text NOT NULL,
    detail     text,
    PRIMARY KEY (run_id, reference)
);

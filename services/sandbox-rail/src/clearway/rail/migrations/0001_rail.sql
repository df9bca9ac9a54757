-- The sandbox rail's charges, keyed by the payer's reference (its idempotency key).
CREATE TABLE IF NOT EXISTS charges (
    reference    text PRIMARY KEY,
    charge_id    text        NOT NULL UNIQUE,
    amount       bigint      NOT NULL CHECK (amount > 0),
    currency     text        NOT NULL,
    source       text        NOT NULL,
    destination  text        NOT NULL,
    status       text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
-- Every POST seen, first or repeated: tests count attempts against charges.
CREATE TABLE IF NOT EXISTS charge_requests (
    id          bigserial PRIMARY KEY,
    reference   text        NOT NULL,
    created     boolean     NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);

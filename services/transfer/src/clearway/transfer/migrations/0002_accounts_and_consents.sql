-- Who may debit what (docs/design.md §5, §7): the account registry, the local
-- projection of payment consents, and the uses of consents by transfers.

-- An account belongs to its tenant's treasury, to one user at the tenant, or is a
-- counterparty known only by its IBAN (a creditor; never a source).
CREATE TABLE IF NOT EXISTS accounts (
    tenant      text        NOT NULL,
    id          text        NOT NULL,
    owner       text        NOT NULL CHECK (owner IN ('tenant', 'user', 'external')),
    user_id     text,
    iban        text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, id),
    CHECK ((owner = 'user') = (user_id IS NOT NULL))
);

-- Payment consents as the consent service's events describe them; a row only
-- moves forward: stage 1 AwaitingAuthorisation, 2 Authorised, 3 any final status
-- (a consent reaches one final status at most).
CREATE TABLE IF NOT EXISTS consents (
    id                     text PRIMARY KEY,
    tenant                 text        NOT NULL,
    subject                text,
    status                 text        NOT NULL,
    stage                  smallint    NOT NULL,
    authorization_details  jsonb,
    expires_at             timestamptz,
    updated_at             timestamptz NOT NULL DEFAULT now()
);

-- One row per consent a transfer used, written in the transfer's own transaction:
-- the primary key makes a single-use consent usable once, decided by Postgres.
-- A recurring consent keeps one row and counts its uses.
CREATE TABLE IF NOT EXISTS consent_uses (
    consent_id        text PRIMARY KEY,
    tenant            text        NOT NULL,
    single_use        boolean     NOT NULL,
    uses              integer     NOT NULL DEFAULT 1,
    first_transfer_id text        NOT NULL,
    last_used_at      timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE transfers ADD COLUMN IF NOT EXISTS consent_id text;

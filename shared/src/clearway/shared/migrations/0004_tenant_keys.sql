-- Per-tenant data keys of a service (docs/design.md §9, ADR 0027). One row per
-- tenant: a random 256-bit key sealed with the service's KEK (an envelope record
-- bound to tenant and id, re-wrapped on KEK rotation like any sealed column). The
-- tenant's records are sealed under batch keys bound to it, so crypto-shredding a
-- tenant sets `sealed` to NULL and every record of that tenant becomes unreadable;
-- the row stays as the tombstone that refuses new records for that tenant.
CREATE TABLE IF NOT EXISTS tenant_keys (
    id           text        PRIMARY KEY,
    tenant       text        NOT NULL UNIQUE,
    sealed       bytea,
    created_at   timestamptz NOT NULL DEFAULT now(),
    destroyed_at timestamptz,
    reason       text,
    CHECK ((sealed IS NULL) = (destroyed_at IS NOT NULL))
);

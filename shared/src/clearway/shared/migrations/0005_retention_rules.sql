-- Retention rules of a service (docs/design.md §9, ADR 0027): how long each class of
-- record the service owns is kept. Rows are seeded at start from the kit catalogue
-- (clearway.shared.retention.CATALOGUE, or the service's own default); a row an
-- operator overrode (clearway-retention <svc> set) keeps its value. The purge job
-- counts its runs here, which numbers its audited platform.records_purged events.
CREATE TABLE IF NOT EXISTS retention_rules (
    record_class      text        PRIMARY KEY,
    retention         interval    NOT NULL CHECK (retention > interval '0'),
    description       text        NOT NULL,
    overridden        boolean     NOT NULL DEFAULT false,
    overridden_by     text,
    reason            text,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    purges            bigint      NOT NULL DEFAULT 0,
    last_purge_at     timestamptz,
    last_purge_count  bigint
);

-- Key-encryption key versions and re-wrap cursors of a service (docs/design.md §9).
-- The KEKs themselves live in the HSM; this records when each version became
-- primary (scheduled rotation) and when it was destroyed, and where a re-wrap
-- job stopped, so it resumes after a crash.
CREATE TABLE IF NOT EXISTS kek_versions (
    kek          text        NOT NULL,
    version      integer     NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    destroyed_at timestamptz,
    PRIMARY KEY (kek, version)
);

CREATE TABLE IF NOT EXISTS kek_rewrap_cursors (
    table_name   text        NOT NULL,
    column_name  text        NOT NULL,
    target       integer     NOT NULL,
    last_id      text,
    rewrapped    bigint      NOT NULL DEFAULT 0,
    done_at      timestamptz,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (table_name, column_name)
);

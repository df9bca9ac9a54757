-- The audit log (docs/design.md §8). `content` is the record's canonical leaf (RFC 8785
-- JSON) and the only source of truth: the search columns are generated from it,
-- so they can never disagree with what was hashed. Positions are dense and
-- assigned by one writer at a time (advisory lock in clearway.audit.store).
CREATE TABLE records (
    content          text        NOT NULL,
    leaf_hash        bytea       NOT NULL CHECK (length(leaf_hash) = 32),
    recorded_at      timestamptz NOT NULL,
    occurred_at      timestamptz NOT NULL,
    position         bigint GENERATED ALWAYS AS (((content::jsonb) ->> 'seq')::bigint) STORED,
    resource         text GENERATED ALWAYS AS ((content::jsonb) ->> 'resource') STORED,
    correlation_id   text GENERATED ALWAYS AS ((content::jsonb) ->> 'correlation_id') STORED,
    actor_subject    text GENERATED ALWAYS AS ((content::jsonb) -> 'actor' ->> 'subject') STORED,
    tenant           text GENERATED ALWAYS AS ((content::jsonb) ->> 'tenant') STORED,
    -- The two timestamps outside the JSON (partition key, search order) must say
    -- what the JSON says. A text search, not a JSON parse, keeps appends cheap: in
    -- RFC 8785 JSON an unescaped '"recorded_at":"' can only be that member.
    CHECK (strpos(content, '"recorded_at":"' || to_char(recorded_at AT TIME ZONE 'UTC',
                                                'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') || '"') > 0),
    CHECK (strpos(content, '"occurred_at":"' || to_char(occurred_at AT TIME ZONE 'UTC',
                                                'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') || '"') > 0),
    PRIMARY KEY (position, recorded_at)
) PARTITION BY RANGE (recorded_at);

CREATE INDEX records_correlation ON records (correlation_id, occurred_at, position);
CREATE INDEX records_actor ON records (actor_subject, occurred_at, position);
CREATE INDEX records_resource ON records (resource, occurred_at, position);
CREATE INDEX records_time ON records (occurred_at, position);

-- Signed tree heads. `frontier` is the compact range of [0, tree_size) so the
-- next checkpoint hashes only the records added since.
CREATE TABLE checkpoints (
    tree_size   bigint      PRIMARY KEY,
    root_hash   bytea       NOT NULL,
    issued_at   timestamptz NOT NULL,
    key_id      text        NOT NULL,
    signature   bytea       NOT NULL,
    frontier    bytea[]     NOT NULL
);

-- Retention: positions below cut_size were dropped with their partition; the
-- compact range of [0, cut_size) keeps the remaining log verifiable against the
-- signed checkpoints.
CREATE TABLE retention_cuts (
    cut_size        bigint      PRIMARY KEY,
    frontier        bytea[]     NOT NULL,
    partition_name  text        NOT NULL,
    anchor_size     bigint      NOT NULL,
    operator        text        NOT NULL,
    reason          text        NOT NULL,
    cut_at          timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE partition_config (
    only_row  boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    unit      text    NOT NULL CHECK (unit IN ('month', 'week', 'day', 'hour'))
);
INSERT INTO partition_config (unit) VALUES ('month');

-- History is not rewritten, not even by the table owner. A superuser can switch
-- triggers off (session_replication_role = replica); the Merkle log and the
-- signed checkpoints are what catch that.
CREATE FUNCTION refuse_history_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit table % is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER records_append_only BEFORE UPDATE OR DELETE ON records
    FOR EACH ROW EXECUTE FUNCTION refuse_history_change();
CREATE TRIGGER records_no_truncate BEFORE TRUNCATE ON records
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_history_change();
CREATE TRIGGER checkpoints_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_history_change();
CREATE TRIGGER retention_cuts_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON retention_cuts
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_history_change();

-- The service role may not create tables; this definer function creates the
-- partition a new record needs, and nothing else.
CREATE FUNCTION ensure_record_partition(ts timestamptz)
RETURNS TABLE (name text, lower_bound timestamptz, upper_bound timestamptz)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = {schema}, pg_temp AS $$
DECLARE
    u text;
BEGIN
    SELECT c.unit INTO u FROM partition_config c;
    lower_bound := date_trunc(u, ts, 'UTC');
    upper_bound := ((lower_bound AT TIME ZONE 'UTC') + ('1 ' || u)::interval) AT TIME ZONE 'UTC';
    name := 'records_' || to_char(lower_bound AT TIME ZONE 'UTC', 'YYYYMMDD"t"HH24');
    IF to_regclass(name) IS NULL THEN
        PERFORM pg_advisory_xact_lock(hashtext('{schema}.partition:' || name));
        IF to_regclass(name) IS NULL THEN
            EXECUTE format('CREATE TABLE %I PARTITION OF records FOR VALUES FROM (%L) TO (%L)',
                           name, lower_bound, upper_bound);
        END IF;
    END IF;
    RETURN NEXT;
END $$;
REVOKE ALL ON FUNCTION ensure_record_partition(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ensure_record_partition(timestamptz) TO clearway_audit;

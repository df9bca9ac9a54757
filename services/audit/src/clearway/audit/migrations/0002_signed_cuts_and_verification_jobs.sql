-- Signed retention cuts and verification jobs (docs/design.md §8, ADR 0012, ADR 0013).

-- A cut is a statement signed with the audit key (clearway.audit.cuts): the
-- checkpoint it derives from (anchor_size = cut_size, anchor_root its signed root)
-- and every partition it dropped. Cuts written before this migration carry no
-- signature and no longer verify.
ALTER TABLE retention_cuts
    ADD COLUMN anchor_root bytea,
    ADD COLUMN partitions  text[],
    ADD COLUMN key_id      text,
    ADD COLUMN signature   bytea;

-- Checkpoints and cuts are written by the signer role (clearway_audit_signer) or
-- the owner, never by the service role that ingests. The grants say so too
-- (clearway.audit.store_roles); this trigger also covers the moment between the
-- kit's migrate() granting INSERT on every table and those grants being narrowed.
CREATE FUNCTION refuse_service_role_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_user = 'clearway_audit' THEN
        RAISE EXCEPTION 'permission denied for table %: only the audit signer writes it',
            TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER checkpoints_signer_only BEFORE INSERT ON checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_service_role_insert();
CREATE TRIGGER retention_cuts_signer_only BEFORE INSERT ON retention_cuts
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_service_role_insert();

-- Verification runs as a job (POST /v1/audit/verifications): one active job per
-- tenant, progress and result kept here. `verified_size` is the signed checkpoint a
-- successful run reproduced: the next incremental run starts from it.
CREATE TABLE verification_jobs (
    id               text        PRIMARY KEY,
    tenant           text        NOT NULL,
    requested_by     text        NOT NULL,
    full_run         boolean     NOT NULL,
    state            text        NOT NULL CHECK (state IN ('queued', 'running', 'done', 'error')),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    records_total    bigint,
    records_checked  bigint      NOT NULL DEFAULT 0,
    verified_size    bigint,
    ok               boolean,
    report           jsonb
);
CREATE UNIQUE INDEX verification_jobs_one_active ON verification_jobs (tenant)
    WHERE state IN ('queued', 'running');
CREATE INDEX verification_jobs_by_tenant ON verification_jobs (tenant, created_at DESC);
CREATE INDEX verification_jobs_verified ON verification_jobs (verified_size DESC)
    WHERE ok;

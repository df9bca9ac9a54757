-- A successful verification run leaves a receipt signed with the checkpoint key:
-- (verified size, root). An incremental run starts only from a receipt whose
-- signature verifies, so a job row inserted by whoever holds the ingest role
-- cannot move where the next run starts (docs/design.md §8, ADR 0015).
ALTER TABLE verification_jobs
    ADD COLUMN receipt_root      bytea,
    ADD COLUMN receipt_key_id    text,
    ADD COLUMN receipt_signature bytea;

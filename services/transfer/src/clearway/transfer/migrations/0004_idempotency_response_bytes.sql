-- Replays answer the exact bytes of the first response (a JSONB round trip reorders
-- keys and respaces the body). `response_version` is the dated version the body was
-- rendered at, so a body stored before a deploy added a version is upgraded on replay.
--
-- Expand step: `response` (JSONB) is still written for replicas of the previous
-- release. Contract step, in the release after every replica runs this one and the
-- keys' retention (7 days) has passed: DROP COLUMN response.
ALTER TABLE idempotency_keys ADD COLUMN IF NOT EXISTS response_bytes bytea;
ALTER TABLE idempotency_keys ADD COLUMN IF NOT EXISTS response_version text;

-- Keys completed by the previous release: their JSONB as text (the order they were
-- answered in is lost already), at the version their shape shows: the 2026-12-01
-- money object, else the initial version's minor units.
UPDATE idempotency_keys
   SET response_bytes = convert_to(response::text, 'UTF8'),
       response_version = CASE WHEN jsonb_typeof(response -> 'amount') = 'object'
                               THEN '2026-12-01' ELSE '2026-11-01' END
 WHERE response IS NOT NULL AND response_bytes IS NULL;

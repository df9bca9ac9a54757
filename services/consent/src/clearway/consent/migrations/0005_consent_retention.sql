-- Retention of ended consents (docs/design.md §9): when a consent reached its final
-- status (Consumed, Rejected, Revoked, Expired), in clear, so the purge job finds the
-- consents and the evidence past their rules. Consents that ended before this column
-- existed take their expiry, or now when that is later: a consent ends at the latest
-- when it expires (give or take one expiry sweep), so none is purged early.
ALTER TABLE consents ADD COLUMN ended_at timestamptz;
UPDATE consents SET ended_at = least(expires_at, now())
    WHERE status IN ('Consumed', 'Rejected', 'Revoked', 'Expired');
CREATE INDEX consents_ended ON consents (ended_at) WHERE ended_at IS NOT NULL;
CREATE INDEX consents_evidence_kept ON consents (ended_at)
    WHERE ended_at IS NOT NULL AND evidence IS NOT NULL;

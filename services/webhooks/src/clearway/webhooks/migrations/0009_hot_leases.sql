-- Leases out of the indexed columns (docs/design.md §6, docs/adr/0052): a claim
-- used to move next_attempt_at past the lease, so every delivery updated the
-- message row twice with new entries in all nine of its indexes. The lease is
-- now a column of its own, in no index, so that the claim is a HOT update
-- (heap only: no index touched, the new version on the same page); the
-- fill factor leaves the room on each page that HOT needs. A message is due
-- when next_attempt_at has come and it holds no live lease.
ALTER TABLE messages ADD COLUMN leased_until timestamptz;
ALTER TABLE messages SET (fillfactor = 50);

-- Aggregate versions (docs/design.md §3): every change of an endpoint, and every
-- (re)queue of a message, increments its version, so the events that record
-- those changes get deterministic ids from (id, version, type).
ALTER TABLE endpoints ADD COLUMN version integer NOT NULL DEFAULT 1;
ALTER TABLE messages ADD COLUMN version integer NOT NULL DEFAULT 1;

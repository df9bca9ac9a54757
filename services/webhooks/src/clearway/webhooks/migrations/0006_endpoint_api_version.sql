-- Each endpoint is pinned to a dated API version (docs/design.md §10): its payloads are
-- rendered in that version's shapes. New endpoints get the version of the request that
-- created them (or the one it names); existing ones keep the first dated version.
ALTER TABLE endpoints ADD COLUMN api_version text NOT NULL DEFAULT '2026-11-01';
ALTER TABLE endpoints ALTER COLUMN api_version DROP DEFAULT;

-- Each client is pinned to a dated API version (docs/design.md §10): new clients get the
-- current one at registration; clients registered before pinning existed keep the
-- first dated version, the one they were built against. The issuer puts it in every
-- access token as the cw_ver claim.
ALTER TABLE clients ADD COLUMN api_version text NOT NULL DEFAULT '2026-11-01';
ALTER TABLE clients ALTER COLUMN api_version DROP DEFAULT;
CREATE INDEX clients_api_version ON clients (api_version, client_id);

-- Residency (docs/design.md §9, ADR 0039): the authorization server's tables (clients,
-- signing_keys, issued_tokens, seen_assertions) live in the global database, the users,
-- consents and the flow around them in the tenant's region's. A consent and a pushed
-- request name their client by id only: a foreign key could not cross the databases
-- (the handlers check the client in the global database instead).
ALTER TABLE consents DROP CONSTRAINT IF EXISTS consents_client_id_fkey;
ALTER TABLE pushed_requests DROP CONSTRAINT IF EXISTS pushed_requests_client_id_fkey;

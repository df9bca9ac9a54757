-- Endpoint secrets move to the kit's envelope (docs/design.md §9): one
-- self-describing blob per secret (KEK version, wrapped data key, AES-256-GCM
-- ciphertext bound to the endpoint and tenant). Secrets sealed under the removed
-- built-in key cannot be opened any more (development data only): they are
-- dropped, and such an endpoint needs a secret rotation.
DELETE FROM endpoint_secrets;
ALTER TABLE endpoint_secrets
    DROP COLUMN nonce,
    DROP COLUMN ciphertext,
    ADD COLUMN sealed bytea NOT NULL;

-- v1a (Ed25519) signatures move to one service key generated and used inside the
-- HSM, rotated with an overlap window and published at /v1/webhooks/signing-keys
-- (docs/adr/0029). Endpoints keep their opt-in; their own key pairs, sealed in
-- this database, are destroyed (development data only: partners of such an
-- endpoint take the public keys from the key set).
ALTER TABLE endpoints ADD COLUMN ed25519_signatures boolean NOT NULL DEFAULT false;
UPDATE endpoints SET ed25519_signatures = true WHERE signing_public_key IS NOT NULL;
ALTER TABLE endpoints DROP COLUMN signing_public_key;
DELETE FROM endpoint_secrets WHERE kind = 'ed25519';
ALTER TABLE endpoint_secrets DROP COLUMN kind;

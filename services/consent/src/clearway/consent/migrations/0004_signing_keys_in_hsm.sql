-- Token-signing private keys move into the HSM (docs/design.md §9, ADR 0019): the
-- database keeps only the schedule and the public half. `version` is the key's
-- version in the HSM (label clearway-sig/consent-token, CKA_ID = version).
--
-- Keys sealed here before have no version: their private halves are dropped with the
-- column, so they only verify. They stay published until their tokens expired; the
-- service rotates to an HSM key at start because no live key has a version.
ALTER TABLE signing_keys ADD COLUMN version integer;
ALTER TABLE signing_keys DROP COLUMN private_ciphertext;
CREATE UNIQUE INDEX signing_keys_version ON signing_keys (version) WHERE version IS NOT NULL;

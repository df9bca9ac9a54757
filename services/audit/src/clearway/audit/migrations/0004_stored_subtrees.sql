-- Perfect subtrees of the Merkle tree (docs/design.md §8, ADR 0030): every subtree of
-- 2^level leaves (level >= clearway.audit.handlers.SUBTREE_LEVEL) that a checkpoint
-- completed, hashed from record content by the signer in the checkpoint's
-- transaction. It covers leaves [idx * 2^level, (idx + 1) * 2^level). Inclusion and
-- consistency proofs read O(log n) of these plus one partial span of leaf hashes,
-- instead of every leaf hash; each proof is checked against its signed root before
-- it is served, so a wrong row here yields an error, never a wrong proof.
CREATE TABLE subtrees (
    level  smallint NOT NULL CHECK (level BETWEEN 0 AND 62),
    idx    bigint   NOT NULL CHECK (idx >= 0),
    hash   bytea    NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (level, idx)
);

CREATE TRIGGER subtrees_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON subtrees
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_history_change();
CREATE TRIGGER subtrees_signer_only BEFORE INSERT ON subtrees
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_service_role_insert();

-- Console sessions (ADR 0049): the row is found by the SHA-256 of the cookie's random id,
-- which the database never holds, so a copied row cannot be replayed as a cookie. What a
-- session carries (the user's access token, the PKCE verifier and OAuth state of a
-- pending sign-in, the CSRF token) is one envelope blob sealed with the console's KEK,
-- bound to the row's id hash. Expiry is checked in SQL on every read.
CREATE TABLE sessions (
    id_hash    bytea PRIMARY KEY CHECK (length(id_hash) = 32),
    pending    boolean NOT NULL,
    sealed     bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX sessions_oldest ON sessions (pending, created_at);
CREATE INDEX sessions_expiry ON sessions (expires_at);

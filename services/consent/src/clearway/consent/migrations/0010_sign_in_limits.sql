-- Sign-in rate limits (docs/design.md §7): attempts at the sign-in form per username and
-- per client address in a fixed window, shared by every process of the deployment. Keys
-- are blind indexes (HMAC with the personal-data index key): neither the username nor
-- the address is stored.
CREATE TABLE sign_in_limits (
    key          bytea PRIMARY KEY,
    window_start timestamptz NOT NULL,
    attempts     integer NOT NULL
);
CREATE INDEX sign_in_limits_window ON sign_in_limits (window_start);

-- The consent service's own schema: OAuth clients, signing keys, consents, grants.
CREATE TABLE clients (
    client_id text PRIMARY KEY,
    tenant text NOT NULL,
    name text NOT NULL,
    scopes text[] NOT NULL,
    auth_method text NOT NULL CHECK (auth_method IN ('client_secret_basic', 'private_key_jwt')),
    secret_hash text,
    previous_secret_hash text,
    previous_secret_valid_until timestamptz,
    jwks jsonb,
    redirect_uris text[] NOT NULL DEFAULT '{}',
    status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'locked', 'disabled')),
    failed_attempts int NOT NULL DEFAULT 0,
    revoked_before timestamptz,
    version int NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Private keys are AES-256-GCM ciphertexts (AAD = kid) under the key-encryption key.
CREATE TABLE signing_keys (
    kid text PRIMARY KEY,
    alg text NOT NULL,
    public_jwk jsonb NOT NULL,
    private_ciphertext bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    activates_at timestamptz NOT NULL,  -- published before it signs anything
    retired_at timestamptz,             -- stops signing (its successor activated)
    publish_until timestamptz           -- leaves the JWKS (after its last token expired)
);

CREATE TABLE users (
    subject text PRIMARY KEY,
    tenant text NOT NULL,
    username text NOT NULL UNIQUE,
    display_name text NOT NULL,
    password_hash text NOT NULL
);

CREATE TABLE consents (
    id text PRIMARY KEY,
    tenant text NOT NULL,
    client_id text NOT NULL REFERENCES clients (client_id),
    subject text,
    purpose text NOT NULL,
    authorization_details jsonb NOT NULL,
    scopes text[] NOT NULL,
    terms_version text NOT NULL,
    reference text NOT NULL UNIQUE,
    status text NOT NULL,
    version int NOT NULL,
    history jsonb NOT NULL,
    evidence jsonb,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX consents_tenant ON consents (tenant, created_at DESC);
CREATE INDEX consents_expiry ON consents (expires_at) WHERE status IN ('AwaitingAuthorisation', 'Authorised');

-- RFC 9126 pushed authorization requests; the request_uri is stored hashed.
CREATE TABLE pushed_requests (
    handle_hash text PRIMARY KEY,
    client_id text NOT NULL REFERENCES clients (client_id),
    params jsonb NOT NULL,
    expires_at timestamptz NOT NULL
);

-- Authorization codes (hashed), single use, ≤ 60 s.
CREATE TABLE authorization_codes (
    code_hash text PRIMARY KEY,
    client_id text NOT NULL,
    tenant text NOT NULL,
    subject text NOT NULL,
    consent_id text NOT NULL REFERENCES consents (id),
    redirect_uri text NOT NULL,
    code_challenge text NOT NULL,
    scopes text[] NOT NULL,
    resource text[] NOT NULL DEFAULT '{}',
    expires_at timestamptz NOT NULL,
    redeemed_at timestamptz
);

-- Every access token issued (no token material: its id and what it was for), so
-- introspection, RFC 7009 revocation and code-reuse revocation can find them.
CREATE TABLE issued_tokens (
    jti text PRIMARY KEY,
    client_id text NOT NULL,
    tenant text NOT NULL,
    subject text NOT NULL,
    consent_id text,
    code_hash text,
    issued_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz
);
CREATE INDEX issued_tokens_code ON issued_tokens (code_hash) WHERE code_hash IS NOT NULL;
CREATE INDEX issued_tokens_expiry ON issued_tokens (expires_at);

-- private_key_jwt assertions seen (RFC 7523 §3: jti must not be replayed).
CREATE TABLE seen_assertions (
    jti text PRIMARY KEY,
    expires_at timestamptz NOT NULL
);

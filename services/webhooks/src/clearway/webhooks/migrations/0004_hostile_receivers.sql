-- Hostile receivers (docs/design.md §6): fair claiming, a circuit breaker per
-- endpoint, and opt-in Ed25519 (Standard Webhooks v1a) signing keys.

-- Round-robin claiming: the endpoints served least recently go first.
ALTER TABLE endpoints ADD COLUMN last_claimed_at timestamptz NOT NULL DEFAULT 'epoch';
-- Circuit breaker: failed attempts in a row; at the threshold the endpoint is
-- paused (next_allowed_at) and then probed with one message at a time.
ALTER TABLE endpoints ADD COLUMN consecutive_failures integer NOT NULL DEFAULT 0;
-- The whpk_ public key of an endpoint that opted into v1a signatures (not secret).
ALTER TABLE endpoints ADD COLUMN signing_public_key text;

-- 'hmac': a whsec_ secret (v1); 'ed25519': a whsk_ private key (v1a). Both sealed
-- the same way (the kit's envelope, bound to the endpoint and its tenant).
ALTER TABLE endpoint_secrets ADD COLUMN kind text NOT NULL DEFAULT 'hmac'
    CHECK (kind IN ('hmac', 'ed25519'));

-- Claims walk due messages endpoint by endpoint.
CREATE INDEX messages_endpoint_due ON messages (endpoint_id, next_attempt_at)
    WHERE status = 'pending';

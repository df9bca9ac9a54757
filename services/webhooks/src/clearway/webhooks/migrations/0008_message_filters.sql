-- GET /v1/messages?event_type= pages a tenant's messages of one event type in
-- (created_at, id) order, optionally within a created-time window (ADR 0049's console
-- filters): one index serves the equality, the window and the keyset order.
-- event_type never changes after insert, so the index costs nothing on the delivery path.
CREATE INDEX messages_tenant_type_created ON messages (tenant, event_type, created_at, id);

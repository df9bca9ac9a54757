-- Retention of message payloads (docs/design.md §9, record class
-- webhook_message_payloads): a message that is no longer pending loses its payload
-- once its last delivery activity (delivered, dead-lettered, skipped, re-queued:
-- updated_at) is older than the rule. The row stays: the delivery log lists it and
-- its attempts and dead letters point at it; without a payload it is never re-queued.
ALTER TABLE messages
    ALTER COLUMN payload DROP NOT NULL,
    ADD COLUMN payload_purged_at timestamptz;
CREATE INDEX messages_payload_kept ON messages (updated_at, id)
    WHERE payload IS NOT NULL AND status <> 'pending';

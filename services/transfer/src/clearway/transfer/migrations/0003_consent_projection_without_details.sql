-- The projection of consents keeps ids and status only (ADR 0039): authorization
-- details (creditor names and IBANs) are personal data, which stay in the consent
-- store of the tenant's region; consent.* v2 events no longer carry them, and a
-- request bound to a consent takes them from its token (RFC 9396).
ALTER TABLE consents DROP COLUMN authorization_details;

-- Sign-in codes (docs/design.md §7): the platform's first-party console asks for the
-- user's own token with an authorization code that points at no consent; the token
-- carries the user's tenant and the scopes of the user's role.
ALTER TABLE authorization_codes ALTER COLUMN consent_id DROP NOT NULL;

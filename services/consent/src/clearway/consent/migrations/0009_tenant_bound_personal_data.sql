-- Personal values bound to their tenant's key (docs/design.md §9, ADR 0027): rows
-- sealed under the KEK alone before are re-sealed at start; these partial indexes hold
-- only such rows (format 3 records start with 'CWE\x03'), so a start that finds none
-- left reads nothing. The predicates are those of clearway.consent.store_personal.
CREATE INDEX consents_kek_sealed ON consents (id)
    WHERE purpose IS NOT NULL AND substring(purpose FROM 1 FOR 4) <> '\x43574503';
CREATE INDEX users_kek_sealed ON users (subject)
    WHERE display_name IS NOT NULL AND substring(display_name FROM 1 FOR 4) <> '\x43574503';

-- Rotated database logins of a service (docs/design.md §9, ADR 0016). One row per
-- login role of the alternating pair (clearway_<service>_a, _b): its current
-- password sealed with the service's KEK (bound to the login's name), when that
-- password stops logging in, and the rotation counter that says which login is
-- newest. Only the admin role reads or writes this table: migrate revokes it from
-- the service's own role.
CREATE TABLE IF NOT EXISTS db_credentials (
    login        text        PRIMARY KEY,
    sealed       bytea       NOT NULL,
    valid_until  timestamptz NOT NULL,
    generation   bigint      NOT NULL,
    rotated_at   timestamptz NOT NULL DEFAULT now()
);

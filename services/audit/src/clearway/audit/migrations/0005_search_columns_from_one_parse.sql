-- The search columns (resource, correlation id, actor subject, tenant) were generated
-- columns: one JSON parse of `content` each, five with `position`, which made the
-- parses most of an append's cost (docs/design.md §8, ADR 0030). They are now set by
-- one BEFORE INSERT trigger from a single parse, overriding whatever the writer sent,
-- so they still say what the hashed content says (UPDATE stays refused). `position`,
-- which verification places each leaf by, stays a generated column: no trigger
-- setting can make it disagree with the content. DROP EXPRESSION keeps stored values
-- and rewrites nothing.
ALTER TABLE records ALTER COLUMN resource DROP EXPRESSION;
ALTER TABLE records ALTER COLUMN correlation_id DROP EXPRESSION;
ALTER TABLE records ALTER COLUMN actor_subject DROP EXPRESSION;
ALTER TABLE records ALTER COLUMN tenant DROP EXPRESSION;

CREATE FUNCTION records_search_columns() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    doc jsonb := NEW.content::jsonb;
BEGIN
    NEW.resource := doc ->> 'resource';
    NEW.correlation_id := doc ->> 'correlation_id';
    NEW.actor_subject := doc -> 'actor' ->> 'subject';
    NEW.tenant := doc ->> 'tenant';
    RETURN NEW;
END $$;

CREATE TRIGGER records_search_columns BEFORE INSERT ON records
    FOR EACH ROW EXECUTE FUNCTION records_search_columns();

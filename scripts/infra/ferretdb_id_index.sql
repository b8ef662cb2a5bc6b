-- Applied by scripts/infra/up.sh to FerretDB's PostgreSQL database (`ferretdb`) before FerretDB starts.
--
-- FerretDB 1.24 stores each collection as a table with one jsonb column, `_jsonb`, and hands an
-- equality on `_id` to PostgreSQL as `_jsonb -> '_id' @> '"value"'`. Its own unique index on `_id` is
-- a btree, which `@>` cannot use, so every find, update, replace and delete by `_id` reads the whole
-- table: a version-guarded replace costs ~1 ms at 300 documents and ~15 ms at 20,000. A GIN index
-- (jsonb_path_ops) on the same expression serves that `@>`; PostgreSQL then reads one row, whatever
-- the table's size. FerretDB does not know the index (it keeps its own list of indexes), and the
-- index never changes what a query returns. See scripts/infra/README.md for the measurements.
--
-- Idempotent: the event trigger adds the index to each table FerretDB creates from now on; the block
-- at the end adds it to tables created before.

-- <table name, cut to 40>_<8 hex of its md5>_id_gin: unique per table, within PostgreSQL's 63 bytes.
CREATE OR REPLACE FUNCTION ailab_ferretdb_id_index_name(tbl regclass) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT left(relname, 40) || '_' || left(md5(relname), 8) || '_id_gin' FROM pg_class WHERE oid = tbl
$$;

CREATE OR REPLACE FUNCTION ailab_ferretdb_add_id_index(tbl regclass) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    index_name text := ailab_ferretdb_id_index_name(tbl);
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = tbl AND attname = '_jsonb' AND NOT attisdropped)
       OR EXISTS (SELECT 1 FROM pg_class i WHERE i.relname = index_name
                  AND i.relnamespace = (SELECT relnamespace FROM pg_class WHERE oid = tbl)) THEN
        RETURN false;
    END IF;
    EXECUTE format('CREATE INDEX %I ON %s USING gin ((_jsonb -> ''_id'') jsonb_path_ops)', index_name, tbl);
    RETURN true;
END
$$;

CREATE OR REPLACE FUNCTION ailab_ferretdb_on_create_table() RETURNS event_trigger
LANGUAGE plpgsql AS $$
DECLARE
    created record;
BEGIN
    FOR created IN
        SELECT objid FROM pg_event_trigger_ddl_commands()
        WHERE command_tag = 'CREATE TABLE' AND object_type = 'table'
    LOOP
        BEGIN
            PERFORM ailab_ferretdb_add_id_index(created.objid::regclass);
        EXCEPTION WHEN OTHERS THEN
            -- Never fail FerretDB's CREATE TABLE over an optional index: the table only stays slower.
            RAISE WARNING 'ailab: no _id index on %: %', created.objid::regclass, SQLERRM;
        END;
    END LOOP;
END
$$;

DROP EVENT TRIGGER IF EXISTS ailab_ferretdb_id_index;
CREATE EVENT TRIGGER ailab_ferretdb_id_index ON ddl_command_end
    WHEN TAG IN ('CREATE TABLE') EXECUTE FUNCTION ailab_ferretdb_on_create_table();

-- Tables FerretDB created before: prints how many got the index now.
SELECT count(*) FILTER (WHERE ailab_ferretdb_add_id_index(c.oid::regclass)) AS id_indexes_added
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'public')
  AND n.nspname NOT LIKE 'pg\_%';

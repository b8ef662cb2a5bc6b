-- Applied by scripts/infra/up.sh to FerretDB's PostgreSQL database (`ferretdb`) before FerretDB starts.
--
-- FerretDB 1.24 stores each collection as a table with one jsonb column, `_jsonb`, and hands an
-- equality on a top-level field to PostgreSQL as `_jsonb -> 'field' @> '"value"'`. The indexes it
-- creates (its `_id` index and every index a service asks for) are btrees, which `@>` cannot use, so
-- every find, update, replace and delete by `_id` or by an indexed field reads the whole table: a
-- version-guarded replace by `_id` costs ~1 ms at 300 documents and ~15 ms at 20,000. A GIN index
-- (jsonb_path_ops) on the same expression serves that `@>`; PostgreSQL then reads only the matching
-- rows, whatever the table's size. FerretDB does not know these indexes (it keeps its own list),
-- and an index never changes what a query returns. See scripts/infra/README.md for measurements.
--
-- For each btree index FerretDB creates on `_jsonb -> 'field'` (first column), the event trigger
-- adds one GIN index on that expression to the table, unless it has one. Fields with a dot are
-- filtered with another expression (`#>`) and are left alone. Idempotent; the statement at the end
-- adds the GIN indexes missing on tables created before (prints how many).

-- The first version of this file indexed `_id` only, from a CREATE TABLE trigger.
DROP EVENT TRIGGER IF EXISTS ailab_ferretdb_id_index;
DROP FUNCTION IF EXISTS ailab_ferretdb_on_create_table();
DROP FUNCTION IF EXISTS ailab_ferretdb_add_id_index(regclass);
DROP FUNCTION IF EXISTS ailab_ferretdb_id_index_name(regclass);

CREATE OR REPLACE FUNCTION ailab_ferretdb_add_gin(btree regclass) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    ix record;
    expr text;
    gin_name text;
BEGIN
    SELECT c.relname, c.relnamespace, i.indrelid, am.amname INTO ix
    FROM pg_index i
    JOIN pg_class c ON c.oid = i.indexrelid
    JOIN pg_am am ON am.oid = c.relam
    WHERE i.indexrelid = btree;
    IF NOT FOUND OR ix.amname <> 'btree' THEN
        RETURN false;
    END IF;
    expr := pg_get_indexdef(btree, 1, true);
    IF expr !~ '^\(_jsonb -> ''[^'']*''::text\)$' THEN
        RETURN false;  -- not a top-level field of a FerretDB document
    END IF;
    IF EXISTS (
        SELECT 1 FROM pg_index g
        JOIN pg_class gc ON gc.oid = g.indexrelid
        JOIN pg_am gam ON gam.oid = gc.relam
        WHERE g.indrelid = ix.indrelid AND gam.amname = 'gin' AND pg_get_indexdef(g.indexrelid, 1, true) = expr
    ) THEN
        RETURN false;
    END IF;
    -- <btree name, cut to 40>_<8 hex of its md5>_gin: unique, within PostgreSQL's 63 bytes.
    gin_name := left(ix.relname, 40) || '_' || left(md5(ix.relname), 8) || '_gin';
    EXECUTE format('CREATE INDEX %I ON %s USING gin (%s jsonb_path_ops)', gin_name, ix.indrelid::regclass, expr);
    RETURN true;
END
$$;

CREATE OR REPLACE FUNCTION ailab_ferretdb_on_create_index() RETURNS event_trigger
LANGUAGE plpgsql AS $$
DECLARE
    created record;
BEGIN
    FOR created IN
        SELECT objid FROM pg_event_trigger_ddl_commands()
        WHERE command_tag = 'CREATE INDEX' AND object_type = 'index'
    LOOP
        BEGIN
            PERFORM ailab_ferretdb_add_gin(created.objid::regclass);
        EXCEPTION WHEN OTHERS THEN
            -- Never fail FerretDB's CREATE INDEX over an optional one: lookups only stay slower.
            RAISE WARNING 'ailab: no GIN index beside %: %', created.objid::regclass, SQLERRM;
        END;
    END LOOP;
END
$$;

DROP EVENT TRIGGER IF EXISTS ailab_ferretdb_gin_indexes;
CREATE EVENT TRIGGER ailab_ferretdb_gin_indexes ON ddl_command_end
    WHEN TAG IN ('CREATE INDEX') EXECUTE FUNCTION ailab_ferretdb_on_create_index();

SELECT count(*) FILTER (WHERE ailab_ferretdb_add_gin(i.indexrelid::regclass)) AS gin_indexes_added
FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'public') AND n.nspname NOT LIKE 'pg\_%';

-- Applied by scripts/infra/up.sh to FerretDB's PostgreSQL database (`ferretdb`) before FerretDB starts,
-- after ferretdb_index_hooks.sql (the loop its trigger and its pass over existing tables share).
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
-- adds one GIN index on that expression to the table, unless it has one or the table's collection is
-- listed in `ailab_ferretdb_gin_skipped` (insert-heavy collections that are never looked up by an
-- indexed field: there a GIN index only costs). Fields with a dot are filtered with another
-- expression (`#>`) and are left alone. Idempotent; the last two statements drop the GIN indexes
-- of skipped collections and add those missing beside indexes made before, each printing how many.

-- Collections that get no GIN index, by name in any database. FerretDB names a collection's table
-- after it: lower case, other characters as `_`, then `_` and 8 hex digits of a hash. The match is
-- on the table's name, so names that map to the same one (`usage-ledger`, `Usage.Ledger`) are
-- skipped too.
-- - `usage_ledger` (usage-meter): one insert per usage event, and nothing finds its entries by `_id`
--   on FerretDB (redelivered records read their entries by `s`, retention deletes by a range of
--   `s`: both read the table). Its `_id` GIN index cost ~3 µs of PostgreSQL CPU per insert
--   (measured: 13.8-15.6 µs per ledger insert with it, 11.0-12.9 without, 3 interleaved pairs).
CREATE OR REPLACE FUNCTION ailab_ferretdb_gin_skipped(table_name text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT table_name ~ '^(usage_ledger)_[0-9a-f]{8}$'
$$;

-- The expression `_jsonb -> 'field'` an index is on (its first column) when it is an index of access
-- method `method` on a FerretDB table (FerretDB keeps each database in a schema of its own) over a
-- top-level field; NULL otherwise. Fields with a dot are filtered with another expression (`#>`).
CREATE OR REPLACE FUNCTION ailab_ferretdb_field_expr(idx regclass, method text) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT pg_get_indexdef(i.indexrelid, 1, true)
    FROM pg_index i
    JOIN pg_class c ON c.oid = i.indexrelid
    JOIN pg_class t ON t.oid = i.indrelid
    JOIN pg_namespace n ON n.oid = t.relnamespace
    JOIN pg_am am ON am.oid = c.relam
    WHERE i.indexrelid = idx AND am.amname = method
      AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'public') AND n.nspname NOT LIKE 'pg\_%'
      AND pg_get_indexdef(i.indexrelid, 1, true) ~ '^\(_jsonb -> ''[^'']*''::text\)$'
$$;

CREATE OR REPLACE FUNCTION ailab_ferretdb_add_gin(btree regclass) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    ix record;
    expr text;
    gin_name text;
BEGIN
    expr := ailab_ferretdb_field_expr(btree, 'btree');
    IF expr IS NULL THEN
        RETURN false;  -- not one of FerretDB's indexes on a top-level field
    END IF;
    SELECT t.relname AS table_name, i.indrelid INTO ix
    FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid
    WHERE i.indexrelid = btree;
    IF ailab_ferretdb_gin_skipped(ix.table_name) THEN
        RETURN false;
    END IF;
    IF EXISTS (
        SELECT 1 FROM pg_index g
        JOIN pg_class gc ON gc.oid = g.indexrelid
        JOIN pg_am gam ON gam.oid = gc.relam
        WHERE g.indrelid = ix.indrelid AND gam.amname = 'gin' AND pg_get_indexdef(g.indexrelid, 1, true) = expr
    ) THEN
        RETURN false;
    END IF;
    -- <table, cut to 40>_<8 hex of md5(table and field)>_gin: one per table and field (checked just
    -- above), within PostgreSQL's 63 bytes, whatever FerretDB later names or renames its own.
    gin_name := left(ix.table_name, 40) || '_' || left(md5(ix.table_name || expr), 8) || '_gin';
    EXECUTE format('CREATE INDEX %I ON %s USING gin (%s jsonb_path_ops)', gin_name, ix.indrelid::regclass, expr);
    RETURN true;
END
$$;

-- Never fails FerretDB's CREATE INDEX over an optional index: lookups only stay slower.
CREATE OR REPLACE FUNCTION ailab_ferretdb_on_create_index() RETURNS event_trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ailab_ferretdb_each_index(
        'ailab_ferretdb_add_gin', ailab_ferretdb_created_indexes(), 'ailab: no GIN index beside');
END
$$;

DROP EVENT TRIGGER IF EXISTS ailab_ferretdb_gin_indexes;
CREATE EVENT TRIGGER ailab_ferretdb_gin_indexes ON ddl_command_end
    WHEN TAG IN ('CREATE INDEX') EXECUTE FUNCTION ailab_ferretdb_on_create_index();

-- Indexes made before: each in its own subtransaction, so that one failure (reported as a warning)
-- does not stop the rest or the start.
CREATE OR REPLACE FUNCTION ailab_ferretdb_add_missing_gin() RETURNS integer
LANGUAGE sql AS $$
    SELECT ailab_ferretdb_each_index(
        'ailab_ferretdb_add_gin', ARRAY(SELECT indexrelid::regclass FROM pg_index), 'ailab: no GIN index beside')
$$;

-- GIN indexes made before a collection was listed as skipped: dropped (only ours: `_gin` names on a
-- jsonb expression of a FerretDB table).
CREATE OR REPLACE FUNCTION ailab_ferretdb_drop_skipped_gin() RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    gin regclass;
    dropped integer := 0;
BEGIN
    FOR gin IN
        SELECT i.indexrelid::regclass
        FROM pg_index i
        JOIN pg_class c ON c.oid = i.indexrelid
        JOIN pg_class t ON t.oid = i.indrelid
        WHERE c.relname LIKE '%\_gin' AND ailab_ferretdb_gin_skipped(t.relname)
          AND ailab_ferretdb_field_expr(i.indexrelid::regclass, 'gin') IS NOT NULL
    LOOP
        BEGIN
            EXECUTE format('DROP INDEX %s', gin);
            dropped := dropped + 1;
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'ailab: could not drop GIN index %: %', gin, SQLERRM;
        END;
    END LOOP;
    RETURN dropped;
END
$$;

SELECT ailab_ferretdb_drop_skipped_gin() AS gin_indexes_dropped;
SELECT ailab_ferretdb_add_missing_gin() AS gin_indexes_added;

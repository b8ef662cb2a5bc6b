-- Applied by scripts/infra/up.sh to FerretDB's PostgreSQL database (`ferretdb`) before FerretDB starts,
-- after ferretdb_index_hooks.sql (the loop its trigger and its pass over existing tables share).
--
-- FerretDB 1.24 keeps a collection's `_id` unique with a btree on the jsonb expression
-- `_jsonb -> '_id'`, so each insert compares jsonb values all the way down that btree (each
-- comparison walks both values with jsonb iterators). On the collections listed below, an event
-- trigger replaces that index, under the same name, by a unique btree on the text
-- `_jsonb ->> '_id'`, which compares plain strings: measured through FerretDB on the usage ledger,
-- PostgreSQL's CPU per insert 11.6-14.8 -> 8.5-10.6 µs and the insert's wall time 23-28 -> 20-23 µs
-- (100,000-document rounds into 300,000-700,000 entries, 6 interleaved pairs; scripts/infra/README.md).
--
-- It enforces the same uniqueness while every `_id` in the collection is a string (`->>` gives the
-- same text for the string "1" and the number 1), and FerretDB reports a violation of either index
-- as a duplicate key (E11000): it only looks at the error code. What the jsonb btree also served
-- is given up: FerretDB updates a document by `_jsonb -> '_id' = ...` and deletes the documents a
-- `delete` matched by `_jsonb -> '_id' IN (...)`, which then read the table, once per command. So
-- a collection belongs here only when its `_id`s are strings, it is inserted into for every unit of
-- work and never updated, and it is deleted from in bulk:
-- - `usage_ledger` (usage-meter): one insert per usage event, `_id` the event id (uuid text);
--   retention deletes old days in rounds of 50,000 (`delete_matching`).
-- Idempotent; the last statement replaces the index of tables made before and prints how many (the
-- first start after this file appeared rebuilds each existing ledger's index, in one transaction:
-- writes to those ledgers wait meanwhile, seconds per million entries).

-- Collections whose `_id` index is replaced, by name in any database (matched on the table's name,
-- as `ailab_ferretdb_gin_skipped` in ferretdb_gin_indexes.sql explains).
CREATE OR REPLACE FUNCTION ailab_ferretdb_text_id_listed(table_name text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT table_name ~ '^(usage_ledger)_[0-9a-f]{8}$'
$$;

-- Replaces `idx` when it is FerretDB's unique `_id` btree on a listed table; true if it did. The
-- new index is built before the old one goes, so `_id`s stay unique throughout.
CREATE OR REPLACE FUNCTION ailab_ferretdb_text_id_index(idx regclass) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    ix record;
    interim text;
BEGIN
    SELECT c.relname AS index_name, t.relname AS table_name, n.nspname AS schema_name INTO ix
    FROM pg_index i
    JOIN pg_class c ON c.oid = i.indexrelid
    JOIN pg_class t ON t.oid = i.indrelid
    JOIN pg_namespace n ON n.oid = t.relnamespace
    JOIN pg_am am ON am.oid = c.relam
    WHERE i.indexrelid = idx AND i.indisunique AND am.amname = 'btree' AND i.indnatts = 1
      AND pg_get_indexdef(i.indexrelid, 1, true) = '(_jsonb -> ''_id''::text)';
    IF NOT FOUND OR NOT ailab_ferretdb_text_id_listed(ix.table_name) THEN
        RETURN false;
    END IF;
    interim := left(ix.index_name, 50) || '_text_id';
    EXECUTE format('CREATE UNIQUE INDEX %I ON %I.%I ((_jsonb ->> ''_id''))', interim, ix.schema_name, ix.table_name);
    EXECUTE format('DROP INDEX %I.%I', ix.schema_name, ix.index_name);
    EXECUTE format('ALTER INDEX %I.%I RENAME TO %I', ix.schema_name, interim, ix.index_name);
    RETURN true;
END
$$;

-- Never fails FerretDB's CREATE INDEX over this: its own index stays, inserts cost more.
CREATE OR REPLACE FUNCTION ailab_ferretdb_on_create_id_index() RETURNS event_trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ailab_ferretdb_each_index(
        'ailab_ferretdb_text_id_index', ailab_ferretdb_created_indexes(), 'ailab: kept the jsonb _id index');
END
$$;

DROP EVENT TRIGGER IF EXISTS ailab_ferretdb_text_id_indexes;
CREATE EVENT TRIGGER ailab_ferretdb_text_id_indexes ON ddl_command_end
    WHEN TAG IN ('CREATE INDEX') EXECUTE FUNCTION ailab_ferretdb_on_create_id_index();

-- Tables made before: each in its own subtransaction, so that one failure (reported as a warning)
-- does not stop the rest or the start. The candidates are listed first: replacing adds indexes.
CREATE OR REPLACE FUNCTION ailab_ferretdb_text_id_existing() RETURNS integer
LANGUAGE sql AS $$
    SELECT ailab_ferretdb_each_index(
        'ailab_ferretdb_text_id_index',
        ARRAY(
            SELECT i.indexrelid::regclass FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid
            WHERE i.indisunique AND ailab_ferretdb_text_id_listed(t.relname)
        ),
        'ailab: kept the jsonb _id index')
$$;

SELECT ailab_ferretdb_text_id_existing() AS text_id_indexes_replaced;

-- Applied by scripts/infra/up.sh to FerretDB's PostgreSQL database (`ferretdb`) before the files that
-- use it (ferretdb_gin_indexes.sql, ferretdb_text_id_indexes.sql): what their event triggers and
-- their passes over existing tables have in common. Idempotent.

-- Calls `handler(index)` (a function of one regclass returning boolean) on each of `indexes`, each
-- call in its own subtransaction: a failure is a warning, `<failure> <index>: <error>`, and does not
-- stop the rest, nor FerretDB's CREATE INDEX when called from an event trigger. Returns how many
-- calls returned true.
CREATE OR REPLACE FUNCTION ailab_ferretdb_each_index(handler regproc, indexes regclass[], failure text)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    idx regclass;
    done boolean;
    handled integer := 0;
BEGIN
    FOREACH idx IN ARRAY indexes LOOP
        BEGIN
            EXECUTE format('SELECT %s($1)', handler) INTO done USING idx;
            IF done THEN
                handled := handled + 1;
            END IF;
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING '% %: %', failure, idx, SQLERRM;
        END;
    END LOOP;
    RETURN handled;
END
$$;

-- The indexes the current CREATE INDEX command made (inside a ddl_command_end event trigger only).
CREATE OR REPLACE FUNCTION ailab_ferretdb_created_indexes() RETURNS regclass[]
LANGUAGE sql AS $$
    SELECT coalesce(array_agg(objid::regclass), '{}')
    FROM pg_event_trigger_ddl_commands()
    WHERE command_tag = 'CREATE INDEX' AND object_type = 'index'
$$;

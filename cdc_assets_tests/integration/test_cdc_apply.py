"""CDC batches apply every kind of change so that target checksums equal the source's."""

import pytest

from cdc_assets.errors import ConsistencyError, SchemaChangeError, SourceError
from cdc_assets_tests.integration.cdc_support import checksum, execute, loaded_pipeline, scalar

pytestmark = pytest.mark.integration

DDL = [
    "CREATE TABLE public.items (id int PRIMARY KEY, name text, price numeric(10,2),"
    " seen timestamptz, payload bytea, tags text[], doc jsonb)",
    "CREATE TABLE public.docs (id int PRIMARY KEY, body text, n int)",
    "ALTER TABLE public.docs ALTER COLUMN body SET STORAGE EXTERNAL",
    "CREATE TABLE public.nokey (a int, b text)",
    "ALTER TABLE public.nokey REPLICA IDENTITY FULL",
    'CREATE TABLE public."Mixed Case" ("Id" bigint PRIMARY KEY, "Val" text)',
    "INSERT INTO public.items SELECT g, 'item ' || g, g * 1.5, now(), '\\x0102', ARRAY['a', 'b'],"
    " '{\"k\": 1}' FROM generate_series(1, 200) g",
    "INSERT INTO public.docs SELECT g, (SELECT string_agg(md5(g::text || x::text), '')"
    " FROM generate_series(1, 300) x), 0 FROM generate_series(1, 20) g",
    "INSERT INTO public.nokey VALUES (1, 'x'), (1, 'x'), (2, NULL)",
]
TABLES = ["public.items", "public.docs", "public.nokey", 'public."Mixed Case"']


def test_all_change_kinds_end_equal(new_db) -> None:
    p = loaded_pipeline(new_db, DDL, TABLES)
    p.assert_equal()
    execute(
        p.source,
        # inserts, with NULLs and characters COPY must escape
        "INSERT INTO public.items VALUES (1001, E'tab\\there\\nnl \\\\ back', NULL, NULL, NULL,"
        " NULL, NULL)",
        "INSERT INTO public.items (id) VALUES (1002)",
        # updates: plain, to NULL, several times in one chunk, key change
        "UPDATE public.items SET price = price + 1 WHERE id <= 50",
        "UPDATE public.items SET name = NULL, doc = '[1, 2]' WHERE id = 3",
        "UPDATE public.items SET price = 7 WHERE id = 4",
        "UPDATE public.items SET price = 8 WHERE id = 4",
        "UPDATE public.items SET id = 5000 WHERE id = 5",
        # insert then delete, delete then re-insert of the same key
        "INSERT INTO public.items (id, name) VALUES (3000, 'short-lived')",
        "DELETE FROM public.items WHERE id = 3000",
        "DELETE FROM public.items WHERE id = 6",
        "INSERT INTO public.items (id, name) VALUES (6, 'reborn')",
        "DELETE FROM public.items WHERE id BETWEEN 100 AND 120",
        # TOASTed values left unchanged by updates must survive
        "UPDATE public.docs SET n = n + 1",
        "UPDATE public.docs SET n = n + 1 WHERE id <= 5",
        "UPDATE public.docs SET body = 'short now' WHERE id = 7",
        "UPDATE public.docs SET id = 100 WHERE id = 8",
        # a table without key: duplicates, matched on all columns
        "UPDATE public.nokey SET b = 'y' WHERE ctid = (SELECT min(ctid) FROM public.nokey"
        " WHERE a = 1)",
        "DELETE FROM public.nokey WHERE a = 2",
        "INSERT INTO public.nokey VALUES (3, NULL)",
        "INSERT INTO public.\"Mixed Case\" VALUES (1, 'one'), (2, 'two')",
        'UPDATE public."Mixed Case" SET "Val" = \'uno\' WHERE "Id" = 1',
    )
    r = p.batch()
    assert (r.inserts, r.deletes) == (7, 24) and r.updates >= 80
    assert len(r.tables_changed) == 4
    assert r.transactions >= 20
    p.assert_equal()
    assert checksum(p.target, "public", "docs")[0] == 20
    assert r.end_lsn >= r.start_lsn
    assert p.slot_confirmed() == str(r.end_lsn)
    # an empty batch changes nothing and still succeeds
    again = p.batch()
    assert again.changes == 0 and again.transactions == 0
    p.assert_equal()


def test_truncate_and_added_column(new_db) -> None:
    p = loaded_pipeline(new_db, DDL, TABLES)
    execute(
        p.source,
        "INSERT INTO public.items (id, name) VALUES (2000, 'before truncate')",
        "TRUNCATE public.items",
        "INSERT INTO public.items (id, name) VALUES (1, 'after truncate')",
        "ALTER TABLE public.docs ADD COLUMN extra numeric(8,3) DEFAULT 1.5",
        "UPDATE public.docs SET extra = 2.25 WHERE id = 1",
        "INSERT INTO public.docs (id, body, n, extra) VALUES (99, 'new', 1, NULL)",
    )
    r = p.batch()
    assert r.truncates == 1
    assert r.warnings == ()  # a constant default is copied exactly
    p.assert_equal()
    assert checksum(p.target, "public", "items")[0] == 1
    assert (
        scalar(
            p.target,
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
            " WHERE attrelid = 'public.docs'::regclass AND attname = 'extra'",
        )
        == "numeric(8,3)"
    )


def test_added_column_filled_per_row_is_reported_not_hidden(new_db) -> None:
    """A volatile default or an identity fills existing rows in a rewrite that logical decoding
    does not send: the target cannot have those values, so the batch says so (a constant default
    is copied exactly and says nothing)."""
    p = loaded_pipeline(new_db, DDL, TABLES)
    execute(
        p.source,
        "ALTER TABLE public.docs ADD COLUMN token uuid DEFAULT gen_random_uuid()",
        "ALTER TABLE public.items ADD COLUMN seq bigint GENERATED ALWAYS AS IDENTITY",
        "ALTER TABLE public.items ADD COLUMN flag boolean DEFAULT true",
        "UPDATE public.docs SET n = 9 WHERE id = 1",
        "UPDATE public.items SET name = 'x' WHERE id = 1",
    )
    r = p.batch()
    assert len(r.warnings) == 2, r.warnings
    token, seq = sorted(r.warnings)
    assert "public.docs" in token and "'token'" in token and "reset the pipeline" in token
    assert "public.items" in seq and "'seq'" in seq
    # The changed rows arrived with their values; the untouched ones differ, as warned.
    assert scalar(p.target, "SELECT token IS NOT NULL FROM public.docs WHERE id = 1")
    assert scalar(p.target, "SELECT count(*) FROM public.docs WHERE token IS NULL") == 19
    assert scalar(p.target, "SELECT count(*) FROM public.items WHERE flag") == scalar(
        p.source, "SELECT count(*) FROM public.items WHERE flag"
    )


def test_dropped_column_fails_clearly_and_applies_nothing(new_db) -> None:
    p = loaded_pipeline(new_db, DDL, TABLES)
    before = checksum(p.target, "public", "items")
    execute(
        p.source,
        "UPDATE public.items SET name = 'changed' WHERE id = 1",
        "ALTER TABLE public.items DROP COLUMN tags",
        "UPDATE public.items SET name = 'changed again' WHERE id = 2",
    )
    slot_before = p.slot_confirmed()
    with pytest.raises(SchemaChangeError) as err:
        p.batch()
    text = err.value.for_row()
    assert "'p'" in text and "public.items" in text and "'tags'" in text and "fix:" in text
    assert checksum(p.target, "public", "items") == before
    assert p.slot_confirmed() == slot_before


def test_retyped_column_fails_clearly(new_db) -> None:
    p = loaded_pipeline(new_db, DDL, TABLES)
    execute(
        p.source,
        "ALTER TABLE public.docs ALTER COLUMN n TYPE bigint",
        "UPDATE public.docs SET n = 5 WHERE id = 1",
    )
    with pytest.raises(SchemaChangeError, match=r"'n' changed type .* integer to bigint"):
        p.batch()


def test_renamed_table_fails_instead_of_losing_its_changes(new_db) -> None:
    p = loaded_pipeline(new_db, DDL, TABLES)
    execute(
        p.source,
        "ALTER TABLE public.items RENAME TO goods",
        "UPDATE public.goods SET name = 'after rename' WHERE id = 1",
    )
    with pytest.raises(SourceError, match="source table does not exist"):
        p.batch()
    # A new table under the old name is not the published one: the renamed table's changes
    # still arrive under its new name, and must not be dropped silently. The publication check
    # sees it before any change is read.
    execute(p.source, "CREATE TABLE public.items (id int PRIMARY KEY, name text)")
    with pytest.raises(ConsistencyError, match=r"no longer in the row .*: public.goods"):
        p.batch()


def test_async_committed_change_is_in_the_very_next_batch(new_db) -> None:
    import psycopg

    p = loaded_pipeline(new_db, DDL, TABLES)
    for i in range(5):
        with psycopg.connect(p.source, autocommit=True) as conn:
            conn.execute("SET synchronous_commit = off")
            conn.execute("UPDATE public.items SET name = %s WHERE id = 1", (f"async {i}",))
        r = p.batch()  # no wait: the batch itself must make that commit visible to decoding
        assert r.updates == 1, f"round {i}: {r}"
    p.assert_equal()

"""Fidelity on real schemas (issue 12): schema and table changes that used to lose data silently,
or to fail with a fix that did not work. Each test follows the named fix literally where there is
one, and ends with the target's checksums equal to the source's."""

import re

import pytest

from cdc_assets.errors import SchemaChangeError, SourceError
from cdc_assets.settings import Settings
from cdc_assets_tests.integration.cdc_support import checksum, execute, loaded_pipeline, scalar

pytestmark = pytest.mark.integration

PARTITIONED = [
    "CREATE TABLE public.ev (id int, day date, n int, PRIMARY KEY (id, day))"
    " PARTITION BY RANGE (day)",
    "CREATE TABLE public.ev_a PARTITION OF public.ev"
    " FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')",
    "CREATE TABLE public.ev_b PARTITION OF public.ev"
    " FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')",
    "INSERT INTO public.ev SELECT g, DATE '2024-01-01' + g, g FROM generate_series(0, 720) g",
]


def _fix_sql(text: str, where: str) -> str:
    """The statement a fix says to run ``on the source``/``on the target``, exactly as written."""
    found = re.search(rf"run (.+?) on the {where}", text)
    assert found, text
    return found.group(1)


# -- 1. TRUNCATE of one partition --------------------------------------------------------------


def test_truncate_of_one_partition_fails_naming_it(new_db) -> None:
    """pgoutput sends nothing for a TRUNCATE of a leaf published via the root: the batch must not
    succeed with the partition's rows still on the target."""
    p = loaded_pipeline(new_db, PARTITIONED, ["public.ev"])
    p.batch()  # records the partitions' files with the watermark
    before = checksum(p.target, "public", "ev")
    execute(
        p.source,
        "TRUNCATE public.ev_a",
        "INSERT INTO public.ev VALUES (9000, '2025-06-01', 1)",
    )
    slot = p.slot_confirmed()
    with pytest.raises(SchemaChangeError) as err:
        p.batch()
    text = err.value.for_row()
    assert "partition public.ev_a of public.ev" in text and "truncated" in text
    assert "FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')" in text
    assert "reset the pipeline" in text
    assert checksum(p.target, "public", "ev") == before  # nothing applied
    assert p.slot_confirmed() == slot
    with pytest.raises(SchemaChangeError, match=r"partition public\.ev_a"):
        p.batch()  # and it stays failed: never silent on a retry


def test_truncate_of_one_partition_before_the_first_batch_fails_naming_it(new_db) -> None:
    """The full load records the leaves' files with its watermark, so a leaf truncated between the
    copy and the first batch (no batch has recorded anything yet) is not missed either."""
    p = loaded_pipeline(new_db, PARTITIONED, ["public.ev"])
    before = checksum(p.target, "public", "ev")
    execute(p.source, "TRUNCATE public.ev_a")
    with pytest.raises(SchemaChangeError) as err:
        p.batch()
    assert "partition public.ev_a of public.ev" in err.value.for_row()
    assert checksum(p.target, "public", "ev") == before  # nothing applied


@pytest.mark.parametrize("how", ["detach", "drop"])
def test_partition_that_leaves_the_table_fails_naming_it(new_db, how: str) -> None:
    """DETACH PARTITION / DROP TABLE of a leaf remove its rows from the root with no DELETE in the
    stream: the batch fails naming it; the fix (delete the rows, accept) followed literally
    recovers with the target equal to the source."""
    p = loaded_pipeline(new_db, PARTITIONED, ["public.ev"])
    p.batch()
    before = checksum(p.target, "public", "ev")
    leave = (
        "ALTER TABLE public.ev DETACH PARTITION public.ev_a"
        if how == "detach"
        else "DROP TABLE public.ev_a"
    )
    execute(p.source, leave, "INSERT INTO public.ev VALUES (9000, '2025-06-01', 1)")
    with pytest.raises(SchemaChangeError) as err:
        p.batch()
    text = err.value.for_row()
    expected = "public.ev_a (OID" if how == "detach" else "(dropped)"
    assert expected in text and "left a partitioned table" in text, text
    assert checksum(p.target, "public", "ev") == before  # nothing applied
    execute(p.target, "DELETE FROM public.ev WHERE day < '2025-01-01'", _fix_sql(text, "target"))
    p.batch()
    p.assert_equal()


def test_partition_rewrite_fix_works_and_root_truncate_is_exact(new_db) -> None:
    """VACUUM FULL also gives a leaf a new file: the batch cannot tell it from a TRUNCATE, so it
    fails; the fix for that case, followed literally, lets it go on with nothing lost. A TRUNCATE
    of the root is sent and applied, and does not trip the check at the next batch."""
    p = loaded_pipeline(new_db, PARTITIONED, ["public.ev"])
    p.batch()
    execute(p.source, "VACUUM FULL public.ev_b", "UPDATE public.ev SET n = -n WHERE id < 10")
    with pytest.raises(SchemaChangeError) as err:
        p.batch()
    text = err.value.for_row()
    assert "partition public.ev_b" in text
    execute(p.target, _fix_sql(text, "target"))
    r = p.batch()
    assert r.updates == 10
    p.assert_equal()
    execute(
        p.source,
        "TRUNCATE public.ev",
        "INSERT INTO public.ev VALUES (1, '2024-03-03', 1), (2, '2025-03-03', 2)",
    )
    r = p.batch()
    assert r.truncates == 1
    p.assert_equal()
    execute(p.source, "INSERT INTO public.ev VALUES (3, '2025-04-04', 3)")
    p.batch()
    p.assert_equal()


def test_root_truncate_past_a_limited_batch_is_not_mistaken_for_a_partition_truncate(
    new_db,
) -> None:
    """A batch cut short by ``cdc_batch_max_changes`` may end before the root's TRUNCATE that
    gave the leaves new files: it leaves the decision to the batch that reads the TRUNCATE."""
    p = loaded_pipeline(
        new_db, PARTITIONED, ["public.ev"], settings=Settings(cdc_batch_max_changes=50)
    )
    p.batch()
    for i in range(3):
        execute(p.source, f"UPDATE public.ev SET n = n + 1 WHERE id BETWEEN {i * 40} AND 360")
    execute(p.source, "TRUNCATE public.ev", "INSERT INTO public.ev VALUES (1, '2024-05-05', 5)")
    first = p.batch()
    assert first.truncates == 0 and first.updates > 0  # ended before the TRUNCATE
    for _ in range(10):
        if p.batch().changes == 0:
            break
    p.assert_equal()
    assert checksum(p.target, "public", "ev")[0] == 1


# -- 2. ADD COLUMN with a constant default on a partitioned table --------------------------------


def test_added_column_constant_default_through_partitioned_root(new_db) -> None:
    p = loaded_pipeline(new_db, PARTITIONED, ["public.ev"])
    p.batch()  # the partitions' files are recorded: a constant default rewrites nothing
    execute(
        p.source,
        "ALTER TABLE public.ev ADD COLUMN flag int DEFAULT 7",
        "ALTER TABLE public.ev ADD COLUMN label text DEFAULT 'a b'",
        "UPDATE public.ev SET flag = 8 WHERE id = 1",
    )
    r = p.batch()
    assert r.warnings == ()  # a constant default is copied exactly: nothing to warn about
    p.assert_equal()
    assert (
        scalar(p.target, "SELECT count(*) FROM public.ev WHERE flag = 7 AND label = 'a b'") == 720
    )


def test_added_column_volatile_default_on_partitioned_root_still_warns(new_db) -> None:
    p = loaded_pipeline(new_db, PARTITIONED, ["public.ev"])
    execute(
        p.source,
        "ALTER TABLE public.ev ADD COLUMN token uuid DEFAULT gen_random_uuid()",
        "UPDATE public.ev SET n = 0 WHERE id = 1",
    )
    # A volatile default rewrites every leaf: the batch cannot tell that from a leaf TRUNCATE and
    # stops (the full load recorded the leaves' files); its fix, followed literally, goes on.
    with pytest.raises(SchemaChangeError) as err:
        p.batch()
    text = err.value.for_row()
    assert "partitions public.ev_a of public.ev" in text and "public.ev_b of public.ev" in text
    execute(p.target, _fix_sql(text, "target"))  # one fix names every rewritten leaf
    r = p.batch()
    assert len(r.warnings) == 1 and "'token'" in r.warnings[0], r.warnings


# -- 3. a new enum label ----------------------------------------------------------------------


def test_new_enum_labels_are_added_in_place_before_their_rows(new_db) -> None:
    ddl = [
        "CREATE TYPE public.mood AS ENUM ('sad', 'ok', 'happy')",
        "CREATE DOMAIN public.mood_d AS public.mood",
        "CREATE TABLE public.m (id int PRIMARY KEY, v public.mood, vs public.mood[],"
        " vd public.mood_d)",
        "INSERT INTO public.m SELECT g, 'ok', ARRAY['sad'::public.mood]"
        " FROM generate_series(1, 5) g",
    ]
    p = loaded_pipeline(new_db, ddl, ["public.m"], target_schema="copy")
    execute(
        p.source,
        "ALTER TYPE public.mood ADD VALUE 'meh' BEFORE 'ok'",
        "ALTER TYPE public.mood ADD VALUE 'great' AFTER 'happy'",
        "ALTER TYPE public.mood ADD VALUE 'glad' BEFORE 'happy'",
        "INSERT INTO public.m VALUES (10, 'meh', ARRAY['great'::public.mood], 'meh')",
        "UPDATE public.m SET v = 'glad' WHERE id = 1",
        "INSERT INTO public.m VALUES (11, 'great', NULL, NULL)",
        "UPDATE public.m SET vd = 'glad' WHERE id = 2",
    )
    r = p.batch()
    assert r.enum_labels_added == (
        "copy.mood: 'meh' BEFORE 'ok'",
        "copy.mood: 'glad' BEFORE 'happy'",
        "copy.mood: 'great' AFTER 'happy'",
    )
    for t in p.spec.tables:
        assert checksum(p.source, "public", t.name) == checksum(p.target, "copy", t.name)
    labels = "SELECT string_agg(enumlabel::text, ',' ORDER BY enumsortorder) FROM pg_enum"
    assert scalar(p.target, labels) == scalar(p.source, labels) == "sad,meh,ok,glad,happy,great"
    order = "SELECT string_agg(id::text, ',' ORDER BY v, id) FROM {}.m"
    assert scalar(p.target, order.format("copy")) == scalar(p.source, order.format("public"))
    again = p.batch()  # nothing left to add
    assert again.enum_labels_added == ()


# -- 4. DROP COLUMN after earlier changes in the same batch ------------------------------------

DROP_DDL = [
    "CREATE TABLE public.d (id int PRIMARY KEY, a int, b text)",
    "INSERT INTO public.d SELECT g, g, 'b' || g FROM generate_series(1, 10) g",
    "CREATE TABLE public.f (a int, b text, c text, e int)",
    "ALTER TABLE public.f REPLICA IDENTITY FULL",
    "INSERT INTO public.f SELECT g % 3, 'b', 'c', g FROM generate_series(1, 6) g",
]


def test_dropped_column_fix_followed_literally_recovers(new_db) -> None:
    p = loaded_pipeline(new_db, DROP_DDL, ["public.d", "public.f"])
    execute(
        p.source,
        "UPDATE public.d SET a = a + 100 WHERE id <= 3",
        "ALTER TABLE public.d DROP COLUMN b",
        "INSERT INTO public.d VALUES (11, 11)",
        "UPDATE public.d SET a = a + 1000 WHERE id = 3",
        # a table matched on all columns, two columns dropped at once
        "UPDATE public.f SET e = -e WHERE e <= 2",
        "DELETE FROM public.f WHERE e = 3",
        "ALTER TABLE public.f DROP COLUMN b, DROP COLUMN c",
        "UPDATE public.f SET e = e * 10 WHERE e = 4",
    )
    with pytest.raises(SchemaChangeError) as err:
        p.batch()
    text = err.value.for_row()
    assert "'b' was dropped or renamed" in text
    execute(p.target, _fix_sql(text, "target"))
    with pytest.raises(SchemaChangeError) as err:
        p.batch()
    text = err.value.for_row()
    assert "columns 'b', 'c' were dropped or renamed" in text and "public.f" in text
    execute(p.target, _fix_sql(text, "target"))
    r = p.batch()
    assert (r.inserts, r.updates, r.deletes) == (1, 7, 1)
    p.assert_equal()
    assert scalar(p.target, "SELECT string_agg(a::text, ',' ORDER BY id) FROM public.d") == (
        "101,102,1103,4,5,6,7,8,9,10,11"
    )


def test_column_added_and_dropped_within_one_batch(new_db) -> None:
    p = loaded_pipeline(new_db, DROP_DDL, ["public.d"])
    execute(
        p.source,
        "ALTER TABLE public.d ADD COLUMN c int DEFAULT 5",
        "UPDATE public.d SET c = 6, a = -1 WHERE id = 1",
        "INSERT INTO public.d VALUES (12, 12, 'x', 7)",
        "ALTER TABLE public.d DROP COLUMN c",
        "INSERT INTO public.d VALUES (13, 13, 'y')",
    )
    r = p.batch()
    assert (r.inserts, r.updates) == (2, 1)
    p.assert_equal()
    assert scalar(p.target, "SELECT count(*) FROM pg_attribute WHERE attname = 'c'") == 0


def test_column_added_then_renamed_within_one_batch_is_not_silent(new_db) -> None:
    """The older shape's column is missing by name but alive under another: its values (set by
    the update before the rename) cannot be placed, so the batch fails instead of dropping them."""
    p = loaded_pipeline(new_db, DROP_DDL, ["public.d"])
    execute(
        p.source,
        "ALTER TABLE public.d ADD COLUMN c int DEFAULT 5",
        "UPDATE public.d SET c = 6 WHERE id = 1",
        "ALTER TABLE public.d RENAME COLUMN c TO c2",
        "UPDATE public.d SET a = 0 WHERE id = 2",
    )
    with pytest.raises(SchemaChangeError, match="may have been renamed") as err:
        p.batch()
    assert "(fix: reset the pipeline" in err.value.for_row()


def test_renamed_column_fix_names_a_reset(new_db) -> None:
    """A rename looks like a drop plus a new column: the fix does not offer the drop alone as
    the answer for a rename (it would lose the values changed before it)."""
    p = loaded_pipeline(new_db, DROP_DDL, ["public.d"])
    execute(
        p.source,
        "ALTER TABLE public.d RENAME COLUMN b TO b2",
        "UPDATE public.d SET b2 = 'new' WHERE id = 1",
    )
    with pytest.raises(SchemaChangeError) as err:
        p.batch()
    text = err.value.for_row()
    assert "(fix: reset the pipeline for a new full load" in text and "'b2'" in text
    assert "DROP COLUMN" not in text  # that would lead to a second failure, not a recovery


# -- 5. a renamed source table -------------------------------------------------------------------


def test_renamed_table_renamed_back_loses_nothing(new_db) -> None:
    ddl = [
        "CREATE TABLE public.t (id int PRIMARY KEY, v text)",
        "INSERT INTO public.t SELECT g, 'v' FROM generate_series(1, 10) g",
    ]
    p = loaded_pipeline(new_db, ddl, ["public.t"])
    execute(
        p.source,
        "UPDATE public.t SET v = 'before' WHERE id = 1",
        "ALTER TABLE public.t RENAME TO t2",
        "UPDATE public.t2 SET v = 'while renamed' WHERE id = 2",
        "INSERT INTO public.t2 VALUES (100, 'new while renamed')",
        "DELETE FROM public.t2 WHERE id = 3",
    )
    with pytest.raises(SourceError) as err:
        p.batch()
    text = err.value.for_row()
    assert "source table does not exist" in text
    assert "reset the pipeline with public.t2 in its tables" in text  # how to adopt the name
    execute(p.source, _fix_sql(text, "source"))
    execute(p.source, "UPDATE public.t SET v = 'after' WHERE id = 4")
    r = p.batch()
    assert (r.inserts, r.updates, r.deletes) == (1, 3, 1)
    p.assert_equal()


def test_table_moved_and_renamed_fix_followed_literally_loses_nothing(new_db) -> None:
    ddl = [
        "CREATE TABLE public.t (id int PRIMARY KEY, v text)",
        "INSERT INTO public.t SELECT g, 'v' FROM generate_series(1, 10) g",
        "CREATE SCHEMA other",
    ]
    p = loaded_pipeline(new_db, ddl, ["public.t"])
    execute(
        p.source,
        "ALTER TABLE public.t SET SCHEMA other",
        "ALTER TABLE other.t RENAME TO t3",
        "UPDATE other.t3 SET v = 'moved' WHERE id <= 5",
    )
    with pytest.raises(SourceError) as err:
        p.batch()
    text = err.value.for_row()
    assert "other.t3" in text
    execute(p.source, _fix_sql(text, "source"))
    r = p.batch()
    assert r.updates == 5
    p.assert_equal()

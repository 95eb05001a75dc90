"""Generated columns through the full load and CDC (issue 11 item 10).

pgoutput does not send generated columns before PostgreSQL 18 (and from 18 only with the
publication's ``publish_generated_columns``), so a target that held them as plain columns failed
every CDC batch with "column ... was dropped or renamed". The target now has them as generated
columns with the source's expression: the copy leaves them out, the target computes them, the apply
never writes them. Where the target cannot create the expression (a function it lacks), the
column is a plain copy of the source's values: kept current by CDC on a PostgreSQL 18 source
(whose publication then publishes generated columns), refused for CDC before 18.
"""

from typing import Any

import psycopg
import pytest

from cdc_assets.domain import Mode, PipelineSpec, TableRef
from cdc_assets.engine.full_load import run_full_load
from cdc_assets.errors import SourceError, TargetError
from cdc_assets.settings import Settings
from cdc_assets_tests.integration.cdc_support import (
    Pipeline,
    checksum,
    execute,
    loaded_pipeline,
    scalar,
)

pytestmark = pytest.mark.integration

BIG = "(SELECT string_agg(md5(g::text || s::text), '') FROM generate_series(1, 200) s)"
DDL = [
    "CREATE TABLE public.gen (id int PRIMARY KEY, price numeric(10,2) NOT NULL, qty int NOT NULL,"
    " total numeric GENERATED ALWAYS AS (price * qty) STORED,"
    " label text GENERATED ALWAYS AS ('#' || id::text || ':' || upper(note)) STORED,"
    " note text, big text)",
    f"INSERT INTO public.gen (id, price, qty, note, big) SELECT g, g * 1.5, g % 7, 'n' || g,"
    f" CASE WHEN g % 50 = 0 THEN {BIG} END FROM generate_series(1, 300) g",
    "CREATE TABLE public.genfull (a int, b int GENERATED ALWAYS AS (a * 2) STORED, c text)",
    "ALTER TABLE public.genfull REPLICA IDENTITY FULL",
    "INSERT INTO public.genfull (a, c) SELECT g, 'c' FROM generate_series(1, 20) g",
]
GENERATED_SQL = """
SELECT a.attname::text, a.attgenerated::text, pg_get_expr(d.adbin, d.adrelid)
FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated <> ''
ORDER BY a.attnum
"""


def _generated(url: str, table: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(GENERATED_SQL, (table,)).fetchall()


def _major(url: str) -> int:
    return int(scalar(url, "SELECT current_setting('server_version_num')::int")) // 10000


def _changes(p: Pipeline) -> None:
    execute(
        p.source,
        "INSERT INTO public.gen (id, price, qty, note) VALUES (1001, 2.5, 4, 'new'),"
        " (1002, 1, 1, NULL)",
        "UPDATE public.gen SET price = price + 1 WHERE id % 10 = 0",  # big stays unchanged TOAST
        "UPDATE public.gen SET note = 'changed' WHERE id BETWEEN 20 AND 40",
        "UPDATE public.gen SET qty = 0, note = NULL WHERE id = 1001",
        "DELETE FROM public.gen WHERE id BETWEEN 100 AND 120",
        "INSERT INTO public.genfull (a, c) VALUES (100, 'i')",
        "UPDATE public.genfull SET a = a + 50 WHERE a <= 5",
        "DELETE FROM public.genfull WHERE a = 10",
    )


def test_generated_columns_are_computed_on_the_target_through_load_and_cdc(new_db) -> None:
    ddl = list(DDL)
    source_probe = new_db("probe")
    virtual = _major(source_probe) >= 18
    if virtual:  # PostgreSQL 18's default kind; earlier servers have only STORED
        ddl.append("ALTER TABLE public.gen ADD COLUMN v int GENERATED ALWAYS AS (qty + 1) VIRTUAL")
    p = loaded_pipeline(new_db, ddl, ["public.gen", "public.genfull"])
    for table in ("public.gen", "public.genfull"):
        assert _generated(p.target, table) == _generated(p.source, table)
    kinds = {g[0]: g[1] for g in _generated(p.target, "public.gen")}
    assert kinds == (
        {"total": "s", "label": "s", "v": "v"} if virtual else {"total": "s", "label": "s"}
    )
    p.assert_equal()
    _changes(p)
    r = p.batch()
    assert r.transactions == 8 and r.updates > 0 and r.deletes > 0
    p.assert_equal()
    execute(p.source, "UPDATE public.gen SET qty = qty + 1 WHERE id <= 50")
    p.batch()
    p.assert_equal()
    total = "SELECT total::text FROM public.gen WHERE id = 10"
    assert scalar(p.target, total) == scalar(p.source, total)
    if virtual:
        # No publication can carry a virtual column, and PostgreSQL 18 refuses UPDATE/DELETE of a
        # published REPLICA IDENTITY FULL table with one: refused before the source is touched.
        execute(
            p.source, "ALTER TABLE public.genfull ADD COLUMN v int GENERATED ALWAYS AS (a) VIRTUAL"
        )
        with pytest.raises(SourceError) as err:
            run_full_load(p.spec, source_url=p.source, target_url=p.target, settings=p.settings)
        assert err.value.table == "public.genfull" and "VIRTUAL" in err.value.detail


FALLBACK_DDL = [
    "CREATE FUNCTION public.twice(int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT $1 * 2'",
    "CREATE TABLE public.genf (id int PRIMARY KEY, x int,"
    " y int GENERATED ALWAYS AS (public.twice(x)) STORED, z text)",
    "INSERT INTO public.genf (id, x, z) SELECT g, g, 'z' FROM generate_series(1, 100) g",
    *DDL,
]


def test_generated_column_the_target_cannot_compute_is_a_plain_copy(new_db) -> None:
    """``twice()`` exists only on the source: ``y`` is a plain column holding the source's values.

    On PostgreSQL 18 the publication publishes generated columns, so CDC keeps ``y`` current and
    the apply skips the published values of the columns the target computes itself (``gen``).
    Before 18 CDC could not, so a CDC pipeline is refused up front; full_load mode copies it.
    """
    source, target = new_db("src"), new_db("tgt")
    execute(source, *FALLBACK_DDL)
    tables = (TableRef("public", "genf"), TableRef("public", "gen"), TableRef("public", "genfull"))
    spec = PipelineSpec("gf", source, target, tables, mode=Mode.FULL_LOAD_AND_CDC)
    settings = Settings(full_load_workers=2)
    if _major(source) < 18:
        with pytest.raises(TargetError) as err:
            run_full_load(spec, source_url=source, target_url=target, settings=settings)
        assert err.value.table == "public.genf" and "'y'" in err.value.detail
        assert "twice" in err.value.detail and "mode full_load" in (err.value.fix or "")
        assert scalar(source, "SELECT count(*) FROM pg_replication_slots") == 0
        assert scalar(target, "SELECT count(*) FROM pg_tables WHERE tablename = 'genf'") == 0
        only_load = PipelineSpec("gl", source, target, tables, mode=Mode.FULL_LOAD)
        result = run_full_load(only_load, source_url=source, target_url=target, settings=settings)
        (warning,) = result.warnings
        assert "'y'" in warning and "public.genf" in warning and "twice" in warning
        assert _generated(target, "public.genf") == []  # a plain column on the target
        for t in tables:
            assert checksum(source, t.schema, t.name) == checksum(target, t.schema, t.name)
        return
    result = run_full_load(spec, source_url=source, target_url=target, settings=settings)
    assert len(result.warnings) == 1 and "'y'" in result.warnings[0], result.warnings
    p = Pipeline(spec, source, target, settings)
    assert _generated(target, "public.genf") == []
    assert [g[0] for g in _generated(target, "public.gen")] == ["total", "label"]
    p.assert_equal()
    execute(
        source,
        "UPDATE public.genf SET x = x * 10 WHERE id <= 30",
        "INSERT INTO public.genf (id, x, z) VALUES (500, 7, 'new')",
        "DELETE FROM public.genf WHERE id = 99",
    )
    _changes(p)
    p.batch()
    p.assert_equal()
    assert scalar(target, "SELECT y FROM public.genf WHERE id = 500") == 14


def test_generated_column_added_during_cdc_is_generated_on_the_target(new_db) -> None:
    """Its values never arrive as changes (before 18 not at all): the target computes them."""
    p = loaded_pipeline(new_db, DDL, ["public.gen", "public.genfull"])
    added = [
        "ALTER TABLE public.gen ADD COLUMN doubled numeric GENERATED ALWAYS AS (price * 2) STORED"
    ]
    if _major(p.source) >= 18:
        added.append(
            "ALTER TABLE public.gen ADD COLUMN q1 int GENERATED ALWAYS AS (qty + 1) VIRTUAL"
        )
    execute(
        p.source,
        *added,
        "ALTER TABLE public.genfull ADD COLUMN b3 int GENERATED ALWAYS AS (a * 3) STORED",
    )
    _changes(p)
    p.batch()
    for table in ("public.gen", "public.genfull"):
        assert _generated(p.target, table) == _generated(p.source, table)
    p.assert_equal()  # rows that existed before the column have its values too
    execute(p.source, "UPDATE public.gen SET price = price * 3 WHERE id <= 25")
    p.batch()
    p.assert_equal()

"""The full load's speed-ups keep their promises: tag counts, early index builds, COPY FREEZE."""

from typing import Any

import psycopg
import pytest
from psycopg import sql

import cdc_assets.engine.full_load_workers as workers_mod
from cdc_assets.domain import TableRef
from cdc_assets.engine.full_load import _verify, run_full_load
from cdc_assets.engine.full_load_workers import TableTally
from cdc_assets.pg.catalog import describe_tables
from cdc_assets_tests.integration.full_load_support import execute, scalar, settings, spec
from cdc_assets_tests.support import wait_until

pytestmark = pytest.mark.integration


def _table(url: str, name: str, rows: int) -> None:
    execute(
        url,
        sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, k int NOT NULL, note text)").format(
            sql.Identifier(name)
        ),
        sql.SQL("CREATE INDEX ON {} (k)").format(sql.Identifier(name)),
        sql.SQL(
            "INSERT INTO {} SELECT g, g % 97, md5(g::text) FROM generate_series(1, {}) g"
        ).format(sql.Identifier(name), sql.Literal(rows)),
        sql.SQL("ANALYZE {}").format(sql.Identifier(name)),
    )


def test_a_tables_indexes_are_built_before_the_next_table_is_copied(new_db) -> None:
    """One worker: the big table's keys are built right after its copy, before the small copy.

    Transaction ids order the work on the target: the ``pg_index`` row of the big table's primary
    key is written by the transaction that built it, the small table's rows by its COPY. Before,
    every index waited for the last copy. The indexes are there and valid after the swap.
    """
    src, dst = new_db("src"), new_db("dst")
    _table(src, "big", 30_000)
    _table(src, "small", 2_000)
    p = spec("early_idx", src, dst, "public.big", "public.small")
    run_full_load(p, source_url=src, target_url=dst, settings=settings(full_load_workers=1))
    index_xid = scalar(
        dst,
        "SELECT xmin::text::bigint FROM pg_index WHERE indexrelid = 'public.big_pkey'::regclass",
    )
    small_rows_xid = scalar(dst, "SELECT min(xmin::text::bigint) FROM public.small")
    assert index_xid < small_rows_xid
    for table in ("big", "small"):
        indexes = scalar(
            dst,
            "SELECT array_agg(c.relname::text || ':' || i.indisvalid::text ORDER BY c.relname) "
            "FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE i.indrelid = %s::regclass",
            (f"public.{table}",),
        )
        assert indexes == [f"{table}_cdc_idx0:true", f"{table}_pkey:true"]


def test_a_worker_left_with_index_builds_only_releases_its_source_snapshot(
    new_db, monkeypatch
) -> None:
    """Index builds at the end of the load do not keep a snapshot open on the source.

    One worker: while the big table's keys are built the small table is still to be copied, so
    its source transaction (the snapshot) must stay; at the small table's build nothing is left
    to read, and the source sees no open transaction of the load any more.
    """
    src, dst = new_db("src"), new_db("dst")
    _table(src, "big", 30_000)
    _table(src, "small", 2_000)
    src_db = psycopg.conninfo.conninfo_to_dict(src)["dbname"]
    open_on_source: dict[str, bool] = {}
    real_build = workers_mod.build_indexes

    def in_transaction() -> int:
        return int(
            scalar(
                src,
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
                "AND application_name LIKE 'cdc_assets:%%' AND state = 'idle in transaction'",
                (src_db,),
            )
        )

    def build_and_look(conn: Any, schema: str, stage: str, table: Any, **kw: Any) -> None:
        if table.ref.name == "big":
            open_on_source["big"] = in_transaction() == 1
        else:
            wait_until(
                lambda: in_transaction() == 0, timeout=10, describe="source transaction to end"
            )
            open_on_source["small"] = False
        real_build(conn, schema, stage, table, **kw)

    monkeypatch.setattr(workers_mod, "build_indexes", build_and_look)
    p = spec("release", src, dst, "public.big", "public.small")
    run_full_load(p, source_url=src, target_url=dst, settings=settings(full_load_workers=1))
    assert open_on_source == {"big": True, "small": False}


def test_row_counts_come_from_the_copy_tags_not_a_second_count(new_db) -> None:
    """Verification takes the target's rows from the COPY tags: it never reads the table again.

    Run against a target without the table: a ``count(*)`` would fail there, the tag sum cannot.
    """
    src, dst = new_db("src"), new_db("dst")
    _table(src, "t", 10)
    with (
        psycopg.connect(src, autocommit=True) as s,
        psycopg.connect(dst, autocommit=True) as d,
    ):
        (info,) = describe_tables(s, (TableRef("public", "t"),), pipeline="tags")
        tally = TableTally(chunks_left=0, rows=10, target_rows=10)
        (result,) = _verify(
            d,
            schema="public",
            pipeline="tags",
            tables=(info,),
            tallies={info.oid: tally},
            checksums=False,
        )
    assert result.rows == 10
    assert scalar(dst, "SELECT to_regclass('public.t')") is None


def test_a_table_copied_in_one_piece_is_frozen_by_its_copy(new_db) -> None:
    """COPY FREEZE (the stage truncated in the COPY's transaction) leaves its pages all-visible.

    PostgreSQL 14+ sets the visibility map for the pages a frozen COPY fills from empty (a page
    a buffer flush starts half full is not marked); ANALYZE counts them into ``relallvisible``.
    A plain COPY leaves that 0 until a vacuum.
    """
    src, dst = new_db("src"), new_db("dst")
    _table(src, "one_piece", 20_000)
    p = spec("frozen", src, dst, "public.one_piece")
    run_full_load(p, source_url=src, target_url=dst, settings=settings())
    execute(dst, "ANALYZE public.one_piece")
    pages, visible = scalar(
        dst,
        "SELECT array[relpages, relallvisible] FROM pg_class "
        "WHERE oid = 'public.one_piece'::regclass",
    )
    assert pages > 0
    assert visible > pages * 0.8

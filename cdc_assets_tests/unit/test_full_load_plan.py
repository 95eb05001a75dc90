"""Pure parts of the full load: range planning, COPY query text, names, binary safety."""

import itertools

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdc_assets.domain import TableRef
from cdc_assets.pg.catalog import ColumnInfo, EnumType, TableInfo
from cdc_assets.source.snapshot import BlockRange, copy_out_query, plan_ranges
from cdc_assets.target.ddl import fit_identifier, index_names, stage_name

pytestmark = pytest.mark.unit


def col(name: str, **kw: object) -> ColumnInfo:
    base: dict[str, object] = dict(
        name=name,
        source_type="integer",
        target_type="integer",
        enum=None,
        array_dims=0,
        not_null=False,
        default=None,
        generated=False,
        binary_safe=True,
        user_defined=False,
    )
    base.update(kw)
    return ColumnInfo(**base)  # type: ignore[arg-type]


def table(rows: int = 1000, pages: int = 10, kind: str = "r", cols=None) -> TableInfo:
    return TableInfo(
        ref=TableRef("Sales", "Order Items"),
        oid=1,
        kind=kind,
        columns=tuple(cols or [col("id"), col('we"ird')]),
        primary_key=("id",),
        indexes=(),
        replica_identity="d",
        estimated_rows=rows,
        pages=pages,
    )


@given(
    rows=st.integers(0, 10_000_000),
    pages=st.integers(0, 200_000),
    blocks=st.integers(0, 200_000),
    threshold=st.integers(1, 1_000_000),
)
def test_ranges_cover_every_block_once(rows: int, pages: int, blocks: int, threshold: int) -> None:
    ranges = plan_ranges(table(rows, pages), blocks, threshold)
    if ranges == (None,):
        return
    assert all(isinstance(r, BlockRange) for r in ranges)
    rs = [r for r in ranges if r is not None]
    assert rs[0].start == 0 and rs[-1].stop is None
    for a, b in itertools.pairwise(rs):
        assert a.stop == b.start and a.start < b.start
    assert len(rs) <= 64


def test_small_and_partitioned_tables_are_not_split() -> None:
    assert plan_ranges(table(100, 10), 10, 200_000) == (None,)
    assert plan_ranges(table(10**7, 10**5, kind="p"), 10**5, 1000) == (None,)
    assert len(plan_ranges(table(1_000_000, 10_000), 10_000, 200_000)) == 5


def test_copy_queries_quote_identifiers_and_bound_ranges() -> None:
    t = table()
    whole = copy_out_query(t, None, binary=True).as_string(None)
    assert whole == 'COPY "Sales"."Order Items" ("id", "we""ird") TO STDOUT (FORMAT BINARY)'
    part = copy_out_query(t, BlockRange(5, 9), binary=False).as_string(None)
    assert "ctid >= '(5,0)'::tid AND ctid < '(9,0)'::tid" in part and "FORMAT TEXT" in part
    last = copy_out_query(t, BlockRange(9, None), binary=True).as_string(None)
    assert "ctid >= '(9,0)'::tid)" in last and "ctid <" not in last


def test_binary_only_when_every_column_is_safe() -> None:
    enum_col = col("m", enum=EnumType("mood", ("a",)), target_type=None, user_defined=True)
    enum_arr = col(
        "ms",
        enum=EnumType("mood", ("a",)),
        target_type=None,
        user_defined=True,
        array_dims=1,
        binary_safe=False,
    )
    assert table(cols=[col("id"), enum_col]).binary_safe(same_major=True)
    assert not table(cols=[col("id"), enum_col]).binary_safe(same_major=False)
    assert table(cols=[col("id")]).binary_safe(same_major=False)
    assert not table(cols=[col("id"), enum_arr]).binary_safe(same_major=True)


def test_names_fit_postgres_limits() -> None:
    long = "x" * 48
    assert stage_name(long, 3) == f"_cdc_stage_{long}_3" and len(stage_name(long, 3)) <= 63
    assert len(fit_identifier("é" * 40).encode()) <= 63
    assert fit_identifier("é" * 40) == "é" * 31
    pk, idx = index_names("ü" * 40, table())
    assert pk is not None and len(pk.encode()) <= 63 and idx == []


def test_sql_never_contains_raw_values() -> None:
    # A snapshot id or range bound is a literal, never spliced: quote characters stay inert.
    from cdc_assets.source.snapshot import checksum_query

    q = checksum_query(psycopg.sql.Identifier("a'b"), psycopg.sql.Identifier("c"))
    assert '"a\'b"' in q.as_string(None)

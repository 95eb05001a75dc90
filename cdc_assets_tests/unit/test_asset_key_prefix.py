"""--asset-key-prefix parsing and the clash checks of control/conflicts.py, over plain rows."""

from datetime import UTC, datetime

import pytest

from cdc_assets.cli import UsageError, parse_prefix
from cdc_assets.control.conflicts import (
    AssetKeyConflict,
    Claim,
    SharedTargetConflict,
    key_conflicts,
    refuse_new,
    row_problems,
    target_asset_keys,
    target_conflicts,
)
from cdc_assets.control.rows import PipelineRow
from cdc_assets.domain import CdcStatus, FullLoadStatus, Mode, TableRef

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def row(
    id: int,
    name: str,
    *tables: str,
    prefix: tuple[str, ...] | None = None,
    target: str = "env:DW",
    schema: str = "public",
) -> PipelineRow:
    return PipelineRow(
        id=id,
        name=name,
        source_url="env:SRC",
        target_url=target,
        tables=tuple(TableRef.parse(t) for t in tables or ("public.orders",)),
        target_schema=schema,
        mode=Mode.FULL_LOAD,
        enabled=True,
        full_load_status=FullLoadStatus.NOT_STARTED,
        full_load_started_at=None,
        full_load_completed_at=None,
        full_load_rows=None,
        full_load_run_id=None,
        full_load_run_created_at=None,
        full_load_authority=None,
        cdc_status=CdcStatus.NOT_STARTED,
        cdc_lsn=None,
        cdc_lag_bytes=None,
        cdc_progress_at=None,
        cdc_run_id=None,
        cdc_run_created_at=None,
        cdc_authority=None,
        last_run_id=None,
        last_error=None,
        created_at=T0,
        updated_at=T0,
        asset_key_prefix=prefix,
    )


@pytest.mark.parametrize(
    ("text", "parts"),
    [("a/b", ("a", "b")), ("shop", ("shop",)), (" team / Shop_2 ", ("team", "Shop_2"))],
)
def test_parse_prefix_splits_on_slashes(text: str, parts: tuple[str, ...]) -> None:
    assert parse_prefix(text) == parts


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty"),
        ("a//b", "not a valid Dagster key part"),
        ("a/b/", "not a valid Dagster key part"),
        ("a-b", "'a-b' is not a valid Dagster key part"),
        ("/".join("p" * 9), "at most 8"),
    ],
)
def test_parse_prefix_refuses_bad_prefixes_naming_the_flag(text: str, problem: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_prefix(text)
    assert str(info.value).startswith("--asset-key-prefix"), info.value
    assert problem in str(info.value) and "e.g. team/shop" in str(info.value)


def test_target_asset_keys_use_the_prefix_or_the_name() -> None:
    assert target_asset_keys(row(1, "shop", "public.orders", "s.Items")) == [
        "shop/orders",
        "shop/items",
    ]
    assert target_asset_keys(row(1, "shop", prefix=("a", "b"))) == ["a/b/orders"]


def test_key_conflicts_flag_the_later_row_whatever_the_list_order() -> None:
    first = row(1, "first", prefix=("a",))
    later = row(2, "later", "public.orders", "public.lines", prefix=("a",), schema="other")
    apart = row(3, "apart", prefix=("b",))
    for rows in ([first, later, apart], [apart, later, first]):
        found = key_conflicts(rows)
        assert list(found) == ["later"]
        assert "asset key a/orders" in found["later"] and "'first'" in found["later"]


def test_a_flagged_row_owns_no_keys() -> None:
    """Row 2 is flagged by row 1; row 3 shares only row 2's other table, so it keeps its keys."""
    one = row(1, "one", prefix=("a",))
    two = row(2, "two", "public.orders", "public.lines", prefix=("a",))
    three = row(3, "three", "public.lines", prefix=("a",))
    assert set(key_conflicts([one, two, three])) == {"two"}


def test_default_prefixes_never_collide() -> None:
    rows = [row(1, "x", schema="s1"), row(2, "y", schema="s2")]
    assert key_conflicts(rows) == {} and target_conflicts(rows) == {}


def test_target_conflicts_same_url_schema_and_table_only() -> None:
    a = row(1, "a", "s1.orders")
    b = row(2, "b", "s2.orders", prefix=("other",))  # another source table, same target table
    c = row(3, "c", "s1.orders", target="env:DW2")  # another target (as written)
    d = row(4, "d", "s1.orders", schema="shop")  # another target schema
    found = target_conflicts([a, b, c, d])
    assert list(found) == ["b"]
    assert "public.orders" in found["b"] and "'a'" in found["b"]
    assert row_problems([a, b, c, d]) == found


def test_refuse_new_names_both_pipelines_and_the_key() -> None:
    existing = [row(1, "old", prefix=("a", "b"), schema="s1")]
    new = Claim("new", ("a", "b"), (TableRef.parse("public.orders"),), "env:DW", "s2")
    with pytest.raises(AssetKeyConflict) as info:
        refuse_new(existing, new)
    text = info.value.for_row()
    assert "'new'" in text and "'old'" in text and "a/b/orders" in text
    assert "--asset-key-prefix" in text


def test_refuse_new_sees_a_source_key_clash() -> None:
    """prefix a/source/public + table orders is the source key of prefix a's public.orders."""
    existing = [row(1, "old", prefix=("a",), schema="s1")]
    new = Claim("new", ("a", "source", "public"), (TableRef.parse("x.orders"),), "env:DW", "s2")
    with pytest.raises(AssetKeyConflict, match="a/source/public/orders"):
        refuse_new(existing, new)


def test_refuse_new_shared_target_only_when_asked() -> None:
    existing = [row(1, "old")]
    new = Claim("new", ("new",), (TableRef.parse("other.orders"),), "env:DW", "public")
    refuse_new(existing, new, refuse_shared_target=False)
    with pytest.raises(SharedTargetConflict) as info:
        refuse_new(existing, new)
    text = info.value.for_row()
    assert "'new'" in text and "'old'" in text and "public.orders" in text

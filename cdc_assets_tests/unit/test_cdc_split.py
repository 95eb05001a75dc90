"""The pure pieces split out of engine/cdc.py: leaf comparisons, session settings, kill points."""

import pytest

from cdc_assets.domain import Mode, PipelineSpec, TableRef
from cdc_assets.engine import cdc
from cdc_assets.errors import SchemaChangeError
from cdc_assets.pg.connect import SESSION_OPTIONS, SESSION_SETTINGS
from cdc_assets.source.changes import LeafPartition
from cdc_assets.source.partitions import changed_leaves, gone_leaves, leaf_truncated_error
from cdc_assets.target.leaves import forget_leaves_sql

pytestmark = pytest.mark.unit

ROOT = TableRef.parse("public.events")
SPEC = PipelineSpec(
    name="p",
    source_url="postgresql://s/db",
    target_url="postgresql://t/db",
    tables=(ROOT,),
    target_schema="public",
    mode=Mode.FULL_LOAD_AND_CDC,
)


def leaf(oid: int, filenode: int, name: str = "") -> LeafPartition:
    return LeafPartition(
        root_oid=1,
        oid=oid,
        schema="public",
        name=name or f"events_{oid}",
        filenode=filenode,
        bound="FOR VALUES FROM (1) TO (2)",
    )


def test_changed_leaves_are_recorded_ones_with_another_file() -> None:
    now = [leaf(10, 100), leaf(11, 222), leaf(12, 300)]
    # 10 unchanged, 11 rewritten, 12 new since the record: only 11 changed.
    assert changed_leaves(now, {10: 100, 11: 111}) == [leaf(11, 222)]
    assert changed_leaves(now, {}) == []


def test_gone_leaves_are_recorded_ones_missing_now_sorted() -> None:
    assert gone_leaves({10: 1}, {12: 1, 10: 1, 11: 1}) == [11, 12]
    assert gone_leaves({10: 1, 13: 1}, {10: 1}) == []


def test_leaf_truncated_error_names_every_leaf_and_the_accept_statement() -> None:
    err = leaf_truncated_error(
        SPEC, {1: ROOT}, [leaf(10, 1, "events_a"), leaf(11, 1, "events_b")], accept="DELETE x"
    )
    assert isinstance(err, SchemaChangeError)
    text = str(err)
    assert "partitions public.events_a of public.events" in text
    assert "public.events_b" in text and "were truncated" in text
    assert "run DELETE x on the target" in text


def test_forget_leaves_sql_matches_the_leaves_table() -> None:
    stmt = forget_leaves_sql("tgt", "p", [10, 11]).as_string()
    assert stmt == (
        'DELETE FROM "tgt"."_cdc_assets_leaves" WHERE pipeline = \'p\' AND leaf IN (10, 11)'
    )


def test_session_options_are_the_session_settings() -> None:
    # One definition, two forms: the full load's startup options and the batch's set_config.
    assert SESSION_OPTIONS == (
        "-c TimeZone=UTC -c DateStyle=ISO,YMD -c IntervalStyle=postgres -c extra_float_digits=3"
    )
    assert dict(SESSION_SETTINGS)["DateStyle"] == "ISO, YMD"


def test_engine_reads_no_kill_environment() -> None:
    # The crash tests' kill switch is a hook the caller passes; the engine only names the points.
    assert cdc.KILL_POINTS == ("before_apply", "after_apply", "after_commit")
    assert not hasattr(cdc, "KILL_ENV")
    for name in ("run_cdc_batch", "has_pending_changes", "pending_bytes", "slot_lag_bytes"):
        assert callable(getattr(cdc, name))

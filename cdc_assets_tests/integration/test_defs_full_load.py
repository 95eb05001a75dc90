"""The full-load asset in a real Dagster instance: op and hook writes, lock, reconciler."""

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from cdc_assets.defs.full_load import TARGET_TABLES
from cdc_assets.defs.reconciler import reconcile
from cdc_assets.defs.tags import TAG_LOCK_CONFLICT, TAG_PIPELINE
from cdc_assets.domain import FullLoadStatus, Phase, Writer
from cdc_assets.ops_cli import execute_pipeline
from cdc_assets.status.reconcile import RUN_RECORD_MISSING
from cdc_assets_tests.e2e.pipelines import count, events, make_source, spec

pytestmark = pytest.mark.integration


def hook_events(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    return [
        e.dagster_event.event_type_value
        for e in instance.all_logs(run_id)
        if e.dagster_event and e.dagster_event.event_type_value.startswith("HOOK_")
    ]


def test_full_load_success_op_and_hook_write(instance, repo, defs, new_db) -> None:
    src, dst = new_db("src"), new_db("dst")
    make_source(src, rows=120)
    repo.add(spec("shop", src, dst))
    before = repo.get("shop").updated_at

    result = execute_pipeline(instance, "shop", Phase.FULL_LOAD, defs=defs)

    assert result.success
    row = repo.get("shop")
    run_id = result.dagster_run.run_id
    assert (row.full_load_status, row.full_load_run_id, row.last_error) == (
        FullLoadStatus.COMPLETED,
        run_id,
        None,
    )
    assert row.full_load_rows == 120 and row.updated_at > before
    assert count(dst) == 120
    assert events(repo, "shop") == [
        ("full_load", "NOT_STARTED", "IN_PROGRESS", "op"),
        ("full_load", "IN_PROGRESS", "COMPLETED", "op"),
    ]
    assert "HOOK_COMPLETED" in hook_events(instance, run_id)
    mat = instance.get_latest_materialization_event(TARGET_TABLES)
    assert mat is not None and mat.asset_materialization is not None
    meta = mat.asset_materialization.metadata
    assert meta["cdc/rows"].value == 120
    assert meta["cdc/table/public.orders/rows"].value == 120
    checks = [
        e.dagster_event.event_specific_data
        for e in instance.all_logs(run_id)
        if e.dagster_event and e.dagster_event.event_type_value == "ASSET_CHECK_EVALUATION"
    ]
    assert [(c.check_name, c.passed) for c in checks] == [("row_counts_match", True)]
    tags = instance.get_run_by_id(run_id).tags
    assert tags[TAG_PIPELINE] == "shop" and tags["dagster/partition"] == "shop"

    # In-process runs are invisible to run-status sensors: the reconciler confirms the row.
    outcomes = reconcile(instance, repo, ["shop"])
    assert [(o.write.status, o.changed) for o in outcomes] == [(FullLoadStatus.COMPLETED, False)]
    assert repo.get("shop").full_load_authority is Writer.RECONCILER
    assert reconcile(instance, repo, ["shop"]) == []


def test_missing_source_table_fails_with_its_name(instance, repo, defs, new_db) -> None:
    src, dst = new_db("src"), new_db("dst")
    make_source(src, rows=5)
    repo.add(spec("broken", src, dst, tables=("public.orders", "public.nope")))

    result = execute_pipeline(instance, "broken", Phase.FULL_LOAD, defs=defs)

    assert not result.success
    row = repo.get("broken")
    assert row.full_load_status is FullLoadStatus.FAILED
    assert row.full_load_run_id == result.dagster_run.run_id
    assert row.last_error and "nope" in row.last_error
    assert "HOOK_COMPLETED" in hook_events(instance, result.dagster_run.run_id)
    assert events(repo, "broken")[-1] == ("full_load", "IN_PROGRESS", "FAILED", "op")
    assert count(dst) is None


def test_unreachable_source_fails_at_resource_init_before_the_op(
    instance, repo, defs, new_db
) -> None:
    from cdc_assets.embedded import free_port

    dst = new_db("dst")
    repo.add(spec("dead", f"postgresql://postgres@127.0.0.1:{free_port()}/nope", dst))

    result = execute_pipeline(instance, "dead", Phase.FULL_LOAD, defs=defs)

    assert not result.success
    assert repo.get("dead").full_load_status is FullLoadStatus.NOT_STARTED  # the op never ran
    assert hook_events(instance, result.dagster_run.run_id) == []
    reconcile(instance, repo, ["dead"])
    row = repo.get("dead")
    assert row.full_load_status is FullLoadStatus.FAILED
    assert row.last_error and "cannot connect to source" in row.last_error


def test_missing_env_var_names_it(instance, repo, defs, new_db, monkeypatch) -> None:
    monkeypatch.delenv("CDC_CONN_NOT_SET", raising=False)
    repo.add(spec("noenv", "env:CDC_CONN_NOT_SET", new_db("dst")))
    result = execute_pipeline(instance, "noenv", Phase.FULL_LOAD, defs=defs)
    assert not result.success
    reconcile(instance, repo, ["noenv"])
    row = repo.get("noenv")
    assert row.full_load_status is FullLoadStatus.FAILED
    assert row.last_error and "CDC_CONN_NOT_SET" in row.last_error


def test_lock_loser_fails_fast_and_leaves_the_row(instance, repo, defs, new_db) -> None:
    src, dst = new_db("src"), new_db("dst")
    make_source(src, rows=5)
    repo.add(spec("locked", src, dst))

    with repo.pipeline_lock("locked"):
        result = execute_pipeline(instance, "locked", Phase.FULL_LOAD, defs=defs)

    assert not result.success
    run = instance.get_run_by_id(result.dagster_run.run_id)
    assert run.tags[TAG_LOCK_CONFLICT] == "true"
    row = repo.get("locked")
    assert row.full_load_status is FullLoadStatus.NOT_STARTED and row.full_load_run_id is None
    assert events(repo, "locked") == []
    assert reconcile(instance, repo, ["locked"]) == []
    assert count(dst) is None


def test_reconciler_fails_a_row_whose_run_was_deleted(instance, repo, defs, new_db) -> None:
    src, dst = new_db("src"), new_db("dst")
    make_source(src, rows=5)
    repo.add(spec("ghost", src, dst))
    result = execute_pipeline(instance, "ghost", Phase.FULL_LOAD, defs=defs)
    assert result.success
    later = datetime.now(UTC) + timedelta(seconds=1)
    repo.transition_full_load(
        "ghost",
        FullLoadStatus.IN_PROGRESS,
        run_id="deleted-run",
        run_created_at=later,
        writer=Writer.OP,
    )

    reconcile(instance, repo, ["ghost"])

    row = repo.get("ghost")
    assert (row.full_load_status, row.full_load_run_id) == (FullLoadStatus.FAILED, "deleted-run")
    assert row.last_error == RUN_RECORD_MISSING


def test_hooks_are_attached_to_the_asset_itself(instance, repo, new_db) -> None:
    """A UI Materialize runs an implicit asset job: the asset's own hooks must still fire."""
    from cdc_assets.defs.full_load import target_tables
    from cdc_assets.defs.resources import ControlDb, PostgresConnections

    src, dst = new_db("src"), new_db("dst")
    make_source(src, rows=3)
    repo.add(spec("mat", src, dst))
    instance.add_dynamic_partitions("pipelines", ["mat"])
    control = ControlDb(url=repo.url)
    result = dg.materialize(
        [target_tables],
        partition_key="mat",
        instance=instance,
        resources={"control": control, "connections": PostgresConnections(control=control)},
    )
    assert result.success
    assert "HOOK_COMPLETED" in hook_events(instance, result.dagster_run.run_id)
    tags = instance.get_run_by_id(result.dagster_run.run_id).tags
    assert tags[TAG_PIPELINE] == "mat"  # added at run start for partition-only launches
    assert repo.get("mat").full_load_status is FullLoadStatus.COMPLETED

"""The full-load asset in a real Dagster instance: op and hook writes, lock, reconciler."""

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import psycopg
import pytest

from cdc_assets.definitions import build_defs
from cdc_assets.defs.check_specs import ROW_COUNTS_CHECK
from cdc_assets.defs.reconciler import reconcile
from cdc_assets.defs.tags import TAG_CHECK_ONLY, TAG_LOCK_CONFLICT, TAG_PIPELINE
from cdc_assets.domain import FullLoadStatus, Mode, Phase, Writer
from cdc_assets.ops_cli import execute_pipeline
from cdc_assets.settings import Settings
from cdc_assets.status.reconcile import RUN_RECORD_MISSING
from cdc_assets_tests.e2e.pipelines import count, events, make_source, spec
from cdc_assets_tests.support import wait_until

pytestmark = pytest.mark.integration


def table(pipeline: str, name: str = "orders") -> dg.AssetKey:
    """A target table's asset key under the default prefix (the pipeline's name)."""
    return dg.AssetKey([pipeline, name])


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
    mat = instance.get_latest_materialization_event(table("shop"))
    assert mat is not None and mat.asset_materialization is not None
    meta = mat.asset_materialization.metadata
    assert meta["cdc/rows"].value == 120 and meta["dagster/row_count"].value == 120
    assert meta["dagster/table_name"].value == "public.orders"
    columns = [c.name for c in meta["dagster/column_schema"].value.columns]
    assert columns == ["id", "note"]
    checks = [
        e.dagster_event.event_specific_data
        for e in instance.all_logs(run_id)
        if e.dagster_event and e.dagster_event.event_type_value == "ASSET_CHECK_EVALUATION"
    ]
    assert [(c.check_name, c.passed) for c in checks] == [("row_counts_match", True)]
    tags = instance.get_run_by_id(run_id).tags
    assert tags[TAG_PIPELINE] == "shop" and "dagster/partition" not in tags

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
    src, dst = new_db("src"), new_db("dst")
    make_source(src, rows=3)
    repo.add(spec("mat", src, dst))
    job = build_defs(Settings()).resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(instance=instance, asset_selection=[table("mat")])
    assert result.success
    assert "HOOK_COMPLETED" in hook_events(instance, result.dagster_run.run_id)
    tags = instance.get_run_by_id(result.dagster_run.run_id).tags
    assert tags[TAG_PIPELINE] == "mat"  # added at run start for selection-only launches
    assert repo.get("mat").full_load_status is FullLoadStatus.COMPLETED


# -- row_counts_match ------------------------------------------------------------------------------


def row_count_evaluations(instance: dg.DagsterInstance, run_id: str) -> list[Any]:
    return [
        e.dagster_event.event_specific_data
        for e in instance.all_logs(run_id)
        if e.dagster_event
        and e.dagster_event.event_type_value == "ASSET_CHECK_EVALUATION"
        and e.dagster_event.event_specific_data.check_name == "row_counts_match"
    ]


def evaluate_row_counts_by_hand(
    defs: dg.Definitions, instance: dg.DagsterInstance, name: str
) -> Any:
    """The UI's "Execute check" on one table: the hidden asset job, subset to the check.

    The definitions are built now (as a reloaded code location would): ``defs`` predates the
    pipeline's row.
    """
    key = dg.AssetCheckKey(table(name), ROW_COUNTS_CHECK)
    job = (
        build_defs(Settings())
        .resolve_implicit_global_asset_job_def()
        .get_subset(asset_selection=set(), asset_check_selection={key})
    )
    result = job.execute_in_process(instance=instance, tags={TAG_CHECK_ONLY: "true"})
    [evaluation] = result.get_asset_check_evaluations()
    assert evaluation.asset_key == table(name)
    return evaluation


@contextmanager
def inserting(url: str, first_id: int) -> Iterator[list[int]]:
    """Insert rows into public.orders, one commit each, for as long as the block runs."""
    stop = threading.Event()
    done: list[int] = [0]
    errors: list[BaseException] = []

    def write() -> None:
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                while not stop.is_set():
                    conn.execute(
                        "INSERT INTO public.orders VALUES (%s, 'concurrent')", (first_id + done[0],)
                    )
                    done[0] += 1
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    wait_until(lambda: done[0] > 0 or errors, timeout=10, describe="the writer to start")
    try:
        yield done
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not errors, errors


@pytest.mark.parametrize("mode", [Mode.FULL_LOAD, Mode.FULL_LOAD_AND_CDC])
def test_row_counts_match_passes_under_a_concurrent_writer(
    instance, repo, defs, new_db, mode
) -> None:
    src, dst = new_db("src"), new_db("dst")
    make_source(src, rows=50_000)
    repo.add(spec("busy", src, dst, mode=mode))
    with inserting(src, 10_000_000) as inserted:
        result = execute_pipeline(instance, "busy", Phase.FULL_LOAD, defs=defs)
        wait_until(lambda: inserted[0] > 100, timeout=30, describe="rows inserted")
    assert result.success
    copied = repo.get("busy").full_load_rows
    assert copied is not None and copied >= 50_000
    assert count(src) == 50_000 + inserted[0] > copied  # the source moved on during the load
    [check] = row_count_evaluations(instance, result.dagster_run.run_id)
    assert check.passed, check.description
    assert check.metadata["copied"].value == copied
    assert check.metadata["target"].value == copied
    assert check.description and "COPY" in check.description


def test_row_counts_match_fails_when_target_rows_are_deleted(instance, repo, defs, new_db) -> None:
    src, dst = new_db("src"), new_db("dst")
    make_source(src, rows=50)
    repo.add(spec("plain", src, dst))
    assert execute_pipeline(instance, "plain", Phase.FULL_LOAD, defs=defs).success
    # Nothing but a load writes a full_load target, even while the source changes.
    with psycopg.connect(src, autocommit=True) as conn:
        conn.execute("INSERT INTO public.orders VALUES (1000, 'after the load')")
    assert evaluate_row_counts_by_hand(defs, instance, "plain").passed

    with psycopg.connect(dst, autocommit=True) as conn:
        conn.execute("DELETE FROM public.orders WHERE id <= 5")
    failed = evaluate_row_counts_by_hand(defs, instance, "plain")
    assert (failed.passed, failed.severity) == (False, dg.AssetCheckSeverity.ERROR)
    assert failed.metadata["copied"].value == 50
    assert failed.metadata["target"].value == 45
    assert "45" in (failed.description or "") and "public.orders" in (failed.description or "")


def test_row_counts_match_of_a_cdc_pipeline_compares_with_the_source_once_caught_up(
    instance, repo, defs, new_db
) -> None:
    src, dst = new_db("src"), new_db("dst")
    make_source(src, rows=50)
    repo.add(spec("flow", src, dst, mode=Mode.FULL_LOAD_AND_CDC))
    assert execute_pipeline(instance, "flow", Phase.FULL_LOAD, defs=defs).success
    with psycopg.connect(src, autocommit=True) as conn:
        conn.execute("INSERT INTO public.orders VALUES (1000, 'after the load')")
    # A change not applied yet: the counts legitimately differ, so no verdict, and no failure.
    pending = evaluate_row_counts_by_hand(defs, instance, "flow")
    assert pending.passed and pending.metadata["compared"].value is False

    assert execute_pipeline(instance, "flow", Phase.CDC, defs=defs).success
    caught_up = evaluate_row_counts_by_hand(defs, instance, "flow")
    assert caught_up.passed and caught_up.metadata["compared"].value is True
    assert caught_up.metadata["source"].value == 51

    with psycopg.connect(dst, autocommit=True) as conn:
        conn.execute("DELETE FROM public.orders WHERE id <= 5")
    failed = evaluate_row_counts_by_hand(defs, instance, "flow")
    assert (failed.passed, failed.severity) == (False, dg.AssetCheckSeverity.ERROR)
    assert failed.metadata["target"].value == 46

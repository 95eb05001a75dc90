"""Asset checks in the real deployment (webserver + daemon, dagster-postgres storage), per table.

Every target table is its own asset with its own checks: the full load records one
``row_counts_match`` result per table (each with that table's counts), the CDC stream run one
``cdc_lag`` result per table at every report (``CDC_MATERIALIZE_EVERY_S``, 5 s in the stack),
and the lag of a disabled CDC pipeline keeps being evaluated: ``cdc_lag_idle_sensor`` launches
a check-only run of the pipeline's ``cdc_lag`` checks, the daemon runs it, each table gets its
result, and no status writer takes that run for a load.
"""

import uuid

import dagster as dg
import pytest

from cdc_assets.defs.check_specs import LAG_CHECK, ROW_COUNTS_CHECK
from cdc_assets.defs.tags import CDC_JOB_NAME, TAG_CHECK_ONLY, TAG_PIPELINE
from cdc_assets.domain import CdcStatus, FullLoadStatus, Mode
from cdc_assets_tests.e2e.pipelines import make_source, spec, target_keys
from cdc_assets_tests.support import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

#: Two tables with different row counts, so a result filed under the wrong table shows.
ROWS = {"public.orders": 10, "public.items": 7}
TABLES = tuple(ROWS)


def check_key(key: list[str], check: str) -> dg.AssetCheckKey:
    return dg.AssetCheckKey(dg.AssetKey(key), check)


def evaluations(
    instance: dg.DagsterInstance, key: dg.AssetCheckKey
) -> list[tuple[str, dg.AssetCheckEvaluation]]:
    """(run id, evaluation) of every recorded execution of one table's check, newest first."""
    out = []
    for record in instance.event_log_storage.get_asset_check_execution_history(key, limit=50):
        if record.event is None or record.event.dagster_event is None:
            continue
        data = record.event.dagster_event.event_specific_data
        if isinstance(data, dg.AssetCheckEvaluation):
            out.append((record.run_id, data))
    return out


def test_each_table_has_its_own_check_results(stack, dagster_instance, control, new_db) -> None:
    src, dst = new_db("src"), new_db("dst")
    for table, rows in ROWS.items():
        make_source(src, rows=rows, table=table.split(".")[1])
    name = f"idle_{uuid.uuid4().hex[:8]}"
    control.add(spec(name, src, dst, tables=TABLES, mode=Mode.FULL_LOAD_AND_CDC))
    # Includes the daemon loading the new row's assets (it re-imports about every 60 s).
    wait_until(
        lambda: control.get(name).cdc_status is CdcStatus.ACTIVE,
        timeout=180,
        describe="the full load and the first batch",
    )
    loaded = control.get(name)
    keys = dict(zip(TABLES, target_keys(name, TABLES), strict=True))

    # row_counts_match: one result per table from the load's run, each with its own counts.
    for table, key in keys.items():
        results = [
            e
            for run_id, e in evaluations(dagster_instance, check_key(key, ROW_COUNTS_CHECK))
            if run_id == loaded.full_load_run_id
        ]
        assert len(results) == 1, f"{table}: {results}"
        (result,) = results
        assert result.asset_key == dg.AssetKey(key) and result.passed, result
        copied, target = result.metadata["copied"].value, result.metadata["target"].value
        assert copied == target == ROWS[table], (table, result.metadata)
        assert result.description and table in result.description

    # cdc_lag: the stream run (the row's CDC run, still going) reports it under each table.
    stream_run = loaded.cdc_run_id
    assert stream_run is not None

    def batch_lag_results() -> dict[str, dg.AssetCheckEvaluation] | None:
        found = {}
        for table, key in keys.items():
            for run_id, e in evaluations(dagster_instance, check_key(key, LAG_CHECK)):
                run = dagster_instance.get_run_by_id(run_id)
                if run is not None and run.job_name == CDC_JOB_NAME:
                    assert run.tags[TAG_PIPELINE] == name
                    assert run_id == stream_run, f"cdc_lag from {run_id}, not the stream run"
                    assert run.status is dg.DagsterRunStatus.STARTED, run.status
                    found[table] = e
                    break
        return found if set(found) == set(TABLES) else None

    batch = wait_until(batch_lag_results, timeout=30, describe="the stream's cdc_lag per table")
    for table, e in batch.items():
        assert e.asset_key == dg.AssetKey(keys[table]) and e.passed, e
        assert e.metadata["cdc/pipeline"].value == name

    control.set_enabled(name, False)
    lag_keys = {check_key(k, LAG_CHECK) for k in keys.values()}

    def check_only_results() -> tuple[str, dict[str, dg.AssetCheckEvaluation]] | None:
        """Each table's result in one check-only run (one run evaluates every table)."""
        by_run: dict[str, dict[str, dg.AssetCheckEvaluation]] = {}
        for table, key in keys.items():
            for run_id, e in evaluations(dagster_instance, check_key(key, LAG_CHECK)):
                by_run.setdefault(run_id, {}).setdefault(table, e)
        for run_id, found in by_run.items():
            run = dagster_instance.get_run_by_id(run_id)
            if run is None or run.tags.get(TAG_CHECK_ONLY) != "true":
                continue
            # A launched run records what it executes: the tables' checks, no asset.
            assert (run.asset_selection, run.asset_check_selection) == (
                frozenset(),
                frozenset(lag_keys),
            )
            assert TAG_PIPELINE not in run.tags and run.tags["cdc/check_of"] == name
            if set(found) == set(TABLES):
                return run_id, found
        return None

    # The sensor ticks every CDC_IDLE_LAG_INTERVAL_S (60 s in the test stack); the first tick
    # after disabling launches the check run.
    check_run, idle = wait_until(check_only_results, timeout=150, describe="an idle-lag check run")
    for table, evaluation in idle.items():
        assert evaluation.asset_key == dg.AssetKey(keys[table]), (table, evaluation)
        assert evaluation.check_name == LAG_CHECK
        assert evaluation.metadata["cdc/pipeline"].value == name
        assert evaluation.metadata["cdc/lag_bytes"].value >= 0
        assert evaluation.description and "CDC_LAG_WARN_BYTES" in evaluation.description
    # The run-status sensors and the reconciler saw that run finish: it is no load or batch of
    # the row. (Disabling stopped CDC, which clears cdc_run_id: STOPPED is no run's status.)
    row = wait_until(
        lambda: (r := control.get(name)).cdc_status is CdcStatus.STOPPED and r,
        timeout=30,
        describe=f"{name}: CDC STOPPED after the disable",
    )
    assert (row.full_load_status, row.full_load_run_id) == (
        FullLoadStatus.COMPLETED,
        loaded.full_load_run_id,
    )
    assert row.cdc_run_id != check_run
    assert check_run not in {e.run_id for e in control.events(name, limit=100)}

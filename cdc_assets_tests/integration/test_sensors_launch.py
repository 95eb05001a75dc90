"""Launch sensor and run-status sensors evaluated against a real instance and real runs."""

import dagster as dg
import pytest

from cdc_assets.definitions import build_defs
from cdc_assets.defs.resources import ControlDb
from cdc_assets.domain import FullLoadStatus, Phase, Writer
from cdc_assets.ops_cli import execute_pipeline
from cdc_assets.settings import Settings
from cdc_assets_tests.e2e.pipelines import events, make_source, spec

pytestmark = pytest.mark.integration


def evaluate(
    defs: dg.Definitions, name: str, instance: dg.DagsterInstance, repo
) -> dg.SensorResult:
    sensor = defs.resolve_sensor_def(name)
    with dg.build_sensor_context(
        instance=instance,
        resources={"control": ControlDb(url=repo.url)},
        definitions=defs,
    ) as ctx:
        # evaluate_tick checks what the daemon checks (e.g. that run requests have a target).
        data = sensor.evaluate_tick(ctx)
    return dg.SensorResult(run_requests=data.run_requests)


def test_launch_sensor_launches_enabled_new_rows_once_their_assets_are_loaded(
    instance, repo, defs, new_db
) -> None:
    src, dst = new_db("src"), new_db("dst")
    repo.add(spec("fresh", src, dst))
    repo.add(spec("off", src, dst, enabled=False))

    # Definitions loaded before the rows existed: no assets to materialize yet, so no run.
    assert evaluate(defs, "launch_full_loads_sensor", instance, repo).run_requests == []
    defs = build_defs(Settings())  # the reloaded code location
    result = evaluate(defs, "launch_full_loads_sensor", instance, repo)

    assert [r.tags["cdc/pipeline"] for r in result.run_requests] == ["fresh"]
    req = result.run_requests[0]
    assert req.job_name == "full_load_job"
    assert req.asset_selection == [dg.AssetKey(["fresh", "orders"])]
    assert req.tags["cdc/pipeline"] == "fresh" and req.tags["cdc/phase"] == "full_load"

    # A reset row gets a new run key (new attempt); an unchanged row keeps its key.
    again = evaluate(defs, "launch_full_loads_sensor", instance, repo)
    assert again.run_requests[0].run_key == req.run_key
    repo.reset("fresh")
    after_reset = evaluate(defs, "launch_full_loads_sensor", instance, repo)
    assert after_reset.run_requests[0].run_key != req.run_key


def test_run_status_sensors_write_from_the_run_record(instance, repo, defs, new_db) -> None:
    src, dst = new_db("src"), new_db("dst")
    make_source(src, rows=10)
    repo.add(spec("sensed", src, dst, tables=("public.orders", "public.absent")))
    failed = execute_pipeline(instance, "sensed", Phase.FULL_LOAD, defs=defs)
    assert not failed.success

    sensor = defs.resolve_sensor_def("pipeline_run_failure_sensor")
    with dg.build_run_status_sensor_context(
        sensor_name="pipeline_run_failure_sensor",
        dagster_event=failed.get_run_failure_event(),
        dagster_instance=instance,
        dagster_run=failed.dagster_run,
        resources={"control": ControlDb(url=repo.url)},
    ) as ctx:
        assert sensor(ctx) is None

    row = repo.get("sensed")
    assert row.full_load_status is FullLoadStatus.FAILED
    assert row.full_load_authority is Writer.SENSOR
    assert row.last_error and "absent" in row.last_error

    # A STARTED event processed late (after the run ended) never moves the row back.
    started = defs.resolve_sensor_def("pipeline_run_started_sensor")
    start_event = next(
        e.dagster_event
        for e in instance.all_logs(failed.dagster_run.run_id)
        if e.dagster_event and e.dagster_event.event_type_value == "PIPELINE_START"
    )
    with dg.build_run_status_sensor_context(
        sensor_name="pipeline_run_started_sensor",
        dagster_event=start_event,
        dagster_instance=instance,
        dagster_run=failed.dagster_run,
        resources={"control": ControlDb(url=repo.url)},
    ) as ctx:
        started(ctx)
    assert repo.get("sensed").full_load_status is FullLoadStatus.FAILED
    assert [e[2] for e in events(repo, "sensed")] == ["IN_PROGRESS", "FAILED"]

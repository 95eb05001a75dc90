"""prune_runs_job against a real Dagster instance and a real control database.

The runs are made "old" by a cut-off in the future (the op's ``created_before``), not by faked
timestamps: every run below was created before it.
"""

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from cdc_assets.defs import retention
from cdc_assets.defs.resources import ControlDb
from cdc_assets.defs.retention import prune_runs, prune_runs_job
from cdc_assets.defs.run_status import aware, identify
from cdc_assets.defs.tags import pipeline_of_run
from cdc_assets.domain import CdcStatus, FullLoadStatus, Mode, Writer
from cdc_assets.status.retention import referenced_run_ids
from cdc_assets_tests.e2e.pipelines import spec

pytestmark = pytest.mark.integration

S, F, C = dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED
LOAD = {"cdc/pipeline": "orders", "cdc/phase": "full_load"}
BATCH = {"cdc/pipeline": "orders", "cdc/phase": "cdc"}
GONE = {"cdc/pipeline": "gone", "cdc/phase": "cdc"}

#: Oldest first: (run id, job, status, tags).
RUNS = [
    ("load_old", "full_load_job", F, LOAD),
    ("load_ref", "full_load_job", S, LOAD),
    ("batch_1", "cdc_sync_job", S, BATCH),
    ("batch_ref", "cdc_sync_job", S, BATCH),
    ("batch_2", "cdc_sync_job", F, BATCH),
    ("check_only", "__ASSET_JOB", S, {"cdc/check_only": "true", "cdc/check_of": "orders"}),
    ("foreign", "finance_job", S, {"team": "finance"}),
    ("foreign_asset", "__ASSET_JOB", S, {}),
    ("gone_1", "cdc_sync_job", S, GONE),
    ("batch_newest", "cdc_sync_job", C, BATCH),
    ("gone_2", "cdc_sync_job", F, GONE),
    ("loser", "cdc_sync_job", F, {**BATCH, "cdc/lock_conflict": "true"}),
    ("going", "cdc_sync_job", dg.DagsterRunStatus.STARTED, BATCH),
]
DELETABLE = {"load_old", "batch_1", "batch_2", "check_only", "gone_1", "loser"}


def make_runs(instance: dg.DagsterInstance) -> dict[str, str]:
    """The runs of ``RUNS`` with one engine event each; our name -> Dagster run id."""
    ids = {}
    for name, job, status, tags in RUNS:
        run = instance.add_run(
            dg.DagsterRun(job_name=job, status=status, tags={**tags, "test/name": name})
        )
        instance.report_engine_event(f"event of {name}", run)
        ids[name] = run.run_id
    return ids


def created(instance: dg.DagsterInstance, run_id: str) -> datetime:
    record = instance.get_run_record_by_id(run_id)
    assert record is not None
    return aware(record.create_timestamp)


def test_prune_deletes_old_project_runs_but_keeps_what_readers_need(
    instance: dg.DagsterInstance, repo, new_db, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, dst = new_db("src"), new_db("dst")
    repo.add(spec("orders", src, dst, mode=Mode.FULL_LOAD_AND_CDC))
    ids = make_runs(instance)
    load, batch = ids["load_ref"], ids["batch_ref"]
    for to in (FullLoadStatus.IN_PROGRESS, FullLoadStatus.COMPLETED):
        repo.transition_full_load(
            "orders", to, run_id=load, run_created_at=created(instance, load), writer=Writer.OP
        )
    assert repo.transition_cdc(
        "orders",
        CdcStatus.ACTIVE,
        run_id=batch,
        run_created_at=created(instance, batch),
        writer=Writer.OP,
    )
    row = repo.get("orders")
    assert (row.full_load_run_id, row.cdc_run_id, row.last_run_id) == (load, batch, batch)

    # Pages of 2 make the cursor step over deleted and kept runs alike; a budget of 2 stops early.
    monkeypatch.setattr(retention, "PAGE_SIZE", 2)
    future = datetime.now(UTC) + timedelta(minutes=5)
    first = prune_runs(
        instance, referenced_run_ids(repo.list()), created_before=future, max_deletions=2
    )
    assert first.deleted == 2 and first.more

    # The job does the rest (the schedule's run, with a cut-off in the future instead of 14 days).
    result = prune_runs_job.execute_in_process(
        instance=instance,
        run_config={"ops": {"prune_runs": {"config": {"created_before": future.isoformat()}}}},
        resources={"control": ControlDb(url=repo.url)},
    )
    assert result.success

    left = {name for name, run_id in ids.items() if instance.has_run(run_id)}
    assert left == set(ids) - DELETABLE
    for name, run_id in ids.items():
        messages = [e.message for e in instance.all_logs(run_id)]
        assert (f"event of {name}" in messages) is (name not in DELETABLE), name

    summary = [
        e.message
        for e in instance.all_logs(result.run_id)
        if "finished runs created before" in e.message
    ]
    assert len(summary) == 1
    assert f"deleted {len(DELETABLE) - 2} of" in summary[0]
    assert "2 referenced by a control row" in summary[0]
    assert "newest finished run of its pipeline and phase" in summary[0]
    assert "more remain" not in summary[0]

    # The prune run is no pipeline's run: no status writer takes it for a load or a batch.
    assert pipeline_of_run(result.dagster_run) is None
    assert identify(instance, result.run_id) is None
    # And a second prune finds nothing more to delete.
    again = prune_runs(instance, referenced_run_ids(repo.list()), created_before=future)
    assert again.deleted == 0 and not again.more


def test_prune_keeps_everything_created_after_the_cutoff(instance: dg.DagsterInstance) -> None:
    ids = make_runs(instance)
    past = datetime.now(UTC) - timedelta(days=14)
    result = prune_runs(instance, frozenset(), created_before=past)
    assert (result.deleted, result.scanned) == (0, 0)
    assert all(instance.has_run(run_id) for run_id in ids.values())


def test_retention_schedule_runs_daily_and_skips_when_retention_is_off(
    instance: dg.DagsterInstance, defs: dg.Definitions, repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    schedule = defs.resolve_schedule_def("run_retention_schedule")
    assert schedule.default_status is dg.DefaultScheduleStatus.RUNNING
    assert schedule.job_name == "prune_runs_job" and schedule.cron_schedule == "0 4 * * *"
    tick = datetime(2026, 3, 1, 4, 0, tzinfo=UTC)
    with dg.build_schedule_context(instance=instance, scheduled_execution_time=tick) as ctx:
        requests = list(schedule.evaluate_tick(ctx).run_requests or [])
    assert [r.run_key for r in requests] == [f"prune:{tick.isoformat()}"]

    monkeypatch.setenv("CDC_RUN_RETENTION_DAYS", "0")
    with dg.build_schedule_context(instance=instance, scheduled_execution_time=tick) as ctx:
        data = schedule.evaluate_tick(ctx)
    assert not data.run_requests and "CDC_RUN_RETENTION_DAYS is 0" in (data.skip_message or "")

    # With retention off the job deletes nothing even when launched by hand.
    ids = make_runs(instance)
    run = prune_runs_job.execute_in_process(
        instance=instance, resources={"control": ControlDb(url=repo.url)}
    )
    assert run.success
    assert all(instance.has_run(run_id) for run_id in ids.values())


def test_a_malformed_cutoff_fails_the_prune_run_with_the_fix(
    instance: dg.DagsterInstance, repo
) -> None:
    result = prune_runs_job.execute_in_process(
        instance=instance,
        run_config={"ops": {"prune_runs": {"config": {"created_before": "last tuesday"}}}},
        resources={"control": ControlDb(url=repo.url)},
        raise_on_error=False,
    )
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.error
    assert failure is not None and "'last tuesday' is not an ISO-8601 time" in failure.message

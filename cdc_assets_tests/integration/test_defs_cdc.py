"""CDC orchestration on a real instance: the stream supervisor, the status path.

Source, target and control databases are real (the session's PostgreSQL); Dagster is a real
``DagsterInstance``. Launched runs are executed in process from the sensor's own ``RunRequest``
(job, asset selection and tags exactly as the daemon would launch them).
"""

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import psycopg
import pytest

from cdc_assets.control.repository import PipelineRepository
from cdc_assets.definitions import build_defs
from cdc_assets.defs.check_specs import LAG_CHECK
from cdc_assets.defs.reconciler import reconcile
from cdc_assets.defs.resources import ControlDb, PostgresConnections
from cdc_assets.defs.run_status import run_failure_message
from cdc_assets.domain import CdcStatus, FullLoadStatus, Lsn, Mode, Phase, Writer
from cdc_assets.ops_cli import execute_pipeline
from cdc_assets.settings import Settings
from cdc_assets.target.watermark import get_watermark
from cdc_assets_tests.e2e.pipelines import count, events, make_source, spec
from cdc_assets_tests.support import wait_until

pytestmark = pytest.mark.integration

CDC_SENSOR = "cdc_stream_supervisor"


def lag_key(pipeline: str) -> dg.AssetCheckKey:
    """The ``cdc_lag`` check of the pipeline's one table (default key prefix: its name)."""
    return dg.AssetCheckKey(dg.AssetKey([pipeline, "orders"]), LAG_CHECK)


def resources(repo: PipelineRepository) -> dict[str, Any]:
    control = ControlDb(url=repo.url)
    return {"control": control, "connections": PostgresConnections(control=control)}


def sensor_tick(
    defs: dg.Definitions, instance: dg.DagsterInstance, repo: PipelineRepository
) -> list[dg.RunRequest]:
    """One tick of the CDC sensor, validated as the daemon validates it."""
    sensor = defs.resolve_sensor_def(CDC_SENSOR)
    with (
        dg.partition_loading_context(dynamic_partitions_store=instance),
        dg.build_sensor_context(
            instance=instance, resources=resources(repo), definitions=defs
        ) as ctx,
    ):
        return list(sensor.evaluate_tick(ctx).run_requests or [])


def schedule_tick(
    defs: dg.Definitions, instance: dg.DagsterInstance, repo: PipelineRepository
) -> list[dg.RunRequest]:
    return list(schedule_evaluation(defs, instance, repo).run_requests or [])


def schedule_evaluation(
    defs: dg.Definitions, instance: dg.DagsterInstance, repo: PipelineRepository
) -> Any:
    """One supervisor tick (it replaced the minute schedule): run requests and skip message."""
    sensor = defs.resolve_sensor_def(CDC_SENSOR)
    with (
        dg.partition_loading_context(dynamic_partitions_store=instance),
        dg.build_sensor_context(
            instance=instance, resources=resources(repo), definitions=defs
        ) as ctx,
    ):
        return sensor.evaluate_tick(ctx)


def launch(
    defs: dg.Definitions, instance: dg.DagsterInstance, request: dg.RunRequest
) -> dg.ExecuteInProcessResult:
    """Run a request in this process with its own job, asset selection and tags.

    A supervisor's stream request runs as a catch-up here (without ``cdc/stream``): in-process,
    a stream would never end. Real stream runs are tested on the real stack (e2e/test_stream.py).
    """
    job = defs.resolve_job_def(request.job_name or "")
    tags = {k: v for k, v in request.tags.items() if k != "cdc/stream"}
    result: dg.ExecuteInProcessResult = job.execute_in_process(
        instance=instance,
        asset_selection=request.asset_selection,
        tags=tags,
        raise_on_error=False,
    )
    return result


def run_status_sensor(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    repo: PipelineRepository,
    sensor_name: str,
    run_id: str,
    event_type: str,
) -> None:
    """Evaluate one run-status sensor for the run's ``event_type`` event, as the daemon does."""
    event = next(
        e.dagster_event
        for e in instance.all_logs(run_id)
        if e.dagster_event and e.dagster_event.event_type_value == event_type
    )
    run = instance.get_run_by_id(run_id)
    sensor = defs.resolve_sensor_def(sensor_name)
    with dg.build_run_status_sensor_context(
        sensor_name=sensor_name,
        dagster_event=event,
        dagster_instance=instance,
        dagster_run=run,
        resources={"control": ControlDb(url=repo.url)},
    ) as ctx:
        assert sensor(ctx) is None


def loaded(
    instance: dg.DagsterInstance,
    repo: PipelineRepository,
    defs: dg.Definitions,
    new_db: Any,
    name: str,
    rows: int = 20,
) -> tuple[str, str, str]:
    """A full_load_and_cdc pipeline after a real full-load run: (source, target, run id)."""
    src, dst = new_db("src"), new_db("dst")
    make_source(src, rows=rows)
    repo.add(spec(name, src, dst, mode=Mode.FULL_LOAD_AND_CDC))
    result = execute_pipeline(instance, name, Phase.FULL_LOAD, defs=defs)
    assert result.success
    row = repo.get(name)
    assert (row.full_load_status, row.cdc_status) == (
        FullLoadStatus.COMPLETED,
        CdcStatus.NOT_STARTED,
    )
    return src, dst, result.dagster_run.run_id


def sql(url: str, statement: str, params: Any = None) -> Any:
    """One statement, committed synchronously: the test server commits asynchronously by default,
    and WAL not yet written does not count as pending (``pg_current_wal_lsn()``)."""
    with psycopg.connect(url, autocommit=True, options="-c synchronous_commit=on") as conn:
        cur = conn.execute(statement, params)
        return cur.fetchone() if cur.description else None


def slot_confirmed(src: str, name: str) -> Lsn | None:
    row = sql(
        src,
        "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s",
        (spec(name, src, src).slot_name,),
    )
    return Lsn(row[0]) if row else None


def target_watermark(dst: str, name: str) -> Lsn | None:
    with psycopg.connect(dst, autocommit=True) as conn:
        return get_watermark(conn, "public", name)


def full_load_columns(repo: PipelineRepository, name: str) -> tuple[Any, ...]:
    row = repo.get(name)
    return (
        row.full_load_status,
        row.full_load_run_id,
        row.full_load_authority,
        row.full_load_completed_at,
        row.full_load_rows,
    )


def batch_metadata(instance: dg.DagsterInstance, run_id: str) -> list[Any]:
    """The run-level metadata of a CDC batch: its op's output metadata."""
    return [
        entry.dagster_event.step_output_data.metadata
        for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_OUTPUT)
        if entry.dagster_event is not None
    ]


def lag_evaluation(instance: dg.DagsterInstance, pipeline: str) -> Any:
    record = instance.get_latest_asset_check_evaluation_record(lag_key(pipeline))
    assert record is not None and record.event is not None
    return record.event.dagster_event.event_specific_data


# -- the first batch follows the full load; the success status path -------------------------------


def test_first_batch_follows_full_load_and_records_progress(instance, repo, defs, new_db) -> None:
    src, dst, _ = loaded(instance, repo, defs, new_db, "flow")
    loaded_cols = full_load_columns(repo, "flow")

    [request] = sensor_tick(defs, instance, repo)
    assert request.job_name == "cdc_stream_job" and request.asset_selection is None
    assert request.tags["cdc/pipeline"] == "flow" and request.tags["cdc/phase"] == "cdc"
    assert request.tags["cdc/stream"] == "true" and request.run_key is None
    # No run key: the supervisor asks for a stream on every tick until a CDC run of the pipeline
    # is on record (a queued run then stops it), so the request repeats while none exists.
    assert [r.tags["cdc/pipeline"] for r in sensor_tick(defs, instance, repo)] == ["flow"]

    sql(src, "INSERT INTO public.orders VALUES (1000, 'after the load')")
    result = launch(defs, instance, request)

    assert result.success
    run_id = result.dagster_run.run_id
    run = instance.get_run_by_id(run_id)
    assert run.tags["cdc/pipeline"] == "flow" and run.tags["cdc/phase"] == "cdc"
    assert count(dst) == 21
    # The batch materializes the table it changed, with what it applied to it.
    [changed] = [
        e.asset_materialization
        for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
        if e.asset_materialization is not None
    ]
    assert changed.asset_key == dg.AssetKey(["flow", "orders"])
    assert {k: changed.metadata[k].value for k in ("cdc/phase", "cdc/inserts", "cdc/deletes")} == {
        "cdc/phase": "cdc",
        "cdc/inserts": 1,
        "cdc/deletes": 0,
    }
    row = repo.get("flow")
    assert (row.cdc_status, row.cdc_authority, row.last_run_id, row.last_error) == (
        CdcStatus.ACTIVE,
        Writer.OP,
        run_id,
        None,
    )
    assert row.cdc_lsn is not None
    assert row.cdc_lsn == target_watermark(dst, "flow") == slot_confirmed(src, "flow")
    assert row.cdc_lag_bytes is not None and row.cdc_lag_bytes >= 0
    assert events(repo, "flow")[-1] == ("cdc", "NOT_STARTED", "ACTIVE", "op")
    assert full_load_columns(repo, "flow") == loaded_cols
    hooks = [
        e.dagster_event.event_type_value
        for e in instance.all_logs(run_id)
        if e.dagster_event and e.dagster_event.event_type_value.startswith("HOOK_")
    ]
    assert "HOOK_COMPLETED" in hooks and "HOOK_ERRORED" not in hooks
    check = lag_evaluation(instance, "flow")
    assert check.metadata["cdc/pipeline"].value == "flow"
    assert check.metadata["cdc/lag_bytes"].value == row.cdc_lag_bytes

    # The success sensor confirms from the run record: authority moves, no new status event.
    before = events(repo, "flow")
    run_status_sensor(
        defs, instance, repo, "pipeline_run_success_sensor", run_id, "PIPELINE_SUCCESS"
    )
    assert repo.get("flow").cdc_authority is Writer.SENSOR
    assert events(repo, "flow") == before

    # A STARTED event processed after SUCCESS changes nothing.
    confirmed = repo.get("flow")
    run_status_sensor(defs, instance, repo, "pipeline_run_started_sensor", run_id, "PIPELINE_START")
    assert repo.get("flow") == confirmed
    assert events(repo, "flow") == before

    # The reconciler agrees with both phases; CDC never touched the full-load columns.
    assert [o for o in reconcile(instance, repo, ["flow"]) if o.changed] == []
    assert full_load_columns(repo, "flow")[:2] == loaded_cols[:2]

    # Now ACTIVE: the next tick launches only for pending changes, without a run key.
    sql(src, "UPDATE public.orders SET note = 'changed' WHERE id = 1")
    [again] = sensor_tick(defs, instance, repo)
    assert again.run_key is None and again.tags["cdc/pipeline"] == "flow"
    second = launch(defs, instance, again)
    assert second.success
    assert sql(dst, "SELECT note FROM public.orders WHERE id = 1") == ("changed",)
    row = repo.get("flow")
    assert row.last_run_id == second.dagster_run.run_id and row.cdc_status is CdcStatus.ACTIVE
    assert row.cdc_lsn == target_watermark(dst, "flow") == slot_confirmed(src, "flow")


# -- which pipelines the sensor and the schedule launch -------------------------------------------


def _states(
    repo: PipelineRepository,
    name: str,
    *,
    full_load: FullLoadStatus | None = None,
    cdc: CdcStatus | None = None,
) -> None:
    at = datetime.now(UTC)
    if full_load is not None:
        assert repo.transition_full_load(
            name, full_load, run_id=f"fl-{name}", run_created_at=at, writer=Writer.OP
        )
    if cdc is not None:
        assert repo.transition_cdc(
            name, cdc, run_id=f"cdc-{name}", run_created_at=at, writer=Writer.OP, error="x"
        )


def test_sensor_and_schedule_pick_active_idle_pipelines(instance, repo, defs, new_db) -> None:
    src, dst = new_db("src"), new_db("dst")
    cdc, done, active = Mode.FULL_LOAD_AND_CDC, FullLoadStatus.COMPLETED, CdcStatus.ACTIVE
    rows: dict[str, dict[str, Any]] = {
        "ready": {"full_load": done, "cdc": active},
        "fresh": {"full_load": done},
        "off": {"full_load": done, "cdc": active, "enabled": False},
        "loading": {"full_load": FullLoadStatus.IN_PROGRESS},
        "plain": {"full_load": done, "mode": Mode.FULL_LOAD},
        "busy": {"full_load": done, "cdc": active},
        "stopped": {"full_load": done, "cdc": CdcStatus.STOPPED},
        "broken": {"full_load": done, "cdc": CdcStatus.FAILED},
    }
    make_source(src, rows=5)
    for name, want in rows.items():
        repo.add(
            spec(name, src, dst, mode=want.get("mode", cdc), enabled=want.get("enabled", True))
        )
        _states(repo, name, full_load=want["full_load"], cdc=want.get("cdc"))
        if "cdc" in want:  # a real slot and publication: only the row's state can exclude it
            pipeline = spec(name, src, dst)
            sql(
                src,
                psycopg.sql.SQL("CREATE PUBLICATION {} FOR TABLE public.orders").format(
                    psycopg.sql.Identifier(pipeline.publication_name)
                ),
            )
            sql(
                src,
                "SELECT pg_create_logical_replication_slot(%s, 'pgoutput')",
                (pipeline.slot_name,),
            )
    sql(src, "UPDATE public.orders SET note = note || '!' WHERE id = 1")  # pending everywhere
    cdc_job = defs.resolve_job_def("cdc_stream_job")
    instance.create_run_for_job(
        cdc_job, tags={"cdc/pipeline": "busy"}, status=dg.DagsterRunStatus.STARTED
    )

    requests = sensor_tick(defs, instance, repo)

    # "stopped" is enabled (again): CDC resumes (issue 11 item 5); "off" is disabled; "broken"
    # failed once: the supervisor retries it at once (the backoff starts at the second failure).
    assert sorted(r.tags["cdc/pipeline"] for r in requests) == [
        "broken",
        "fresh",
        "ready",
        "stopped",
    ]
    assert repo.get("off").cdc_status is CdcStatus.STOPPED  # disabled and idle: stopped
    for r in requests:
        assert r.job_name == "cdc_stream_job"
        assert r.asset_selection is None and r.tags["cdc/phase"] == "cdc"
    # The supervisor's next tick asks the same (nothing launched them yet).
    heartbeat = schedule_tick(defs, instance, repo)
    assert sorted(r.tags["cdc/pipeline"] for r in heartbeat) == [
        "broken",
        "fresh",
        "ready",
        "stopped",
    ]
    assert all(r.run_key is None and r.tags["cdc/stream"] == "true" for r in heartbeat)
    for r in heartbeat:
        assert r.asset_selection is None and r.tags["cdc/phase"] == "cdc"


def test_no_schedule_requests_when_nothing_is_active(instance, repo, defs, new_db) -> None:
    src, dst = new_db("src"), new_db("dst")
    repo.add(spec("only_load", src, dst))
    _states(repo, "only_load", full_load=FullLoadStatus.COMPLETED)
    assert schedule_tick(defs, instance, repo) == []
    assert sensor_tick(defs, instance, repo) == []


def test_supervisor_fails_a_silent_stream_and_cancels_a_disabled_ones(
    instance, repo, defs, new_db
) -> None:
    """A STARTED stream with no heartbeat for CDC_HEARTBEAT_TIMEOUT_S is reported failed (the
    default launcher never notices a worker gone with its code server); one that beats is left
    alone; a tick after the supervisor's own blind spot fails nobody; a disabled pipeline's
    stream is canceled."""
    from cdc_assets.control.db import libpq_url
    from cdc_assets.defs.run_status import aware
    from cdc_assets.defs.supervisor import supervise

    class _ListLog:
        def __init__(self) -> None:
            self.lines: list[str] = []

        def info(self, msg: str) -> None:
            self.lines.append(msg)

        warning = info

    src, dst = new_db("src"), new_db("dst")
    cdc = Mode.FULL_LOAD_AND_CDC
    for name in ("silent", "beating", "paused"):
        repo.add(spec(name, src, dst, mode=cdc))
        _states(repo, name, full_load=FullLoadStatus.COMPLETED)
    job = defs.resolve_job_def("cdc_stream_job")
    later = datetime.now(UTC) + timedelta(seconds=45)
    runs = {}
    for name in ("silent", "beating", "paused"):
        runs[name] = instance.create_run_for_job(
            job,
            tags={"cdc/pipeline": name, "cdc/phase": "cdc", "cdc/stream": "true"},
            status=dg.DagsterRunStatus.STARTED,
        )
        record = instance.get_run_record_by_id(runs[name].run_id)
        assert record is not None
        created = aware(record.create_timestamp)
        assert repo.transition_cdc(
            name, CdcStatus.ACTIVE, run_id=runs[name].run_id, run_created_at=created,
            writer=Writer.SENSOR,
        )  # fmt: skip
    # "beating" beats (its last beat moved to 5 s before the tick at `later`, as if it had beaten
    # all along); "silent" never did (its start counts); "paused" is disabled.
    assert repo.record_cdc_heartbeat(
        "beating", run_id=runs["beating"].run_id, lsn=Lsn(0), lag_bytes=0, lag_seconds=0.0
    )
    sql(
        libpq_url(repo.url),
        "UPDATE public.pipelines SET cdc_heartbeat_at = %s WHERE name = 'beating'",
        (later - timedelta(seconds=5),),
    )
    repo.set_enabled("paused", False, writer=Writer.CLI)
    log = _ListLog()
    settings = Settings(cdc_heartbeat_timeout_s=30)

    blind = supervise(
        instance, repo, repo.list(), settings, now=later, check_heartbeats=False, log=log
    )
    assert blind.failed == []
    # The disabled pipeline's stream is asked to stop: this run has no worker to terminate, so
    # Dagster refuses and the supervisor says so (and asks again next tick); on the real stack
    # the run ends (e2e/test_stream.py).
    assert any(runs["paused"].run_id in line and "did not cancel" in line for line in log.lines)
    assert instance.get_run_by_id(runs["silent"].run_id).status is dg.DagsterRunStatus.STARTED

    soon = datetime.now(UTC) + timedelta(seconds=10)
    tick = supervise(
        instance, repo, repo.list(), settings, now=soon, check_heartbeats=True, log=log
    )
    assert tick.failed == []  # 10 s of silence is within the timeout

    tick = supervise(
        instance, repo, repo.list(), settings, now=later, check_heartbeats=True, log=log
    )
    assert tick.failed == ["silent"]
    failed = instance.get_run_by_id(runs["silent"].run_id)
    assert failed is not None and failed.status is dg.DagsterRunStatus.FAILURE
    beating = instance.get_run_by_id(runs["beating"].run_id)
    assert beating is not None and beating.status is dg.DagsterRunStatus.STARTED
    assert any("sent no heartbeat" in line and "silent" in line for line in log.lines), log.lines


# -- failures: slot dropped underneath, canceled runs ---------------------------------------------


def test_slot_dropped_underneath_fails_clearly_from_op_and_sensor(
    instance, repo, defs, new_db
) -> None:
    src, _dst, _ = loaded(instance, repo, defs, new_db, "gone")
    [first] = sensor_tick(defs, instance, repo)
    assert launch(defs, instance, first).success
    loaded_cols = full_load_columns(repo, "gone")
    slot = spec("gone", src, src).slot_name
    sql(src, "SELECT pg_drop_replication_slot(%s)", (slot,))

    # An ACTIVE pipeline whose slot vanished gets one batch, which fails with the reason.
    [request] = sensor_tick(defs, instance, repo)
    result = launch(defs, instance, request)

    assert not result.success
    run_id = result.dagster_run.run_id
    row = repo.get("gone")
    assert (row.cdc_status, row.cdc_authority, row.last_run_id) == (
        CdcStatus.FAILED,
        Writer.OP,
        run_id,
    )
    assert row.last_error is not None
    assert slot in row.last_error and "is missing" in row.last_error
    assert "reset the pipeline and run a new full load" in row.last_error
    assert events(repo, "gone")[-1] == ("cdc", "ACTIVE", "FAILED", "op")

    # The failure sensor derives the same reason from the run record and takes authority.
    from_record = run_failure_message(instance, run_id)
    assert from_record is not None and slot in from_record and "reset the pipeline" in from_record
    run_status_sensor(
        defs, instance, repo, "pipeline_run_failure_sensor", run_id, "PIPELINE_FAILURE"
    )
    row = repo.get("gone")
    assert (row.cdc_status, row.cdc_authority) == (CdcStatus.FAILED, Writer.SENSOR)
    assert row.last_error is not None and slot in row.last_error
    assert [o for o in reconcile(instance, repo, ["gone"]) if o.changed] == []
    assert full_load_columns(repo, "gone")[:2] == loaded_cols[:2]

    # FAILED: the supervisor retries at its next tick after one failure ...
    [retry] = schedule_tick(defs, instance, repo)
    assert retry.tags["cdc/pipeline"] == "gone"
    assert not launch(defs, instance, retry).success
    # ... and backs off after the second: no retry within a minute of it, and the tick says why.
    tick = schedule_evaluation(defs, instance, repo)
    assert not tick.run_requests
    assert "backing off: gone (failed 2x, next try at" in (tick.skip_message or "")
    # A person can still retry at once (the CLI, or a UI launch).
    assert not execute_pipeline(instance, "gone", Phase.CDC, defs=defs).success
    assert repo.get("gone").cdc_status is CdcStatus.FAILED
    assert "failed 3x" in (schedule_evaluation(defs, instance, repo).skip_message or "")
    # Failures before the current full load (a reset and reload since) do not count.
    from dataclasses import replace

    from cdc_assets.defs.supervisor import retry_decision
    from cdc_assets.settings import Settings

    now = datetime.now(UTC)
    row = repo.get("gone")
    assert retry_decision(instance, row, Settings(), now).failures == 3
    reloaded = replace(row, full_load_run_created_at=now)
    assert retry_decision(instance, reloaded, Settings(), now).due


def test_failure_sensor_alone_writes_failed_for_a_cdc_run(instance, repo, defs, new_db) -> None:
    """A CDC run that failed at resource set-up: the op never ran, only the run record tells."""
    from cdc_assets.embedded import free_port

    dead = f"postgresql://postgres:hunter2@127.0.0.1:{free_port()}/nope"
    repo.add(spec("early", dead, new_db("dst"), mode=Mode.FULL_LOAD_AND_CDC))
    _states(repo, "early", full_load=FullLoadStatus.COMPLETED)
    loaded_cols = full_load_columns(repo, "early")
    result = execute_pipeline(instance, "early", Phase.CDC, defs=defs)
    assert not result.success
    run_id = result.dagster_run.run_id
    assert repo.get("early").cdc_status is CdcStatus.NOT_STARTED  # no op, no hook

    run_status_sensor(
        defs, instance, repo, "pipeline_run_failure_sensor", run_id, "PIPELINE_FAILURE"
    )

    row = repo.get("early")
    assert (row.cdc_status, row.cdc_authority, row.last_run_id) == (
        CdcStatus.FAILED,
        Writer.SENSOR,
        run_id,
    )
    assert row.last_error is not None and "cannot connect to source" in row.last_error
    assert "hunter2" not in row.last_error
    assert events(repo, "early")[-1] == ("cdc", "NOT_STARTED", "FAILED", "sensor")
    assert full_load_columns(repo, "early") == loaded_cols


def test_canceled_cdc_run_is_failed_canceled(instance, repo, defs, new_db) -> None:
    src, dst = new_db("src"), new_db("dst")
    repo.add(spec("stopme", src, dst, mode=Mode.FULL_LOAD_AND_CDC))
    _states(repo, "stopme", full_load=FullLoadStatus.COMPLETED, cdc=CdcStatus.ACTIVE)
    loaded_cols = full_load_columns(repo, "stopme")
    run = instance.create_run_for_job(
        defs.resolve_job_def("cdc_stream_job"),
        tags={"cdc/pipeline": "stopme", "cdc/phase": "cdc"},
        status=dg.DagsterRunStatus.STARTED,
    )
    instance.report_run_canceled(run)

    run_status_sensor(
        defs, instance, repo, "pipeline_run_canceled_sensor", run.run_id, "PIPELINE_CANCELED"
    )

    row = repo.get("stopme")
    assert (row.cdc_status, row.cdc_authority, row.last_run_id) == (
        CdcStatus.FAILED,
        Writer.SENSOR,
        run.run_id,
    )
    assert row.last_error is not None and row.last_error.startswith("canceled")
    assert events(repo, "stopme")[-1] == ("cdc", "ACTIVE", "FAILED", "sensor")
    assert full_load_columns(repo, "stopme") == loaded_cols
    assert [o for o in reconcile(instance, repo, ["stopme"]) if o.changed] == []


# -- lag: the op's evaluation and the declared check ----------------------------------------------


@contextmanager
def wal_traffic(url: str) -> Iterator[None]:
    """Commits on the source (outside the pipeline's tables) for as long as the block runs.

    A batch measures its lag after it advanced the slot; with writers running, WAL written after
    the batch's end point is certainly there, so the lag is certainly > 0.
    """
    stop = threading.Event()
    errors: list[BaseException] = []
    commits = [0]

    def write() -> None:
        try:
            # Synchronous commits: the test server commits asynchronously by default, and WAL
            # not yet written does not count in pg_current_wal_lsn().
            with psycopg.connect(url, autocommit=True, options="-c synchronous_commit=on") as conn:
                conn.execute("CREATE TABLE IF NOT EXISTS public.noise (x int)")
                while not stop.is_set():
                    conn.execute("INSERT INTO public.noise VALUES (1)")
                    commits[0] += 1
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    wait_until(lambda: commits[0] > 0 or errors, timeout=10, describe="the WAL writer to start")
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not errors, errors


def test_batch_reports_lag_against_thresholds(instance, repo, defs, new_db, monkeypatch) -> None:
    src, _dst, _ = loaded(instance, repo, defs, new_db, "laggy")
    monkeypatch.setenv("CDC_LAG_WARN_BYTES", "0")
    monkeypatch.setenv("CDC_LAG_FAIL_BYTES", str(10**12))
    with wal_traffic(src):
        assert execute_pipeline(instance, "laggy", Phase.CDC, defs=defs).success
    warn = lag_evaluation(instance, "laggy")
    lag = repo.get("laggy").cdc_lag_bytes
    assert lag is not None and lag > 0
    assert (warn.passed, warn.severity) == (False, dg.AssetCheckSeverity.WARN)
    assert warn.metadata["cdc/lag_bytes"].value == lag
    assert warn.metadata["cdc/pipeline"].value == "laggy"
    assert warn.asset_key == dg.AssetKey(["laggy", "orders"]) and "WARN above 0" in warn.description

    monkeypatch.setenv("CDC_LAG_FAIL_BYTES", "0")
    with wal_traffic(src):
        assert execute_pipeline(instance, "laggy", Phase.CDC, defs=defs).success
    error = lag_evaluation(instance, "laggy")
    assert (error.passed, error.severity) == (False, dg.AssetCheckSeverity.ERROR)
    # A lagging batch is still a successful batch: the check reports, the status stays ACTIVE.
    assert repo.get("laggy").cdc_status is CdcStatus.ACTIVE

    monkeypatch.setenv("CDC_LAG_WARN_BYTES", str(10**12))
    monkeypatch.setenv("CDC_LAG_FAIL_BYTES", str(10**12))
    assert execute_pipeline(instance, "laggy", Phase.CDC, defs=defs).success
    assert lag_evaluation(instance, "laggy").passed


def lag_by_pipeline(instance: dg.DagsterInstance, names: tuple[str, ...]) -> dict[str, Any]:
    """The latest stored ``cdc_lag`` evaluation of each pipeline's table."""
    latest: dict[str, Any] = {}
    for name in names:
        record = instance.get_latest_asset_check_evaluation_record(lag_key(name))
        if record is not None and record.event is not None:
            latest[name] = record.event.dagster_event.event_specific_data
    return latest


def big_wal(url: str, megabytes: int) -> None:
    """Write at least ``megabytes`` MiB of WAL on the source, outside any pipeline's tables."""
    with psycopg.connect(url, autocommit=True, options="-c synchronous_commit=on") as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS public.ballast (x text)")
        conn.execute(
            "INSERT INTO public.ballast SELECT repeat('x', 1000) FROM generate_series(1, %s)",
            (megabytes * 1100,),
        )


def test_cdc_lag_is_one_result_per_pipeline(instance, repo, defs, new_db, monkeypatch) -> None:
    src_a, _, _ = loaded(instance, repo, defs, new_db, "lag_a")
    loaded(instance, repo, defs, new_db, "lag_b")
    # Batches: lag_a's is judged with WARN at 0 while WAL is written, lag_b's afterwards with
    # thresholds nothing reaches. The last batch (lag_b) must not overwrite lag_a's result.
    monkeypatch.setenv("CDC_LAG_WARN_BYTES", "0")
    monkeypatch.setenv("CDC_LAG_FAIL_BYTES", str(10**12))
    with wal_traffic(src_a):
        assert execute_pipeline(instance, "lag_a", Phase.CDC, defs=defs).success
    monkeypatch.setenv("CDC_LAG_WARN_BYTES", str(10**12))
    assert execute_pipeline(instance, "lag_b", Phase.CDC, defs=defs).success
    results = lag_by_pipeline(instance, ("lag_a", "lag_b"))
    assert set(results) == {"lag_a", "lag_b"}
    a, b = results["lag_a"], results["lag_b"]
    assert (a.passed, a.severity, b.passed) == (False, dg.AssetCheckSeverity.WARN, True)
    assert a.metadata["cdc/lag_bytes"].value == repo.get("lag_a").cdc_lag_bytes > 0
    assert set(a.metadata) == {"cdc/pipeline", "cdc/lag_bytes"}  # no constant threshold series
    assert "WARN above 0" in a.description and "ERROR above" in a.description

    # Executed by hand (the UI's "Execute check" on a table): each pipeline measures its
    # own slot now. lag_a's slot stays behind 4 MiB of WAL; lag_b's batch confirms past it.
    big_wal(src_a, 4)
    assert execute_pipeline(instance, "lag_b", Phase.CDC, defs=defs).success
    monkeypatch.setenv("CDC_LAG_WARN_BYTES", str(1 << 20))
    monkeypatch.setenv("CDC_LAG_FAIL_BYTES", str(2 << 20))
    current = build_defs(Settings())  # as a reloaded code location: both pipelines' checks
    for name in ("lag_a", "lag_b"):
        job = current.resolve_implicit_global_asset_job_def().get_subset(
            asset_selection=set(), asset_check_selection={lag_key(name)}
        )
        [evaluation] = job.execute_in_process(instance=instance).get_asset_check_evaluations()
        assert evaluation.asset_key == lag_key(name).asset_key
        assert evaluation.metadata["cdc/pipeline"].value == name
    results = lag_by_pipeline(instance, ("lag_a", "lag_b"))
    a, b = results["lag_a"], results["lag_b"]
    assert (a.passed, a.severity) == (False, dg.AssetCheckSeverity.ERROR)
    assert a.metadata["cdc/lag_bytes"].value >= 4 << 20
    assert b.passed and b.metadata["cdc/lag_bytes"].value < 1 << 20


def test_cdc_lag_keeps_evaluating_disabled_and_stopped_pipelines(
    instance, repo, defs, new_db, monkeypatch
) -> None:
    src, _, _ = loaded(instance, repo, defs, new_db, "idle_off")
    assert execute_pipeline(instance, "idle_off", Phase.CDC, defs=defs).success
    loaded(instance, repo, defs, new_db, "idle_on")
    assert execute_pipeline(instance, "idle_on", Phase.CDC, defs=defs).success
    repo.set_enabled("idle_off", False)
    # No batch runs for a disabled pipeline, yet its slot keeps holding the WAL written since.
    big_wal(src, 2)
    monkeypatch.setenv("CDC_LAG_WARN_BYTES", str(1 << 20))
    monkeypatch.setenv("CDC_LAG_FAIL_BYTES", str(10**12))
    names = ("idle_off", "idle_on")
    before = lag_by_pipeline(instance, names)
    current = build_defs(Settings())  # as a reloaded code location: both pipelines' checks
    sensor = current.resolve_sensor_def("cdc_lag_idle_sensor")
    with dg.build_sensor_context(
        instance=instance, resources=resources(repo), definitions=current
    ) as ctx:
        [request] = sensor.evaluate_tick(ctx).run_requests or []
    assert request.asset_check_keys == [lag_key("idle_off")]
    assert "cdc/pipeline" not in request.tags and request.tags["cdc/check_of"] == "idle_off"
    # Run it as the daemon would: the hidden asset job, subset to the check.
    job = current.resolve_implicit_global_asset_job_def().get_subset(
        asset_selection=set(), asset_check_selection=set(request.asset_check_keys)
    )
    run = job.execute_in_process(instance=instance, tags=request.tags)
    assert run.success
    after = lag_by_pipeline(instance, names)
    off = after["idle_off"]
    assert off != before["idle_off"] and off.asset_key == lag_key("idle_off").asset_key
    assert (off.passed, off.severity) == (False, dg.AssetCheckSeverity.WARN)
    assert off.metadata["cdc/lag_bytes"].value >= 2 << 20
    # The enabled pipeline is left to its batches: the sensor did not evaluate it.
    assert after["idle_on"] == before["idle_on"]
    # A check-only run is no pipeline run: the reconciler does not take it for a full load.
    reconcile(instance, repo, ["idle_off"])
    row = repo.get("idle_off")
    assert row.full_load_run_id != run.dagster_run.run_id
    assert row.full_load_status is FullLoadStatus.COMPLETED


def test_reconciler_repairs_a_first_batch_older_than_the_rows_last_change(
    instance, repo, defs, new_db
) -> None:
    """The first batch is launched right after the op wrote COMPLETED; the full load's success
    sensor takes authority a moment later, after that batch was created. If the batch then
    fails with no op write (resource set-up) and its failure event is missed (daemon down),
    the reconciler must still bring ``cdc_status`` to FAILED."""
    src, dst = new_db("src"), new_db("dst")
    repo.add(spec("race", src, dst, mode=Mode.FULL_LOAD_AND_CDC))
    loaded_at = datetime.now(UTC)
    assert repo.transition_full_load(
        "race", FullLoadStatus.COMPLETED, run_id="load", run_created_at=loaded_at, writer=Writer.OP
    )
    run = instance.create_run_for_job(
        defs.resolve_job_def("cdc_stream_job"),
        tags={"cdc/pipeline": "race", "cdc/phase": "cdc"},
        status=dg.DagsterRunStatus.STARTED,
    )
    instance.report_run_failed(run, "resource set-up failed")
    created = instance.get_run_record_by_id(run.run_id).create_timestamp
    # The full load's success sensor confirms its row after the batch was created.
    repo.transition_full_load(
        "race",
        FullLoadStatus.COMPLETED,
        run_id="load",
        run_created_at=loaded_at,
        writer=Writer.SENSOR,
    )
    assert repo.get("race").updated_at > created.replace(tzinfo=UTC)

    reconcile(instance, repo, ["race"])

    row = repo.get("race")
    assert (row.cdc_status, row.cdc_run_id) == (CdcStatus.FAILED, run.run_id)
    assert row.full_load_status is FullLoadStatus.COMPLETED


def test_cdc_run_for_a_full_load_pipeline_says_so(instance, repo, defs, new_db) -> None:
    src, dst = new_db("src"), new_db("dst")
    repo.add(spec("copy_only", src, dst))
    _states(repo, "copy_only", full_load=FullLoadStatus.COMPLETED)

    result = execute_pipeline(instance, "copy_only", Phase.CDC, defs=defs)

    assert not result.success
    row = repo.get("copy_only")
    assert row.cdc_status is CdcStatus.FAILED and row.last_error is not None
    assert "mode is full_load" in row.last_error and "full_load_and_cdc" in row.last_error
    assert row.full_load_status is FullLoadStatus.COMPLETED


def test_a_column_filled_per_row_is_a_run_warning(instance, repo, defs, new_db) -> None:
    """The engine's warning reaches the operator: a WARNING in the run's log and metadata."""
    import logging

    src, dst, _ = loaded(instance, repo, defs, new_db, "volatile")
    sql(src, "ALTER TABLE public.orders ADD COLUMN token uuid DEFAULT gen_random_uuid()")
    sql(src, "UPDATE public.orders SET note = 'changed' WHERE id = 1")

    result = execute_pipeline(instance, "volatile", Phase.CDC, defs=defs)

    assert result.success
    assert repo.get("volatile").cdc_status is CdcStatus.ACTIVE  # a warning, not a failure
    run_id = result.dagster_run.run_id
    warnings = [
        e.user_message
        for e in instance.all_logs(run_id)
        if e.level == logging.WARNING and "'token'" in e.user_message
    ]
    assert len(warnings) == 1 and "reset the pipeline" in warnings[0]
    observed = batch_metadata(instance, run_id)
    assert any("'token'" in str(m["cdc/warnings"].value) for m in observed if "cdc/warnings" in m)
    assert count(dst) == count(src)


def test_enum_labels_added_on_the_target_are_in_the_metadata(instance, repo, defs, new_db) -> None:
    """A label the source gained is added on the target before its rows, and the run says so."""
    src, dst = new_db("src"), new_db("dst")
    sql(src, "CREATE TYPE public.mood AS ENUM ('sad', 'happy')")
    sql(src, "CREATE TABLE public.orders (id bigint PRIMARY KEY, note text, m public.mood)")
    sql(src, "INSERT INTO public.orders VALUES (1, 'a', 'sad')")
    repo.add(spec("labels", src, dst, mode=Mode.FULL_LOAD_AND_CDC))
    assert execute_pipeline(instance, "labels", Phase.FULL_LOAD, defs=defs).success
    sql(src, "ALTER TYPE public.mood ADD VALUE 'ok' AFTER 'sad'")
    sql(src, "INSERT INTO public.orders VALUES (2, 'b', 'ok')")

    result = execute_pipeline(instance, "labels", Phase.CDC, defs=defs)

    assert result.success
    assert repo.get("labels").cdc_status is CdcStatus.ACTIVE
    observed = batch_metadata(instance, result.dagster_run.run_id)
    added = [m["cdc/enum_labels_added"].value for m in observed if "cdc/enum_labels_added" in m]
    assert added == ["public.mood: 'ok' BEFORE 'happy'"]
    assert count(dst) == count(src)


def test_partition_truncate_fails_the_run_and_a_reset_recovers(
    instance, repo, defs, new_db
) -> None:
    """What an operator sees for a TRUNCATE of one partition (which PostgreSQL does not send):
    the CDC run fails and ``last_error`` names the partition and the fix; the fix recovers."""
    src, dst = new_db("src"), new_db("dst")
    sql(
        src,
        "CREATE TABLE public.orders (id bigint, day date, note text, PRIMARY KEY (id, day))"
        " PARTITION BY LIST (day)",
    )
    sql(src, "CREATE TABLE public.orders_a PARTITION OF public.orders FOR VALUES IN ('2024-01-01')")
    sql(src, "CREATE TABLE public.orders_b PARTITION OF public.orders DEFAULT")
    sql(
        src,
        "INSERT INTO public.orders SELECT g, DATE '2024-01-01' + g % 3, 'n' "
        "FROM generate_series(1, 30) g",
    )
    repo.add(spec("leaf", src, dst, mode=Mode.FULL_LOAD_AND_CDC))
    assert execute_pipeline(instance, "leaf", Phase.FULL_LOAD, defs=defs).success
    assert execute_pipeline(instance, "leaf", Phase.CDC, defs=defs).success
    sql(src, "TRUNCATE public.orders_a")
    sql(src, "INSERT INTO public.orders VALUES (100, '2024-01-02', 'later')")

    assert not execute_pipeline(instance, "leaf", Phase.CDC, defs=defs).success
    row = repo.get("leaf")
    assert row.cdc_status is CdcStatus.FAILED and row.last_error is not None
    assert "partition public.orders_a of public.orders (FOR VALUES IN ('2024-01-01'))" in (
        row.last_error
    )
    assert "(fix: reset the pipeline for a new full load" in row.last_error

    repo.reset("leaf")
    assert execute_pipeline(instance, "leaf", Phase.FULL_LOAD, defs=defs).success
    sql(src, "INSERT INTO public.orders VALUES (101, '2024-01-01', 'after reset')")
    assert execute_pipeline(instance, "leaf", Phase.CDC, defs=defs).success
    assert repo.get("leaf").cdc_status is CdcStatus.ACTIVE
    assert count(dst) == count(src) == 22


# -- issue 11: events are status changes only ---------------------------------------------------


def test_batches_of_an_active_pipeline_write_one_status_event(instance, repo, defs, new_db) -> None:
    """Three good batches: one NOT_STARTED -> ACTIVE event; progress moves the row only."""
    src, dst, _ = loaded(instance, repo, defs, new_db, "steady")
    before = repo.get("steady")
    for i in range(3):
        sql(src, "INSERT INTO public.orders VALUES (%s, 'batch')", (3000 + i,))
        result = execute_pipeline(instance, "steady", Phase.CDC, defs=defs)
        assert result.success
        run_id = result.dagster_run.run_id
        row = repo.get("steady")
        assert (row.cdc_status, row.cdc_run_id, row.last_run_id) == (
            CdcStatus.ACTIVE,
            run_id,
            run_id,
        )
        assert row.cdc_lsn == target_watermark(dst, "steady") == slot_confirmed(src, "steady")
        assert row.updated_at > before.updated_at
        before = row
    assert count(dst) == 23
    cdc_events = [e for e in events(repo, "steady") if e[0] == "cdc"]
    assert cdc_events == [("cdc", "NOT_STARTED", "ACTIVE", "op")]
    # Confirming the last run from its record adds no event either.
    reconcile(instance, repo, ["steady"])
    assert [e for e in events(repo, "steady") if e[0] == "cdc"] == cdc_events
    assert repo.get("steady").cdc_authority is Writer.RECONCILER


# -- issue 11: tables edited by SQL after the full load -------------------------------------------

ITEMS = '"Sales"."Order Items"'


@pytest.mark.parametrize("edit", ["added", "removed"])
def test_tables_edited_after_the_load_fail_the_batch(
    instance, repo, defs, new_db, control_url, edit
) -> None:
    """A table added to (or removed from) ``tables`` by SQL: the batch FAILS naming it and the fix.

    The pipeline also holds a partitioned table (published via its root) and a quoted
    identifier, which must not count as a difference before the edit.
    """
    src, dst = new_db("src"), new_db("dst")
    make_source(src, rows=5)
    sql(src, 'CREATE SCHEMA "Sales"')
    sql(src, 'CREATE TABLE "Sales"."Order Items" (id bigint PRIMARY KEY, qty int NOT NULL)')
    sql(
        src,
        "CREATE TABLE public.readings (id bigint, at date, PRIMARY KEY (id, at))"
        " PARTITION BY RANGE (at)",
    )
    sql(
        src,
        "CREATE TABLE public.readings_2025 PARTITION OF public.readings"
        " FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')",
    )
    sql(src, "INSERT INTO public.readings VALUES (1, '2025-03-01')")
    tables = ("public.orders", "public.readings") + ((ITEMS,) if edit == "removed" else ())
    repo.add(spec("edited", src, dst, tables=tables, mode=Mode.FULL_LOAD_AND_CDC))
    assert execute_pipeline(instance, "edited", Phase.FULL_LOAD, defs=defs).success
    sql(src, "INSERT INTO public.readings VALUES (2, '2025-04-01')")
    [first] = sensor_tick(defs, instance, repo)
    assert launch(defs, instance, first).success
    assert repo.get("edited").cdc_status is CdcStatus.ACTIVE
    assert count(dst, "public.readings") == 2

    control = control_url.replace("postgresql+psycopg://", "postgresql://", 1)
    if edit == "added":
        edit_sql = "UPDATE public.pipelines SET tables = tables || %s::text WHERE name = 'edited'"
    else:
        edit_sql = (
            "UPDATE public.pipelines SET tables = array_remove(tables, %s) WHERE name = 'edited'"
        )
    sql(control, edit_sql, (ITEMS,))
    sql(src, 'INSERT INTO "Sales"."Order Items" VALUES (1, 2)')
    sql(src, "INSERT INTO public.orders VALUES (1000, 'after the edit')")

    # The sensor does not wait for a change it cannot see: it launches the batch that says why.
    [request] = sensor_tick(defs, instance, repo)
    result = launch(defs, instance, request)

    assert not result.success
    row = repo.get("edited")
    assert (row.cdc_status, row.last_run_id) == (CdcStatus.FAILED, result.dagster_run.run_id)
    error = row.last_error or ""
    assert ITEMS in error and "cdc-assets pipeline reset edited" in error, error
    assert ("not captured" if edit == "added" else "no longer in the row") in error, error
    assert "public.orders" not in error and "public.readings" not in error, error
    assert events(repo, "edited")[-1] == ("cdc", "ACTIVE", "FAILED", "op")
    assert count(dst) == 5  # nothing of the failed batch was applied
    # FAILED once: the supervisor retries at its next tick (then backs off; it fails the same).
    assert [r.tags["cdc/pipeline"] for r in sensor_tick(defs, instance, repo)] == ["edited"]


# -- issue 11: disable stops CDC (STOPPED, slot kept), enable resumes -----------------------------


def cli(control_url: str, *argv: str) -> int:
    from cdc_assets.cli import main

    return main(["--control-db-url", control_url, *argv])


def lock_waiters(url: str) -> int:
    """Sessions of other backends on ``url``'s database waiting for a lock (the held batch)."""
    row = sql(
        url,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()",
    )
    return int(row[0])


def test_disable_stops_cdc_and_enable_resumes_where_it_stopped(
    instance, repo, defs, new_db, control_url
) -> None:
    src, dst, _ = loaded(instance, repo, defs, new_db, "pause")
    [first] = sensor_tick(defs, instance, repo)
    assert launch(defs, instance, first).success
    assert repo.get("pause").cdc_status is CdcStatus.ACTIVE

    # A batch is running (held on a target lock) when the pipeline is disabled.
    sql(src, "INSERT INTO public.orders VALUES (4000, 'during the disable')")
    outcome: list[dg.ExecuteInProcessResult] = []
    with psycopg.connect(dst) as holder:
        holder.execute("LOCK TABLE public.orders IN ACCESS EXCLUSIVE MODE")
        batch = threading.Thread(
            target=lambda: outcome.append(execute_pipeline(instance, "pause", Phase.CDC, defs=defs))
        )
        batch.start()
        wait_until(lambda: lock_waiters(dst) > 0, timeout=60, describe="the batch to wait")
        assert cli(control_url, "pipeline", "disable", "pause") == 0
        row = repo.get("pause")
        assert (row.enabled, row.cdc_status, row.cdc_authority) == (
            False,
            CdcStatus.STOPPED,
            Writer.CLI,
        )
        holder.rollback()
    batch.join(timeout=120)
    [late] = outcome
    assert late.success  # the batch was applied ...
    late_run = late.dagster_run.run_id
    assert count(dst) == 21
    # ... but ended after the disable: neither its op, its run-status sensor nor the reconciler
    # flips the row back to ACTIVE. Its progress is recorded.
    run_status_sensor(
        defs, instance, repo, "pipeline_run_success_sensor", late_run, "PIPELINE_SUCCESS"
    )
    assert [o for o in reconcile(instance, repo, ["pause"]) if o.changed] == []
    row = repo.get("pause")
    assert row.cdc_status is CdcStatus.STOPPED
    assert row.cdc_lsn == target_watermark(dst, "pause")
    assert [e for e in events(repo, "pause") if e[0] == "cdc"] == [
        ("cdc", "NOT_STARTED", "ACTIVE", "op"),
        ("cdc", "ACTIVE", "STOPPED", "cli"),
    ]
    assert repo.events("pause", limit=1)[0].message == "disabled"
    assert slot_confirmed(src, "pause") is not None  # the slot is kept

    # Disabled: changes wait in the slot; neither the sensor nor the schedule runs a batch.
    sql(src, "INSERT INTO public.orders VALUES (4001, 'while disabled')")
    assert sensor_tick(defs, instance, repo) == []
    assert schedule_tick(defs, instance, repo) == []
    assert count(dst) == 21

    # Enabled: the sensor resumes at once (one run key per stop) from the watermark.
    assert cli(control_url, "pipeline", "enable", "pause") == 0
    assert repo.get("pause").cdc_status is CdcStatus.STOPPED
    [resume] = sensor_tick(defs, instance, repo)
    assert resume.tags["cdc/pipeline"] == "pause" and resume.tags["cdc/stream"] == "true"
    assert [r.tags["cdc/pipeline"] for r in sensor_tick(defs, instance, repo)] == ["pause"]
    result = launch(defs, instance, resume)
    assert result.success
    assert count(dst) == 22
    assert sql(dst, "SELECT note FROM public.orders WHERE id = 4001") == ("while disabled",)
    row = repo.get("pause")
    assert (row.cdc_status, row.cdc_run_id) == (CdcStatus.ACTIVE, result.dagster_run.run_id)
    assert row.cdc_lsn == target_watermark(dst, "pause") == slot_confirmed(src, "pause")
    assert events(repo, "pause")[-1] == ("cdc", "STOPPED", "ACTIVE", "op")


def test_disabled_by_sql_is_stopped_by_the_sensor_once_idle(
    instance, repo, defs, new_db, control_url
) -> None:
    """``UPDATE pipelines SET enabled = false`` has no CLI: the CDC sensor writes STOPPED."""
    src, dst, _ = loaded(instance, repo, defs, new_db, "sqloff")
    [first] = sensor_tick(defs, instance, repo)
    assert launch(defs, instance, first).success
    control = control_url.replace("postgresql+psycopg://", "postgresql://", 1)
    sql(control, "UPDATE public.pipelines SET enabled = false WHERE name = 'sqloff'")
    sql(src, "INSERT INTO public.orders VALUES (5000, 'while disabled')")

    # Not while a run of the pipeline is going: that run ends first.
    busy = instance.create_run_for_job(
        defs.resolve_job_def("cdc_stream_job"),
        tags={"cdc/pipeline": "sqloff"},
        status=dg.DagsterRunStatus.STARTED,
    )
    assert sensor_tick(defs, instance, repo) == []
    assert repo.get("sqloff").cdc_status is CdcStatus.ACTIVE
    instance.delete_run(busy.run_id)

    assert sensor_tick(defs, instance, repo) == []
    row = repo.get("sqloff")
    assert (row.cdc_status, row.cdc_authority) == (CdcStatus.STOPPED, Writer.SENSOR)
    assert events(repo, "sqloff")[-1] == ("cdc", "ACTIVE", "STOPPED", "sensor")
    assert [o for o in reconcile(instance, repo, ["sqloff"]) if o.changed] == []
    assert sensor_tick(defs, instance, repo) == [] and len(events(repo, "sqloff")) == 4

    sql(control, "UPDATE public.pipelines SET enabled = true WHERE name = 'sqloff'")
    [resume] = sensor_tick(defs, instance, repo)
    assert launch(defs, instance, resume).success
    assert repo.get("sqloff").cdc_status is CdcStatus.ACTIVE
    assert sql(dst, "SELECT note FROM public.orders WHERE id = 5000") == ("while disabled",)

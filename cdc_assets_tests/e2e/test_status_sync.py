"""Status truth end to end: runs launched through the webserver's GraphQL API (as the UI does),
executed by the daemon, and ``public.pipelines`` compared with Dagster's run records.

Each scenario asserts the final row equals the mapping of the run's status, written within 10 s of
the run's end, and that ``pipeline_events`` tells the story. Measured lags are appended to
``$DAGSTER_HOME/results.jsonl`` (and printed) for docs/orchestration.md.
"""

import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import psutil
import psycopg
import pytest
from dagster_graphql import DagsterGraphQLClient

from cdc_assets.control.repository import PipelineRepository
from cdc_assets.defs.tags import (
    ASSET_JOB_NAME,
    CDC_JOB_NAME,
    FULL_LOAD_JOB_NAME,
    TAG_PIPELINE,
    TAG_STREAM,
)
from cdc_assets.domain import FullLoadStatus, Mode, Phase, Writer
from cdc_assets_tests.e2e.harness import LOCATION, TERMINAL, DagsterStack
from cdc_assets_tests.e2e.pipelines import (
    count,
    events,
    make_source,
    spec,
    target_keys,
    wait_assets,
)
from cdc_assets_tests.support import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SYNC_DEADLINE_S = 10.0
FULL_LOAD_EXPECTED = {
    "SUCCESS": FullLoadStatus.COMPLETED,
    "FAILURE": FullLoadStatus.FAILED,
    "CANCELED": FullLoadStatus.FAILED,
}


@pytest.fixture(scope="module")
def client(stack: DagsterStack) -> DagsterGraphQLClient:
    return DagsterGraphQLClient("127.0.0.1", port_number=stack.port, timeout=60)


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def add_pipeline(
    stack: DagsterStack,
    repo: PipelineRepository,
    prefix: str,
    source: str,
    target: str,
    *,
    tables: tuple[str, ...] = ("public.orders",),
    **kw: Any,
) -> str:
    """A disabled pipeline (no sensor launch) whose table assets the UI shows, ready to launch."""
    name = unique(prefix)
    repo.add(spec(name, source, target, enabled=False, tables=tables, **kw))
    wait_assets(stack, name, tables)
    return name


def launch(
    client: DagsterGraphQLClient,
    name: str,
    *,
    tables: tuple[str, ...] = ("public.orders",),
    asset: bool = False,
) -> str:
    """Launch as the UI does: the asset's Materialize, or the job's launchpad.

    Materialize runs the implicit ``__ASSET_JOB`` with only the pipeline's table assets selected
    (no tags: the run-start sensor adds ``cdc/pipeline``); the launchpad runs ``full_load_job``
    with the same selection and the ``cdc/pipeline`` tag.
    """
    keys = target_keys(name, tables)
    if asset:
        return client.submit_job_execution(
            ASSET_JOB_NAME,
            repository_location_name=LOCATION,
            repository_name="__repository__",
            asset_selection=keys,
        )
    return client.submit_job_execution(
        FULL_LOAD_JOB_NAME,
        repository_location_name=LOCATION,
        repository_name="__repository__",
        tags={TAG_PIPELINE: name},
        asset_selection=keys,
    )


def run_status(instance: dg.DagsterInstance, run_id: str) -> str:
    run = instance.get_run_by_id(run_id)
    assert run is not None, f"run {run_id} not found"
    return run.status.value


def wait_run(
    instance: dg.DagsterInstance, run_id: str, statuses: set[str], timeout: float = 90
) -> str:
    return wait_until(
        lambda: (s := run_status(instance, run_id)) in statuses and s,
        timeout=timeout,
        describe=f"run {run_id} to reach {sorted(statuses)}",
        interval=0.3,
    )


def run_story(instance: dg.DagsterInstance, run_id: str, stack: DagsterStack | None = None) -> str:
    """Why a run ended as it did: its failure and engine events, plus the stack's log tails.

    Put in assertion messages, so a run that fails in CI explains itself in the CI output.
    """
    kinds = {"RUN_FAILURE", "STEP_FAILURE", "ENGINE_EVENT", "RUN_CANCELED", "PIPELINE_FAILURE"}
    lines = [
        f"{e.dagster_event.event_type_value}: {e.message or e.user_message}"
        for e in instance.all_logs(run_id)
        if e.dagster_event is not None and e.dagster_event.event_type_value in kinds
    ]
    text = "\n".join(lines[-20:])
    return f"run {run_id}:\n{text}\n{stack.logs() if stack is not None else ''}"


def record(stack: DagsterStack, scenario: str, **values: Any) -> None:
    line = json.dumps({"scenario": scenario, **values}, default=str)
    print(line)
    with (stack.home / "results.jsonl").open("a") as f:
        f.write(line + "\n")


def assert_synced(
    stack: DagsterStack,
    instance: dg.DagsterInstance,
    repo: PipelineRepository,
    name: str,
    run_id: str,
    scenario: str,
    *,
    before: datetime,
) -> dict[str, Any]:
    """The row mirrors the finished run, was written within 10 s of its end, and moved."""
    record_ = instance.get_run_record_by_id(run_id)
    assert record_ is not None and record_.end_time is not None
    status = record_.dagster_run.status.value
    expected = FULL_LOAD_EXPECTED[status]
    row = wait_until(
        lambda: (
            (r := repo.get(name)).full_load_status is expected
            and r.full_load_run_id == run_id
            and r
        ),
        timeout=SYNC_DEADLINE_S + 5,
        describe=f"{name} to be {expected} for run {run_id}",
    )
    assert row.last_run_id == run_id
    assert row.updated_at > before
    if expected is FullLoadStatus.COMPLETED:
        assert row.last_error is None
    else:
        assert row.last_error
    final = [
        e
        for e in repo.events(name, limit=100)
        if e.run_id == run_id and e.new_status == expected.value
    ]
    assert final, f"no event for {expected} of run {run_id}: {events(repo, name)}"
    written = min(e.created_at for e in final)
    lag = written.timestamp() - record_.end_time
    # The authoritative writers confirm the row for this run (sensor tick or reconciler).
    authority = wait_until(
        lambda: (
            (a := repo.get(name).full_load_authority) in (Writer.SENSOR, Writer.RECONCILER) and a
        ),
        timeout=SYNC_DEADLINE_S + 30,
        describe=f"{name}: a run-record writer to confirm {expected}",
    )
    confirmed = time.time() - record_.end_time
    writers = sorted({e.writer.value for e in final})
    record(
        stack,
        scenario,
        status=status,
        row=expected.value,
        lag_s=round(lag, 2),
        first_writer=writers,
        confirmed_by=authority.value,
        confirmed_within_s=round(confirmed, 1),
    )
    assert lag <= SYNC_DEADLINE_S, f"row written {lag:.1f}s after the run ended"
    return {"row": row, "lag": lag}


@contextmanager
def blocked_source(url: str, table: str = "orders") -> Iterator[None]:
    """Hold an ACCESS EXCLUSIVE lock on the source table: the load waits inside the engine."""
    with psycopg.connect(url) as conn:
        conn.execute(
            psycopg.sql.SQL("LOCK TABLE public.{} IN ACCESS EXCLUSIVE MODE").format(
                psycopg.sql.Identifier(table)
            )
        )
        yield
        conn.rollback()


def source_waiting(url: str) -> bool:
    """True once some session of the load waits for our lock (the load is mid-flight)."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND application_name LIKE 'cdc_assets:%'"
        ).fetchone()
        return bool(row and row[0] > 0)


def now() -> datetime:
    return datetime.now(UTC)


# -- 1. UI launches ----------------------------------------------------------------------------


@pytest.mark.parametrize("asset", [False, True], ids=["job_launchpad", "asset_materialize"])
def test_ui_launch_success(stack, dagster_instance, control, client, new_db, asset) -> None:
    src, dst = new_db("src"), new_db("dst")
    make_source(src, rows=200)
    name = add_pipeline(stack, control, "ui", src, dst)
    before = now()

    run_id = launch(client, name, asset=asset)
    assert wait_run(dagster_instance, run_id, TERMINAL) == "SUCCESS"

    assert_synced(
        stack,
        dagster_instance,
        control,
        name,
        run_id,
        "1 ui " + ("asset" if asset else "job"),
        before=before,
    )
    assert count(dst) == 200
    story = [(old, new) for phase, old, new, _ in events(control, name) if phase == "full_load"]
    assert story == [("NOT_STARTED", "IN_PROGRESS"), ("IN_PROGRESS", "COMPLETED")]
    tags = dagster_instance.get_run_by_id(run_id).tags
    assert tags["cdc/pipeline"] == name and "dagster/max_runtime_seconds" in tags
    hook_events = [
        e.dagster_event.event_type_value
        for e in dagster_instance.all_logs(run_id)
        if e.dagster_event and e.dagster_event.event_type_value.startswith("HOOK_")
    ]
    assert "HOOK_COMPLETED" in hook_events  # the asset's own hooks ride on __ASSET_JOB too
    # The run materialized the pipeline's table asset with the rows it copied.
    (key,) = target_keys(name)
    mat = dagster_instance.get_latest_materialization_event(dg.AssetKey(key))
    assert mat is not None and mat.run_id == run_id
    assert mat.asset_materialization.metadata["dagster/row_count"].value == 200


# -- 2. sensor launch from a plain SQL insert ---------------------------------------------------


def test_sensor_launch_from_plain_insert(stack, dagster_instance, control, new_db) -> None:
    src, dst = new_db("src"), new_db("dst")
    make_source(src, rows=50)
    name = unique("ins")
    before = now()
    with psycopg.connect(stack.control_url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(
            "INSERT INTO public.pipelines (name, source_url, target_url, tables, mode) "
            "VALUES (%s, %s, %s, ARRAY['public.orders'], 'full_load')",
            (name, src, dst),
        )

    def launched() -> str | None:
        records = dagster_instance.get_run_records(dg.RunsFilter(tags={"cdc/pipeline": name}))
        return records[0].dagster_run.run_id if records else None

    # The daemon's code location must load the new row's assets first: with the python_module
    # workspace it re-imports about every 60 s (sooner once the definitions sync sensor runs).
    run_id = wait_until(launched, timeout=150, describe=f"a sensor-launched run for {name}")
    assert wait_run(dagster_instance, run_id, TERMINAL) == "SUCCESS"
    assert_synced(stack, dagster_instance, control, name, run_id, "2 sensor launch", before=before)
    assert count(dst) == 50
    tags = dagster_instance.get_run_by_id(run_id).tags
    assert tags["dagster/sensor_name"] == "launch_full_loads_sensor"


# -- 3. op failure ----------------------------------------------------------------------------


def test_op_failure_names_the_table(stack, dagster_instance, control, client, new_db) -> None:
    src, dst = new_db("src"), new_db("dst")
    make_source(src, rows=5)
    name = add_pipeline(
        stack,
        control,
        "opfail",
        src,
        dst,
        tables=("public.orders", "public.no_such_table"),
    )
    before = now()
    run_id = launch(client, name, tables=("public.orders", "public.no_such_table"))
    assert wait_run(dagster_instance, run_id, TERMINAL) == "FAILURE"
    out = assert_synced(
        stack, dagster_instance, control, name, run_id, "3 op failure", before=before
    )
    assert "no_such_table" in out["row"].last_error
    assert [new for _, _, new, _ in events(control, name)] == ["IN_PROGRESS", "FAILED"]


# -- 4. resource failure before the op ---------------------------------------------------------


def test_resource_failure_before_the_op(stack, dagster_instance, control, client, new_db) -> None:
    from cdc_assets.embedded import free_port

    dst = new_db("dst")
    dead = f"postgresql://postgres:secret_pw@127.0.0.1:{free_port()}/nowhere"
    name = add_pipeline(stack, control, "resfail", dead, dst)
    before = now()
    run_id = launch(client, name)
    assert wait_run(dagster_instance, run_id, TERMINAL) == "FAILURE"
    out = assert_synced(
        stack, dagster_instance, control, name, run_id, "4 resource failure", before=before
    )
    assert "cannot connect to source" in out["row"].last_error
    assert "secret_pw" not in out["row"].last_error
    writers = {w for _, _, _, w in events(control, name)}
    assert writers <= {"sensor", "reconciler"}  # nothing inside the run could write


# -- 5. cancel during the load ----------------------------------------------------------------


def test_cancel_during_load(stack, dagster_instance, control, client, new_db) -> None:
    src, dst = new_db("src"), new_db("dst")
    make_source(src, rows=20)
    name = add_pipeline(stack, control, "cancel", src, dst)
    before = now()
    with blocked_source(src):
        run_id = launch(client, name)
        wait_until(
            lambda: source_waiting(src), timeout=60, describe="the load to block on the source"
        )
        assert repo_status(control, name) is FullLoadStatus.IN_PROGRESS
        client.terminate_run(run_id)
        assert wait_run(dagster_instance, run_id, TERMINAL) == "CANCELED"
    out = assert_synced(stack, dagster_instance, control, name, run_id, "5 cancel", before=before)
    assert "canceled" in out["row"].last_error
    assert count(dst) is None  # target unchanged: the swap never happened


def repo_status(repo: PipelineRepository, name: str) -> FullLoadStatus:
    return repo.get(name).full_load_status


# -- 6. kill -9 of the run worker --------------------------------------------------------------


def run_worker(instance: dg.DagsterInstance, run_id: str) -> psutil.Process | None:
    """The run worker's process, from the in-process executor's "(pid: N)" engine event."""
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        match = re.search(r"Executing steps in process \(pid: (\d+)\)", entry.message or "")
        if match:
            return psutil.Process(int(match.group(1)))
    return None


def test_kill_run_worker(stack, dagster_instance, control, client, new_db) -> None:
    src, dst = new_db("src"), new_db("dst")
    make_source(src, rows=20)
    name = add_pipeline(stack, control, "kill", src, dst)
    before = now()
    with blocked_source(src):
        run_id = launch(client, name)
        wait_until(
            lambda: source_waiting(src), timeout=60, describe="the load to block on the source"
        )
        worker = wait_until(
            lambda: run_worker(dagster_instance, run_id), timeout=10, describe="the run worker"
        )
        worker.kill()
        assert wait_run(dagster_instance, run_id, TERMINAL, timeout=60) == "FAILURE"
    out = assert_synced(stack, dagster_instance, control, name, run_id, "6 kill -9", before=before)
    row = out["row"]
    # A late success hook from an orphaned process cannot turn it back.
    changed = control.transition_full_load(
        name,
        FullLoadStatus.COMPLETED,
        run_id=run_id,
        run_created_at=row.full_load_run_created_at,
        writer=Writer.HOOK,
        rows=20,
    )
    assert changed is False
    assert repo_status(control, name) is FullLoadStatus.FAILED
    assert count(dst) is None


# -- 7. daemon down while the run finishes -----------------------------------------------------


def test_daemon_down_then_catches_up(stack, dagster_instance, control, client, new_db) -> None:
    src, dst = new_db("src"), new_db("dst")
    make_source(src, rows=20)
    name = add_pipeline(stack, control, "daemon", src, dst)
    before = now()
    try:
        with blocked_source(src):
            run_id = launch(client, name)
            wait_until(lambda: source_waiting(src), timeout=60, describe="the load to block")
            stack.stop_daemon_only()
        status = wait_run(dagster_instance, run_id, TERMINAL)
        assert status == "SUCCESS", run_story(dagster_instance, run_id, stack)
        ended = time.time()
        row = control.get(name)
        assert row.full_load_authority in (Writer.OP, Writer.HOOK)  # no sensor ran meanwhile
    finally:
        stack.start_daemon()
    wait_until(
        lambda: control.get(name).full_load_authority in (Writer.SENSOR, Writer.RECONCILER),
        timeout=90,
        describe="the restarted daemon's sensors to confirm the row",
    )
    record(stack, "7 daemon restart", caught_up_s=round(time.time() - ended, 1))
    assert_synced(stack, dagster_instance, control, name, run_id, "7 daemon restart", before=before)


# -- 8. two launches of one pipeline at once --------------------------------------------------


def test_two_launches_at_once(stack, dagster_instance, control, client, new_db) -> None:
    from cdc_assets.ops_cli import execute_pipeline

    src, dst = new_db("src"), new_db("dst")
    make_source(src, rows=30)
    name = add_pipeline(stack, control, "twice", src, dst)
    before = now()
    with blocked_source(src):
        first = launch(client, name)
        second = launch(client, name)
        wait_until(lambda: source_waiting(src), timeout=60, describe="the first load to block")
        # The coordinator's per-pipeline limit keeps the second queued ...
        assert run_status(dagster_instance, second) == "QUEUED"
        # ... and a run that bypasses the coordinator loses the database lock untouched.
        result: dict[str, Any] = {}
        t = threading.Thread(
            target=lambda: result.update(
                r=execute_pipeline(dagster_instance, name, Phase.FULL_LOAD)
            )
        )
        t.start()
        t.join(timeout=60)
        assert not result["r"].success
        loser = result["r"].dagster_run.run_id
        assert dagster_instance.get_run_by_id(loser).tags["cdc/lock_conflict"] == "true"
        row = control.get(name)
        assert (row.full_load_status, row.full_load_run_id) == (FullLoadStatus.IN_PROGRESS, first)
    assert wait_run(dagster_instance, first, TERMINAL) == "SUCCESS"
    assert wait_run(dagster_instance, second, TERMINAL, timeout=120) == "SUCCESS"
    assert_synced(stack, dagster_instance, control, name, second, "8 two launches", before=before)
    assert loser not in {e.run_id for e in control.events(name, limit=100)}
    assert count(dst) == 30


# -- 9. a late event of an older run ------------------------------------------------------------


def test_late_event_of_older_run_changes_nothing(
    stack, dagster_instance, control, client, new_db
) -> None:
    from cdc_assets.definitions import build_defs
    from cdc_assets.defs.resources import ControlDb
    from cdc_assets.settings import Settings

    src, dst = new_db("src"), new_db("dst")
    make_source(src, rows=10)
    both = ("public.orders", "public.missing")
    name = add_pipeline(stack, control, "late", src, dst, tables=both)
    old = launch(client, name, tables=both)
    assert wait_run(dagster_instance, old, TERMINAL) == "FAILURE"
    with psycopg.connect(stack.control_url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(
            "UPDATE public.pipelines SET tables = ARRAY['public.orders'] WHERE name = %s", (name,)
        )
    wait_assets(stack, name)  # the table assets follow the row: public.missing is gone
    before = now()
    new = launch(client, name)
    assert wait_run(dagster_instance, new, TERMINAL) == "SUCCESS"
    assert_synced(stack, dagster_instance, control, name, new, "9 late event", before=before)
    n_events = len(control.events(name, limit=100))

    defs = build_defs(Settings())
    sensor = defs.resolve_sensor_def("pipeline_run_failure_sensor")
    failure = (
        dagster_instance.get_records_for_run(old, of_type=dg.DagsterEventType.RUN_FAILURE)
        .records[0]
        .event_log_entry.dagster_event
    )
    with dg.build_run_status_sensor_context(
        sensor_name="pipeline_run_failure_sensor",
        dagster_event=failure,
        dagster_instance=dagster_instance,
        dagster_run=dagster_instance.get_run_by_id(old),
        resources={"control": ControlDb(url=stack.control_url)},
    ) as ctx:
        sensor(ctx)

    row = control.get(name)
    assert (row.full_load_status, row.full_load_run_id, row.last_error) == (
        FullLoadStatus.COMPLETED,
        new,
        None,
    )
    assert len(control.events(name, limit=100)) == n_events


# -- CDC follows a completed full load ----------------------------------------------------------


def test_cdc_follows_full_load(stack, dagster_instance, control, new_db) -> None:
    src, dst = new_db("src"), new_db("dst")
    make_source(src, rows=10)
    name = unique("cdc")
    control.add(spec(name, src, dst, mode=Mode.FULL_LOAD_AND_CDC))
    wait_until(
        lambda: control.get(name).full_load_status is FullLoadStatus.COMPLETED,
        timeout=180,  # includes the daemon loading the new row's assets (see test 2)
        describe="the full load",
    )
    with psycopg.connect(src, autocommit=True) as conn:
        conn.execute("INSERT INTO public.orders VALUES (1000, 'new')")
    wait_until(lambda: count(dst) == 11, timeout=90, describe="the insert to reach the target")
    # One stream run of the supervisor applies CDC; the row is ACTIVE for it while it runs.
    row = wait_until(
        lambda: (r := control.get(name)).cdc_status.value == "ACTIVE" and r.cdc_lsn and r,
        timeout=30,
        describe="cdc ACTIVE with an LSN",
    )
    cdc_runs = dagster_instance.get_run_records(
        dg.RunsFilter(job_name=CDC_JOB_NAME, tags={TAG_PIPELINE: name})
    )
    assert [r.dagster_run.run_id for r in cdc_runs] == [row.cdc_run_id], cdc_runs
    stream = cdc_runs[0].dagster_run
    assert stream.status is dg.DagsterRunStatus.STARTED
    assert stream.tags[TAG_STREAM] == "true"
    assert stream.tags["dagster/sensor_name"] == "cdc_stream_supervisor"
    # The stream reported a CDC materialization of the changed table (every
    # CDC_MATERIALIZE_EVERY_S, 5 s in the test stack).
    (key,) = target_keys(name)

    def cdc_materialization() -> dg.EventLogEntry | None:
        event = dagster_instance.get_latest_materialization_event(dg.AssetKey(key))
        mat = event.asset_materialization if event is not None else None
        return event if mat is not None and mat.metadata["cdc/phase"].value == "cdc" else None

    event = wait_until(cdc_materialization, timeout=30, describe=f"a CDC materialization of {key}")
    assert event.run_id == stream.run_id
    assert event.asset_materialization.metadata["cdc/inserts"].value >= 1

"""Fault matrix on a real Dagster deployment (webserver + daemon), under a source write workload.

Each scenario: a full_load_and_cdc pipeline is added (the launch sensor starts its full load) while
a workload writes to the source; a run is held mid-flight (table lock) and the fault injected; the
system recovers on its own or with the documented operator command; then

1. the row equals Dagster's run record for the faulted full load and for the latest runs after
   recovery; a fault of the CDC stream run ends it (the row FAILED or STOPPED for it, then the
   supervisor's new stream run ACTIVE) or is retried inside it (the row stays ACTIVE for it),
2. every target table's checksum equals the source's once CDC caught up,
3. no slot, publication or staging table leaked (and none at all after ``pipeline remove``).

docs/reliability.md lists the scenarios and the tests elsewhere that cover the rest of the matrix.
"""

import os
import signal
import time
from collections.abc import Callable

import dagster as dg
import psutil
import pytest
from dagster_graphql import DagsterGraphQLClient, ReloadRepositoryLocationStatus

from cdc_assets.control.repository import PipelineRepository
from cdc_assets.domain import CdcStatus, FullLoadStatus, Phase, Writer
from cdc_assets_tests.e2e.harness import LOCATION, DagsterStack
from cdc_assets_tests.faults.checks import leaks, row_equals_run, terminate, wait_checksums_equal
from cdc_assets_tests.faults.scenarios import (
    Case,
    active_run,
    cli_ok,
    engine_waiting,
    ensure_removed,
    locked,
    new_case,
    run_worker,
    runs,
    wait_quiet,
    wait_run_end,
)
from cdc_assets_tests.faults.workload import SourceWorkload
from cdc_assets_tests.support import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

Inject = Callable[[dg.DagsterInstance, DagsterGraphQLClient, Case, str], None]


def kill_worker(instance: dg.DagsterInstance, client, case: Case, run_id: str) -> None:  # type: ignore[no-untyped-def]
    worker = wait_until(lambda: run_worker(instance, run_id), timeout=15, describe="run worker")
    worker.kill()


def cancel(instance: dg.DagsterInstance, client, case: Case, run_id: str) -> None:  # type: ignore[no-untyped-def]
    client.terminate_run(run_id)


def cut_source(instance: dg.DagsterInstance, client, case: Case, run_id: str) -> None:  # type: ignore[no-untyped-def]
    assert terminate(case.source, case.name) > 0, "no source session of the run to terminate"


def cut_target(instance: dg.DagsterInstance, client, case: Case, run_id: str) -> None:  # type: ignore[no-untyped-def]
    assert terminate(case.target, case.name) > 0, "no target session of the run to terminate"


FAULTS: dict[str, Inject] = {
    "sigkill_worker": kill_worker,
    "cancel": cancel,
    "terminate_source": cut_source,
    "terminate_target": cut_target,
}
EXPECTED = {
    "sigkill_worker": {"FAILURE"},
    "cancel": {"CANCELED"},
    # Terminated sessions fail the step: the engine sees the error on its next statement.
    "terminate_source": {"FAILURE"},
    "terminate_target": {"FAILURE"},
}


def converge(
    instance: dg.DagsterInstance, control: PipelineRepository, case: Case, workload: SourceWorkload
) -> None:
    """Stop writing, let the sensors apply the rest, then check rows, checksums and leaks."""
    workload.stop()
    try:
        wait_checksums_equal(case.spec, case.source, case.target, timeout=150)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{diagnose(instance, control, case)}") from None
    # Caught up: disable, so the stream run ends (it stops itself, or the supervisor cancels
    # it) and "the latest run" is a finished one the row can be compared with.
    control.set_enabled(case.name, False)
    wait_quiet(instance, case.name)
    latest_load = runs(instance, case.name, Phase.FULL_LOAD)[0]
    row_equals_run(instance, control, case.name, latest_load.run_id, Phase.FULL_LOAD)
    latest_cdc = runs(instance, case.name, Phase.CDC)[0]
    assert latest_cdc.tags.get("cdc/stream") == "true", latest_cdc.tags
    assert latest_cdc.status.value in {"SUCCESS", "CANCELED"}, latest_cdc.status
    # Disabling stops CDC (issue 11 item 5): the row rests in STOPPED, whatever the last batch
    # did, and a batch that ended after the disable does not bring it back.
    wait_stopped(control, case.name)
    assert leaks(case.source, case.target, case.name, cdc=True) == []


def wait_stopped(control: PipelineRepository, name: str) -> None:
    """The disabled pipeline's CDC is STOPPED (by the disable, or the sensor after a late run)."""
    wait_until(
        lambda: control.get(name).cdc_status is CdcStatus.STOPPED,
        timeout=40,
        describe=f"{name}: CDC STOPPED after the disable",
    )


def add_and_hold_full_load(
    instance: dg.DagsterInstance, control: PipelineRepository, case: Case
) -> str:
    """Add the enabled row under the caller's source lock; return the held full load's run id.

    The launch sensor starts the load, which then waits inside the engine for the lock.
    """
    control.add(case.spec)
    run_id: str = wait_until(
        lambda: active_run(instance, case.name, Phase.FULL_LOAD),
        timeout=60,
        describe="the sensor-launched full load",
    )
    wait_until(
        lambda: engine_waiting(case.source, case.name),
        timeout=60,
        describe="the full load to wait inside the engine",
    )
    return run_id


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_fault_during_full_load(
    stack: DagsterStack, dagster_instance, control, client, new_db, fault: str
) -> None:
    case = new_case(new_db, "fl_" + fault[:8])
    try:
        with SourceWorkload(case.source) as workload:
            workload.wait_commits(5)
            with locked(case.source):
                run_id = add_and_hold_full_load(dagster_instance, control, case)
                assert control.get(case.name).full_load_status is FullLoadStatus.IN_PROGRESS
                FAULTS[fault](dagster_instance, client, case, run_id)
            assert wait_run_end(dagster_instance, run_id) in EXPECTED[fault]
            row = row_equals_run(dagster_instance, control, case.name, run_id, Phase.FULL_LOAD)
            assert row.full_load_status is FullLoadStatus.FAILED
            assert "password" not in (row.last_error or "").lower()
            # Recovery: the documented operator command; the sensor launches a new full load.
            cli_ok(stack.control_url, "pipeline", "reset", case.name)
            wait_until(
                lambda: control.get(case.name).cdc_status is CdcStatus.ACTIVE,
                timeout=120,
                describe="reload and CDC after the reset",
            )
            workload.wait_commits(10)
            converge(dagster_instance, control, case, workload)
    finally:
        ensure_removed(control, stack.control_url, case.name)
    assert leaks(case.source, case.target, case.name, cdc=False) == []


#: What a fault does to a stream run (the supervisor's cdc_stream_job run, tag cdc/stream).
STREAM_EXPECTED = {
    "sigkill_worker": {"FAILURE"},
    "cancel": {"CANCELED"},
    # A terminated session is transient for a stream run: retried inside the run, which goes on.
    "terminate_source": {"STARTED"},
    "terminate_target": {"STARTED"},
}


def stream_run(instance: dg.DagsterInstance, name: str, not_in: set[str]) -> str | None:
    """The pipeline's STARTED stream run (none of ``not_in``)."""
    for run in runs(instance, name, Phase.CDC):
        if (
            run.status.value == "STARTED"
            and run.tags.get("cdc/stream") == "true"
            and run.run_id not in not_in
        ):
            return run.run_id
    return None


def wait_streaming(
    instance: dg.DagsterInstance, control: PipelineRepository, name: str, not_in: set[str]
) -> str:
    """A (new) stream run STARTED and the row ACTIVE for it: the row equals the run record."""

    def streaming() -> str | None:
        run_id = stream_run(instance, name, not_in)
        row = control.get(name)
        ok = run_id and row.cdc_status is CdcStatus.ACTIVE and row.cdc_run_id == run_id
        return run_id if ok else None

    return wait_until(
        streaming, timeout=120, describe=f"{name}: a stream run and the row ACTIVE for it"
    )


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_fault_during_cdc_batch(
    stack: DagsterStack, dagster_instance, control, client, new_db, fault: str
) -> None:
    case = new_case(new_db, "cdc_" + fault[:8])
    try:
        with SourceWorkload(case.source) as workload:
            control.add(case.spec)
            first = wait_streaming(dagster_instance, control, case.name, set())
            with locked(case.target):
                workload.wait_commits(5)
                wait_until(
                    lambda: engine_waiting(case.target, case.name),
                    timeout=90,
                    describe="the stream run's batch waiting inside the engine on the target",
                )
                assert stream_run(dagster_instance, case.name, set()) == first
                FAULTS[fault](dagster_instance, client, case, first)
            expected = STREAM_EXPECTED[fault]
            if expected == {"STARTED"}:
                # Retried inside the run: the same run applies the rest, the row stays ACTIVE.
                workload.wait_commits(10)
                wait_checksums_equal(case.spec, case.source, case.target, timeout=90)
                run = dagster_instance.get_run_by_id(first)
                assert run is not None and run.status.value == "STARTED", run
                row = control.get(case.name)
                assert (row.cdc_status, row.cdc_run_id) == (CdcStatus.ACTIVE, first), row
                assert [r.run_id for r in runs(dagster_instance, case.name, Phase.CDC)] == [first]
            else:
                assert wait_run_end(dagster_instance, first) in expected
                # The row mirrored the run's end (FAILED, or STOPPED for the cancel) ...
                mapped = CdcStatus.FAILED if fault == "sigkill_worker" else CdcStatus.STOPPED
                wait_until(
                    lambda: any(
                        e.run_id == first and e.phase is Phase.CDC and e.new_status == mapped.value
                        for e in control.events(case.name, limit=100)
                    ),
                    timeout=40,
                    describe=f"{case.name}: CDC {mapped} for the faulted run {first}",
                )
                # ... then the supervisor (the recovery) started a new stream run: ACTIVE.
                wait_streaming(dagster_instance, control, case.name, {first})
            workload.wait_commits(10)
            converge(dagster_instance, control, case, workload)
    finally:
        ensure_removed(control, stack.control_url, case.name)
    assert leaks(case.source, case.target, case.name, cdc=False) == []


def diagnose(instance: dg.DagsterInstance, control: PipelineRepository, case: Case) -> str:
    """What a failed catch-up looked like: runs, row, slot, watermark, differing rows."""
    import psycopg

    lines = [f"row: {control.get(case.name)}"]
    for run in runs(instance, case.name)[:8]:
        lines.append(f"run {run.run_id} {run.tags.get('cdc/phase')} {run.status.value}")
    with psycopg.connect(case.source, autocommit=True) as conn:
        lines.append(
            str(
                conn.execute(
                    "SELECT slot_name, active_pid, confirmed_flush_lsn, pg_current_wal_lsn() "
                    "FROM pg_replication_slots"
                ).fetchall()
            )
        )
        src_rows = dict(conn.execute("SELECT id, note FROM public.orders").fetchall())
    with psycopg.connect(case.target, autocommit=True) as conn:
        lines.append(str(conn.execute("SELECT * FROM public._cdc_assets_watermark").fetchall()))
        dst_rows = dict(conn.execute("SELECT id, note FROM public.orders").fetchall())
    missing = sorted(set(src_rows) - set(dst_rows))[:10]
    extra = sorted(set(dst_rows) - set(src_rows))[:10]
    differ = sorted(k for k in set(src_rows) & set(dst_rows) if src_rows[k] != dst_rows[k])[:10]
    lines.append(f"counts src {len(src_rows)} dst {len(dst_rows)}")
    lines.append(f"missing {missing} extra {extra} differ {differ}")
    for k in differ[:3]:
        lines.append(f"  {k}: src {src_rows[k]!r} dst {dst_rows[k]!r}")
    return "\n".join(lines)


PLAN_QUERY = (
    'query($sel: PipelineSelector!) { executionPlanOrError(pipeline: $sel, mode: "default") '
    "{ __typename } }"
)


def webserver_plans(stack: DagsterStack) -> bool:
    """The launchpad's execution-plan query answers: it needs the webserver's live code server."""
    sel = {
        "repositoryLocationName": LOCATION,
        "repositoryName": "__repository__",
        "pipelineName": "full_load_job",
    }
    try:
        data = stack.graphql(PLAN_QUERY, {"sel": sel})
    except OSError:  # HTTP 500 while the webserver's code server is dead
        return False
    return bool(data["executionPlanOrError"]["__typename"] == "ExecutionPlan")


def test_code_servers_killed_during_full_load(
    stack: DagsterStack, dagster_instance, control, client, new_db
) -> None:
    """SIGKILL the code server (the ``dagster api grpc`` child of ``dagster code-server start``,
    which webserver and daemon share) while a load runs; it is the run worker's parent.

    The worker outlives its parent and ends SUCCESS; the op writes COMPLETED. The proxy does not
    restart a dead child by itself: the documented Reload of the location (the UI button, or
    restarting the code server) starts a new one, whose sensors confirm the row and launch CDC.
    """
    case = new_case(new_db, "codesrv")
    try:
        with SourceWorkload(case.source) as workload:
            workload.wait_commits(5)
            with locked(case.source):
                run_id = add_and_hold_full_load(dagster_instance, control, case)
                worker = wait_until(
                    lambda: run_worker(dagster_instance, run_id), timeout=15, describe="run worker"
                )
                killed = stack.code_servers("daemon") | stack.code_servers("webserver")
                assert worker.ppid() in stack.code_servers("daemon"), "worker's parent is not it"
                for pid in killed:
                    os.kill(pid, signal.SIGKILL)
                wait_until(
                    lambda: not any(psutil.pid_exists(p) for p in killed),
                    timeout=10,
                    describe="the killed code servers to be gone",
                )
                killed_at = time.monotonic()
                assert worker.is_running()
            assert wait_run_end(dagster_instance, run_id) == "SUCCESS"
            row = row_equals_run(dagster_instance, control, case.name, run_id, Phase.FULL_LOAD)
            assert row.full_load_authority is Writer.OP  # no sensor can run yet
            # Reload (docs/reliability.md): a new code server, whose sensors confirm the row.
            # The proxy restarts its child on a reload; the first attempt may still find it down.
            wait_until(
                lambda: (
                    client.reload_repository_location(LOCATION).status
                    is ReloadRepositoryLocationStatus.SUCCESS
                ),
                timeout=90,
                interval=5,
                describe="a reload of the location to succeed",
            )
            wait_until(
                lambda: stack.code_servers("daemon") - killed,
                timeout=90,
                describe="the new code server",
            )
            wait_until(
                lambda: (
                    control.get(case.name).full_load_authority in (Writer.SENSOR, Writer.RECONCILER)
                ),
                timeout=60,
                describe="the new code server's sensors to confirm the row",
            )
            confirmed_s = time.monotonic() - killed_at
            wait_until(
                lambda: control.get(case.name).cdc_status is CdcStatus.ACTIVE,
                timeout=90,
                describe="CDC launched by the new code server's sensor",
            )
            wait_until(lambda: webserver_plans(stack), timeout=60, describe="the launchpad back")
            print(f"code servers killed: row confirmed by a sensor after {confirmed_s:.1f} s")
            workload.wait_commits(10)
            converge(dagster_instance, control, case, workload)
    finally:
        ensure_removed(control, stack.control_url, case.name)
    assert leaks(case.source, case.target, case.name, cdc=False) == []
    stack.wait_ready()  # later tests share this stack

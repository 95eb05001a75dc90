"""CDC as one long-running stream run per pipeline, on the real stack (daemon, code server).

``cdc_stream_supervisor`` keeps exactly one ``cdc_stream_job`` run (tag ``cdc/stream=true``)
STARTED per enabled CDC pipeline; the row says ACTIVE with that run's id while it runs. Three
scenarios:

* latency: under a small source workload the commit-to-visible latency on the target stays low
  and the pipeline keeps its one run (a regression to one Dagster run per batch fails both);
* kill -9 of the stream run's worker: the run ends FAILURE, the row FAILED for it, then the
  supervisor starts a new stream run and the row returns to ACTIVE; checksums equal at the end;
* ``pipeline disable``: the stream run ends (SUCCESS or CANCELED), the row says STOPPED;
  ``pipeline enable``: a new stream run, ACTIVE.
"""

import statistics
import threading
import time
import uuid

import dagster as dg
import psycopg
import pytest

from cdc_assets.control.repository import PipelineRepository
from cdc_assets.defs.tags import CDC_JOB_NAMES, TAG_PIPELINE, TAG_STREAM
from cdc_assets.domain import CdcStatus, FullLoadStatus, Mode
from cdc_assets_tests.e2e.harness import DagsterStack
from cdc_assets_tests.e2e.pipelines import make_source, spec
from cdc_assets_tests.faults.checks import wait_checksums_equal
from cdc_assets_tests.faults.scenarios import cli_ok, ensure_removed, run_worker, wait_run_end
from cdc_assets_tests.faults.workload import SourceWorkload
from cdc_assets_tests.support import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

LIVE = {"NOT_STARTED", "QUEUED", "STARTING", "STARTED", "CANCELING"}
#: Commit-to-visible p95 bound: a stream applies every CDC_COMMIT_INTERVAL_MS (250 ms); one
#: Dagster run per batch (sensor tick + run start, several seconds each) cannot meet it.
P95_BOUND_S = 10.0
RATE_TPS = 20
WORKLOAD_S = 15.0


def cdc_runs(instance: dg.DagsterInstance, name: str) -> list[dg.DagsterRun]:
    """Every CDC run (stream or catch-up) of the pipeline, newest first."""
    out: list[dg.DagsterRun] = []
    for job_name in CDC_JOB_NAMES:
        records = instance.get_run_records(
            dg.RunsFilter(job_name=job_name, tags={TAG_PIPELINE: name})
        )
        out += [r.dagster_run for r in records]
    return out


def stream_runs(instance: dg.DagsterInstance, name: str) -> list[dg.DagsterRun]:
    return [r for r in cdc_runs(instance, name) if r.tags.get(TAG_STREAM) == "true"]


def live_stream(instance: dg.DagsterInstance, name: str, *, not_in: set[str]) -> str | None:
    """The id of the pipeline's one STARTED stream run (none in ``not_in``) while the row says
    ACTIVE for it; None otherwise. Asserts there is never a second live CDC run."""
    live = [r for r in cdc_runs(instance, name) if r.status.value in LIVE]
    assert len(live) <= 1, f"{name}: more than one live CDC run: {[r.run_id for r in live]}"
    if not live or live[0].status.value != "STARTED" or live[0].run_id in not_in:
        return None
    run = live[0]
    assert run.tags.get(TAG_STREAM) == "true", f"{run.run_id} is no stream run: {run.tags}"
    return run.run_id


def wait_streaming(
    instance: dg.DagsterInstance,
    repo: PipelineRepository,
    name: str,
    *,
    not_in: set[str] | None = None,
    timeout: float = 120,
) -> str:
    """Wait for a (new) STARTED stream run and the row ACTIVE for it: row == run record."""

    def streaming() -> str | None:
        run_id = live_stream(instance, name, not_in=not_in or set())
        if run_id is None:
            return None
        row = repo.get(name)
        ok = row.cdc_status is CdcStatus.ACTIVE and row.cdc_run_id == run_id
        return run_id if ok else None

    return wait_until(
        streaming,
        timeout=timeout,
        describe=f"{name}: a stream run STARTED and the row ACTIVE for it (not {not_in})",
        interval=0.5,
    )


def add_cdc_pipeline(
    instance: dg.DagsterInstance,
    repo: PipelineRepository,
    prefix: str,
    source: str,
    target: str,
    tables: tuple[str, ...] = ("public.orders",),
) -> tuple[str, str]:
    """An enabled full_load_and_cdc pipeline: its full load, then its stream run. (name, run)."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    repo.add(spec(name, source, target, tables=tables, mode=Mode.FULL_LOAD_AND_CDC))
    # Includes the code location loading the new row's assets (definitions sync sensor).
    wait_until(
        lambda: repo.get(name).full_load_status is FullLoadStatus.COMPLETED,
        timeout=180,
        describe=f"{name}: the full load",
    )
    return name, wait_streaming(instance, repo, name)


def failed_event(repo: PipelineRepository, name: str, run_id: str) -> bool:
    return any(
        e.phase.value == "cdc" and e.new_status == CdcStatus.FAILED.value and e.run_id == run_id
        for e in repo.events(name, limit=100)
    )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# -- (a) one run, low latency --------------------------------------------------------------------


def test_one_stream_run_low_latency(stack: DagsterStack, dagster_instance, control, new_db) -> None:
    src, dst = new_db("src"), new_db("dst")
    with psycopg.connect(src, autocommit=True) as conn:
        conn.execute("CREATE TABLE public.ticks (id bigint PRIMARY KEY, committed_at timestamptz)")
        conn.execute("INSERT INTO public.ticks SELECT g, now() FROM generate_series(1, 10) g")
    name, run_id = add_cdc_pipeline(
        dagster_instance, control, "lat", src, dst, tables=("public.ticks",)
    )
    try:
        committed: dict[int, float] = {}
        errors: list[BaseException] = []

        def write() -> None:
            try:
                with psycopg.connect(src, autocommit=True) as conn:
                    n = int(RATE_TPS * WORKLOAD_S)
                    start = time.monotonic()
                    for i in range(n):
                        pause = start + i / RATE_TPS - time.monotonic()
                        if pause > 0:
                            threading.Event().wait(pause)
                        key = 1000 + i
                        conn.execute(
                            "INSERT INTO public.ticks VALUES (%s, clock_timestamp())", (key,)
                        )
                        committed[key] = time.time()  # autocommit: the commit has returned
            except BaseException as exc:
                errors.append(exc)

        writer = threading.Thread(target=write, name="latency-workload", daemon=True)
        seen: dict[int, float] = {}
        runs_seen: set[str] = set()
        beats: set[object] = set()
        last_check = float("-inf")
        expected = int(RATE_TPS * WORKLOAD_S)

        def all_visible() -> bool:
            nonlocal last_check
            assert not errors, f"workload failed: {errors[0]!r}"
            with psycopg.connect(dst, autocommit=True) as conn:
                rows = conn.execute("SELECT id FROM public.ticks WHERE id >= 1000").fetchall()
            t = time.time()
            for (key,) in rows:
                seen.setdefault(key, t)
            if time.monotonic() - last_check >= 1.0:
                last_check = time.monotonic()
                runs_seen.update(r.run_id for r in cdc_runs(dagster_instance, name))
                row = control.get(name)
                assert (row.cdc_status, row.cdc_run_id) == (CdcStatus.ACTIVE, run_id), row
                beats.add(row.cdc_heartbeat_at)
            return len(seen) == expected and not writer.is_alive()

        writer.start()
        wait_until(
            all_visible,
            timeout=WORKLOAD_S + 60,
            describe=f"{name}: every committed row visible on the target",
            interval=0.05,
        )
        writer.join(timeout=10)
        latencies = [seen[k] - committed[k] for k in committed]
        p50, p95 = percentile(latencies, 0.5), percentile(latencies, 0.95)
        print(
            f"stream latency over {len(latencies)} txns: p50 {p50:.3f} s, p95 {p95:.3f} s, "
            f"p99 {percentile(latencies, 0.99):.3f} s, max {max(latencies):.3f} s, "
            f"mean {statistics.mean(latencies):.3f} s"
        )
        assert len(latencies) == expected
        assert p95 < P95_BOUND_S, f"commit-to-visible p95 {p95:.1f} s >= {P95_BOUND_S} s"
        # One run did it all, and it is still going; its heartbeat moved meanwhile.
        assert runs_seen == {run_id}, f"{name}: CDC runs {runs_seen}, expected only {run_id}"
        assert [r.run_id for r in cdc_runs(dagster_instance, name)] == [run_id]
        assert dagster_instance.get_run_by_id(run_id).status is dg.DagsterRunStatus.STARTED
        assert len(beats - {None}) >= 2, f"heartbeat did not advance: {beats}"
        wait_checksums_equal(control.get(name).spec, src, dst, timeout=30)
    finally:
        ensure_removed(control, stack.control_url, name)


# -- (b) kill -9 of the stream run's worker --------------------------------------------------


def test_kill_stream_worker_restarts(
    stack: DagsterStack, dagster_instance, control, new_db
) -> None:
    src, dst = new_db("src"), new_db("dst")
    make_source(src, rows=400)
    name, run_id = add_cdc_pipeline(dagster_instance, control, "skill", src, dst)
    try:
        with SourceWorkload(src, rate=20) as workload:
            workload.wait_commits(10)
            worker = wait_until(
                lambda: run_worker(dagster_instance, run_id), timeout=15, describe="run worker"
            )
            worker.kill()
            # Run monitoring or, at the latest, the supervisor's heartbeat timeout (30 s).
            assert wait_run_end(dagster_instance, run_id, timeout=120) == "FAILURE"
            # The row said FAILED for the killed run (the restart may already have replaced it).
            wait_until(
                lambda: failed_event(control, name, run_id),
                timeout=40,
                describe=f"{name}: CDC FAILED for the killed run {run_id}",
            )
            row = control.get(name)
            if row.cdc_run_id == run_id:
                assert row.cdc_status is CdcStatus.FAILED and row.last_error, row
            new = wait_streaming(dagster_instance, control, name, not_in={run_id}, timeout=120)
            assert new != run_id
            workload.wait_commits(20)
        wait_checksums_equal(control.get(name).spec, src, dst, timeout=90)
        # Still the same stream run after catching up: the restart is the only new CDC run.
        assert live_stream(dagster_instance, name, not_in=set()) == new
        assert {r.run_id for r in stream_runs(dagster_instance, name)} == {run_id, new}
        assert control.get(name).cdc_run_id == new
    finally:
        ensure_removed(control, stack.control_url, name)


# -- (c) disable stops the stream, enable starts a new one ---------------------------------------


def test_disable_stops_enable_restarts(
    stack: DagsterStack, dagster_instance, control, new_db
) -> None:
    src, dst = new_db("src"), new_db("dst")
    make_source(src, rows=400)
    name, run_id = add_cdc_pipeline(dagster_instance, control, "sdis", src, dst)
    try:
        with SourceWorkload(src, rate=20) as workload:
            workload.wait_commits(10)
            cli_ok(stack.control_url, "pipeline", "disable", name)
            assert wait_run_end(dagster_instance, run_id, timeout=60) in {"SUCCESS", "CANCELED"}
            row = wait_until(
                lambda: (r := control.get(name)).cdc_status is CdcStatus.STOPPED and r,
                timeout=30,
                describe=f"{name}: CDC STOPPED after the disable",
            )
            assert not failed_event(control, name, run_id), control.events(name, limit=20)
            assert row.cdc_run_id in (None, run_id), row
            # Disabled: the supervisor starts nothing (one tick and then some).
            ticks_before = stack.last_ticks().get("cdc_stream_supervisor", (0.0, ""))[0]
            wait_until(
                lambda: (
                    stack.last_ticks().get("cdc_stream_supervisor", (0.0, ""))[0] > ticks_before
                ),
                timeout=30,
                describe="a supervisor tick after the disable",
                interval=1,
            )
            assert not [r for r in cdc_runs(dagster_instance, name) if r.status.value in LIVE]
            assert control.get(name).cdc_status is CdcStatus.STOPPED
            cli_ok(stack.control_url, "pipeline", "enable", name)
            new = wait_streaming(dagster_instance, control, name, not_in={run_id}, timeout=90)
            workload.wait_commits(20)
        wait_checksums_equal(control.get(name).spec, src, dst, timeout=90)
        assert live_stream(dagster_instance, name, not_in=set()) == new
        assert {r.run_id for r in stream_runs(dagster_instance, name)} == {run_id, new}
    finally:
        ensure_removed(control, stack.control_url, name)

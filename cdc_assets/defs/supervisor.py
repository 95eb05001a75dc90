"""The stream supervisor: exactly one CDC stream run per enabled CDC pipeline, from run records.

Every ``CDC_SENSOR_INTERVAL_S`` it reads the control rows (one query) and the active CDC runs
(one query) and, per pipeline:

* starts a stream run (tag ``cdc/stream=true``) for an enabled pipeline whose full load completed
  and which has no CDC run queued or going; after a failure only once the backoff of
  ``status/backoff.py`` is over (derived from the run records, so it survives daemon restarts);
* cancels the stream run of a pipeline that is disabled, removed, or whose full load is no longer
  complete (a reset); the run itself stops within a heartbeat too, whichever comes first;
* fails a STARTED stream run whose heartbeat (``cdc_heartbeat_at``) is older than
  ``CDC_HEARTBEAT_TIMEOUT_S``: the default run launcher does not check a worker's health, and a
  worker that died with its code server would stay STARTED for ever. A tick that follows a blind
  spot of the supervisor itself (daemon down, control DB unreachable: the gap since its last good
  tick, kept in the cursor, exceeds the timeout) fails nobody, because the heartbeats could not be
  written or read meanwhile;
* puts a disabled pipeline's CDC in ``STOPPED`` once no run is going (a row disabled by SQL).

No run key: "no active CDC run of this pipeline" is checked on every tick against the run
records, which hold the runs requested by earlier ticks; the run coordinator's tag limit and the
pipeline lock stay the safety net against a duplicate.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import dagster as dg

from cdc_assets.defs.active import ACTIVE_STATUSES, FINISHED_STATUSES, active_pipelines
from cdc_assets.defs.jobs import cdc_stream_job
from cdc_assets.defs.resources import ControlDb
from cdc_assets.defs.run_status import aware, error_text, run_fact
from cdc_assets.defs.tags import (
    CDC_JOB_NAME,
    CDC_JOB_NAMES,
    TAG_MAX_RUNTIME,
    TAG_PIPELINE,
    TAG_STREAM,
    is_stream,
    launch_tags,
    pipeline_of_run,
)
from cdc_assets.domain import CdcStatus, Phase, Writer
from cdc_assets.settings import Settings
from cdc_assets.status.backoff import RetryDecision, decide_retry
from cdc_assets.status.reconcile import stops_cdc
from cdc_assets.status.rules import heartbeat_age, heartbeat_stale, wants_cdc

if TYPE_CHECKING:
    from cdc_assets.control.repository import PipelineRepository, PipelineRow

SUPERVISOR_NAME = "cdc_stream_supervisor"
#: Finished CDC runs read per pipeline for its backoff: enough to reach any cap up to 2**10
#: minutes; older runs cannot change the delay.
HISTORY = 12
#: Queued runs read per tick to find full loads waiting behind a stream.
QUEUED_READ = 500


def stream_request(row: "PipelineRow", settings: Settings) -> dg.RunRequest:
    """A stream run for ``row``; its max-runtime net sits an hour past ``CDC_STREAM_MAX_AGE_S``.

    The run ends itself at its maximum age; Dagster's run monitoring (where enabled) only
    catches a loop that hung past it.
    """
    tags = launch_tags(row.name, Phase.CDC, settings)
    tags[TAG_STREAM] = "true"
    tags[TAG_MAX_RUNTIME] = str(settings.cdc_stream_max_age_s + 3600)
    return dg.RunRequest(job_name=CDC_JOB_NAME, tags=tags)


def retry_decision(
    instance: dg.DagsterInstance, row: "PipelineRow", settings: Settings, now: datetime
) -> RetryDecision:
    """The backoff of a FAILED CDC pipeline, from its latest finished CDC runs.

    Only runs since the current full load count: failures before a reset and reload (a dropped
    slot, say) say nothing about the new slot.
    """
    history = []
    for job_name in CDC_JOB_NAMES:
        records = instance.get_run_records(
            filters=dg.RunsFilter(
                job_name=job_name,
                tags={TAG_PIPELINE: row.name},
                statuses=FINISHED_STATUSES,
                created_after=row.full_load_run_created_at,
            ),
            limit=HISTORY,
        )
        facts = (run_fact(record) for record in records)
        history += [fact for fact in facts if fact is not None and not fact.lock_conflict]
    history.sort(key=lambda f: f.created_at, reverse=True)
    return decide_retry(history, now=now, cap=timedelta(seconds=settings.cdc_retry_max_s))


@dataclass
class Tick:
    """What one supervisor tick did (also its log lines and the sensor's skip reason)."""

    requests: list[dg.RunRequest]
    canceled: list[str]
    failed: list[str]
    stopped: list[str]
    waiting: list[str]

    def summary(self) -> str:
        """One line for the tick's skip reason."""
        parts = [
            f"{len(self.requests)} started",
            f"{len(self.canceled)} canceled",
            f"{len(self.failed)} failed for a stale heartbeat",
        ]
        if self.waiting:
            parts.append("backing off: " + ", ".join(self.waiting))
        return "; ".join(parts)


def _cancel(instance: dg.DagsterInstance, run: dg.DagsterRun, reason: str, log: Any) -> bool:
    """Cancel ``run`` (terminate it if it is going); False if Dagster refused."""
    if run.status is dg.DagsterRunStatus.CANCELING:
        return False
    try:
        done = instance.run_coordinator.cancel_run(run.run_id)
    except Exception as exc:  # one run must not stop the others' supervision
        log.warning(f"cannot cancel run {run.run_id}: {error_text(exc)}")
        return False
    if not done:
        log.warning(f"Dagster did not cancel run {run.run_id} ({reason}); next tick tries again")
        return False
    log.info(f"canceled stream run {run.run_id}: {reason}")
    return True


def _unrecorded_stream_end(instance: dg.DagsterInstance, row: "PipelineRow") -> bool:
    """True when the row says ACTIVE for a stream run that has ended.

    Asked only of rows with no CDC run going. A catch-up run's ACTIVE is its outcome, not a
    running status, so it does not hold the next stream back.
    """
    if row.cdc_run_id is None:
        return False
    run = instance.get_run_by_id(row.cdc_run_id)
    return run is not None and is_stream(run.tags) and run.is_finished


def queued_loads(instance: dg.DagsterInstance) -> set[str]:
    """Pipelines with a queued run that is not a stream: a full load waiting for the pipeline.

    The run coordinator lets one run per pipeline go (tag ``cdc/pipeline``), and a stream never
    ends by itself, so a queued load (a UI Materialize, a reload) would wait for ever: its
    pipeline's stream is canceled to let it through. A UI Materialize gets its tags only when it
    starts, so the pipeline comes from its asset selection (``pipeline_of_run``).
    """
    out = set()
    for record in instance.get_run_records(
        filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.QUEUED]), limit=QUEUED_READ
    ):
        run = record.dagster_run
        if run.job_name in CDC_JOB_NAMES:
            continue
        pipeline = pipeline_of_run(run)
        if pipeline:
            out.add(pipeline)
    return out


def supervise(
    instance: dg.DagsterInstance,
    repo: "PipelineRepository",
    rows: Sequence["PipelineRow"],
    settings: Settings,
    *,
    now: datetime,
    check_heartbeats: bool,
    log: Any,
) -> Tick:
    """One tick: start, cancel, fail and stop as the module docstring says."""
    tick = Tick([], [], [], [], [])
    by_name = {r.name: r for r in rows}
    going: dict[str, list[Any]] = {}
    for job_name in CDC_JOB_NAMES:
        for record in instance.get_run_records(
            filters=dg.RunsFilter(job_name=job_name, statuses=ACTIVE_STATUSES)
        ):
            pipeline = record.dagster_run.tags.get(TAG_PIPELINE)
            if pipeline:
                going.setdefault(pipeline, []).append(record)
    timeout = timedelta(seconds=settings.cdc_heartbeat_timeout_s)
    waiting_loads = queued_loads(instance)
    for pipeline, records in going.items():
        row = by_name.get(pipeline)
        for record in records:
            run: dg.DagsterRun = record.dagster_run
            if not is_stream(run.tags):
                continue
            why = None
            if row is None or not wants_cdc(row):
                why = "pipeline removed" if row is None else "pipeline disabled or not loaded"
            elif pipeline in waiting_loads:
                why = "a full load of the pipeline is queued behind it (the stream resumes after)"
            if why is not None:
                if _cancel(instance, run, why, log):
                    tick.canceled.append(pipeline)
                continue
            if row is None or run.status is not dg.DagsterRunStatus.STARTED:
                continue
            if not check_heartbeats:
                continue
            started = aware(record.start_time or record.create_timestamp)
            beat = row.cdc_heartbeat_at if row.cdc_run_id == run.run_id else None
            if heartbeat_stale(started_at=started, heartbeat_at=beat, now=now, timeout=timeout):
                age = heartbeat_age(started_at=started, heartbeat_at=beat, now=now)
                message = (
                    f"pipeline {pipeline!r}: stream run {run.run_id} sent no heartbeat for "
                    f"{age.total_seconds():.0f} s (CDC_HEARTBEAT_TIMEOUT_S "
                    f"{settings.cdc_heartbeat_timeout_s}): its worker is gone or hung; the "
                    "supervisor failed it and starts a new one (nothing is lost: the target "
                    "holds the watermark)"
                )
                instance.report_run_failed(run, message)
                log.warning(message)
                tick.failed.append(pipeline)
    # Any run of the pipeline (a full load too: it preempts the stream) defers a start.
    busy = active_pipelines(instance, [r.name for r in rows if wants_cdc(r)])
    for row in rows:
        if not wants_cdc(row) or row.name in going or row.name in busy | waiting_loads:
            continue
        if row.cdc_status is CdcStatus.ACTIVE and _unrecorded_stream_end(instance, row):
            # Its stream ended but the row does not say so yet: the run-status sensor (or the
            # reconciler) writes STOPPED/FAILED first, so the history shows how it ended; a
            # new stream's ACTIVE would make that write stale (an older run) and lose it.
            tick.waiting.append(f"{row.name} (its last stream's end is not recorded yet)")
            continue
        if row.cdc_status is CdcStatus.FAILED:
            decision = retry_decision(instance, row, settings, now)
            if not decision.due:
                tick.waiting.append(
                    f"{row.name} (failed {decision.failures}x, next try at "
                    f"{decision.not_before:%H:%M:%S} UTC)"
                )
                continue
        tick.requests.append(stream_request(row, settings))
    for row in rows:
        if not stops_cdc(enabled=row.enabled, status=row.cdc_status, run_active=row.name in going):
            continue
        try:
            if repo.stop_cdc(row.name, writer=Writer.SENSOR, message="disabled (enabled = false)"):
                tick.stopped.append(row.name)
                log.info(f"{row.name}: disabled, CDC {row.cdc_status} -> STOPPED")
        except Exception as exc:  # one row must not stop the others
            log.warning(f"{row.name}: cannot stop CDC: {error_text(exc)}")
    return tick


def supervisor_sensor(settings: Settings) -> Any:
    """``cdc_stream_supervisor``: keeps one stream run per enabled CDC pipeline alive."""

    @dg.sensor(
        name=SUPERVISOR_NAME,
        job=cdc_stream_job,
        minimum_interval_seconds=settings.sensor_interval_s,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Keeps one cdc_stream_job run per enabled CDC pipeline: starts, restarts "
        "with backoff, cancels disabled or removed pipelines' runs, fails stale heartbeats.",
    )
    def cdc_stream_supervisor(
        context: dg.SensorEvaluationContext, control: ControlDb
    ) -> dg.SensorResult:
        now = datetime.now(UTC)
        live = Settings.from_env()
        repo = control.repository()
        rows = repo.list()
        previous = json.loads(context.cursor).get("tick") if context.cursor else None
        blind = previous is None or (now.timestamp() - float(previous)) > (
            live.cdc_heartbeat_timeout_s
        )
        tick = supervise(
            context.instance,
            repo,
            rows,
            live,
            now=now,
            check_heartbeats=not blind,
            log=context.log,
        )
        return dg.SensorResult(
            run_requests=tick.requests,
            cursor=json.dumps({"tick": now.timestamp()}),
            skip_reason=None if tick.requests else tick.summary(),
        )

    return cdc_stream_supervisor

"""``prune_runs_job`` and ``run_retention_schedule``: delete the project's own old runs.

Open-source Dagster has no event-log retention, and every CDC batch is a run (1,440 a day per
pipeline at the minute heartbeat, more when changes arrive) plus the check-only runs of
``cdc_lag_idle_sensor``. Once a day the job deletes, with ``instance.delete_run`` (the run and its
event-log rows), the project's finished runs created more than ``CDC_RUN_RETENTION_DAYS`` ago,
except the ones ``status/retention.py`` keeps: runs a control row points to and the newest
finished run of each pipeline and phase. The work per run is bounded (``max_deletions``); what is
left is deleted the next day.
"""

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from cdc_assets.defs.active import FINISHED_STATUSES
from cdc_assets.defs.resources import ControlDb
from cdc_assets.defs.run_status import aware
from cdc_assets.defs.tags import (
    ASSET_JOB_NAME,
    CDC_JOB_NAME,
    FULL_LOAD_JOB_NAME,
    OLD_CDC_JOB_NAME,
    TAG_PHASE,
    TAG_PIPELINE,
)
from cdc_assets.domain import Phase
from cdc_assets.settings import Settings
from cdc_assets.status.reconcile import RunState
from cdc_assets.status.retention import (
    RunSummary,
    Verdict,
    newest_finished,
    referenced_run_ids,
    retention_cutoff,
    verdict,
)

PRUNE_JOB_NAME = "prune_runs_job"
#: Deletions per run: ~20,000 at a few ms each is minutes of work; the rest waits for tomorrow.
MAX_DELETIONS = 20_000
#: Run records read per query.
PAGE_SIZE = 500
#: Records read per run, at most, so a job full of kept runs cannot make a run endless.
MAX_SCANNED_FACTOR = 4
#: Newest finished runs read per pipeline and phase to step over lock-conflict losers.
NEWEST_WINDOW = 10
#: The jobs whose old runs are read: the project's two, and ``__ASSET_JOB`` (UI Materialize and
#: check-only runs; the rule keeps the ones another code location made).
JOBS = (CDC_JOB_NAME, OLD_CDC_JOB_NAME, FULL_LOAD_JOB_NAME, ASSET_JOB_NAME)


@dataclass
class PruneResult:
    """What one prune did: runs deleted, kept runs by reason, whether old runs remain."""

    deleted: int = 0
    scanned: int = 0
    kept: Counter[Verdict] = field(default_factory=Counter)
    more: bool = False

    def summary(self, created_before: datetime) -> str:
        """The one line the op logs."""
        kept = ", ".join(f"{n} {reason}" for reason, n in sorted(self.kept.items())) or "none"
        tail = "; more remain, deleted on the next run" if self.more else ""
        return (
            f"deleted {self.deleted} of {self.scanned} finished runs created before "
            f"{created_before:%Y-%m-%d %H:%M} UTC; kept: {kept}{tail}"
        )


def summarize(record: Any) -> RunSummary:
    """A run record as the pure rule's :class:`RunSummary`."""
    run: dg.DagsterRun = record.dagster_run
    return RunSummary(
        run_id=run.run_id,
        job_name=run.job_name,
        state=RunState(run.status.value),
        created_at=aware(record.create_timestamp),
        tags=dict(run.tags),
    )


def newest_of(instance: dg.DagsterInstance, key: tuple[str, Phase]) -> str | None:
    """The newest finished run of one pipeline and phase, whenever it was created.

    Every launch path tags both (``tags.launch_tags``, ``complete_run_tags``, the jobs' own
    ``cdc/phase``), so the tag query finds it.
    """
    pipeline, phase = key
    records = instance.get_run_records(
        filters=dg.RunsFilter(
            tags={TAG_PIPELINE: pipeline, TAG_PHASE: phase.value}, statuses=FINISHED_STATUSES
        ),
        limit=NEWEST_WINDOW,
    )
    return newest_finished(s for s in map(summarize, records) if s.phase_key == key)


def _old_runs(
    instance: dg.DagsterInstance, job_name: str, created_before: datetime, kept: set[str]
) -> Iterator[RunSummary]:
    """Old finished runs of one job, oldest first, page by page.

    The cursor is always a run that was kept (``kept`` is filled by the caller as it decides):
    Dagster's cursor is "after this run's row", which finds nothing once that run is deleted.
    Deleted runs simply drop out of the next page.
    """
    cursor: str | None = None
    while True:
        records = instance.get_run_records(
            filters=dg.RunsFilter(
                job_name=job_name, created_before=created_before, statuses=FINISHED_STATUSES
            ),
            limit=PAGE_SIZE,
            ascending=True,
            cursor=cursor,
        )
        if not records:
            return
        for record in records:
            yield summarize(record)
        kept_here = [r.dagster_run.run_id for r in records if r.dagster_run.run_id in kept]
        if kept_here:
            cursor = kept_here[-1]
        elif len(records) < PAGE_SIZE:
            return


def prune_runs(
    instance: dg.DagsterInstance,
    referenced: frozenset[str],
    *,
    created_before: datetime,
    max_deletions: int = MAX_DELETIONS,
) -> PruneResult:
    """Delete the project's finished runs created before ``created_before`` that may go.

    ``referenced`` holds the run ids the control rows point to (``referenced_run_ids``). At most
    ``max_deletions`` runs are deleted and ``MAX_SCANNED_FACTOR`` times as many read; when either
    stops the run early, ``more`` says so.
    """
    result = PruneResult()
    newest: dict[tuple[str, Phase], str | None] = {}
    kept: set[str] = set()
    max_scanned = max(max_deletions, PAGE_SIZE) * MAX_SCANNED_FACTOR
    for job_name in JOBS:
        for run in _old_runs(instance, job_name, created_before, kept):
            if result.deleted >= max_deletions or result.scanned >= max_scanned:
                result.more = True
                return result
            result.scanned += 1
            key = run.phase_key
            if key is not None and key not in newest:
                newest[key] = newest_of(instance, key)
            decision = verdict(
                run, created_before=created_before, referenced=referenced, newest=newest
            )
            if decision is Verdict.DELETE:
                instance.delete_run(run.run_id)
                result.deleted += 1
            else:
                kept.add(run.run_id)
                result.kept[decision] += 1
    return result


class PruneConfig(dg.Config):
    """Launchpad overrides; the schedule uses the defaults."""

    created_before: str | None = None
    """ISO-8601 UTC cut-off; default now minus ``CDC_RUN_RETENTION_DAYS``."""
    max_deletions: int = MAX_DELETIONS


@dg.op(name="prune_runs")
def prune_runs_op(context: dg.OpExecutionContext, config: PruneConfig, control: ControlDb) -> None:
    """Delete old CDC runs; one summary line in the run's log."""
    if config.created_before:
        try:
            created_before: datetime | None = aware(datetime.fromisoformat(config.created_before))
        except ValueError:
            raise dg.Failure(
                description=f"prune_runs: created_before {config.created_before!r} is not an "
                "ISO-8601 time; give e.g. 2026-03-01T00:00:00+00:00, or leave it out to use "
                "CDC_RUN_RETENTION_DAYS"
            ) from None
    else:
        days = Settings.from_env().run_retention_days
        created_before = retention_cutoff(datetime.now(UTC), days)
    if created_before is None:
        context.log.info("CDC_RUN_RETENTION_DAYS is 0: every run is kept")
        return
    referenced = referenced_run_ids(control.repository().list())
    result = prune_runs(
        context.instance,
        referenced,
        created_before=created_before.astimezone(UTC),
        max_deletions=config.max_deletions,
    )
    context.log.info(result.summary(created_before.astimezone(UTC)))


@dg.job(
    name=PRUNE_JOB_NAME,
    executor_def=dg.in_process_executor,
    description="Deletes the project's finished runs (and their event logs) older than "
    "CDC_RUN_RETENTION_DAYS, except runs a control row points to and each pipeline's newest.",
)
def prune_runs_job() -> None:
    """One op: ``prune_runs``."""
    prune_runs_op()


@dg.schedule(
    name="run_retention_schedule",
    cron_schedule="0 4 * * *",
    job=prune_runs_job,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Deletes the project's runs older than CDC_RUN_RETENTION_DAYS (04:00 daily).",
)
def run_retention_schedule(context: dg.ScheduleEvaluationContext) -> Any:
    """A prune run a day, unless retention is off or yesterday's prune is still going."""
    if Settings.from_env().run_retention_days == 0:
        return dg.SkipReason("CDC_RUN_RETENTION_DAYS is 0: runs are kept for ever")
    going = context.instance.get_run_records(
        filters=dg.RunsFilter(
            job_name=PRUNE_JOB_NAME,
            statuses=[
                dg.DagsterRunStatus.QUEUED,
                dg.DagsterRunStatus.STARTING,
                dg.DagsterRunStatus.STARTED,
            ],
        ),
        limit=1,
    )
    if going:
        return dg.SkipReason(f"prune run {going[0].dagster_run.run_id} is still going")
    when = context.scheduled_execution_time
    return dg.RunRequest(run_key=f"prune:{when.isoformat() if when else 'manual'}")

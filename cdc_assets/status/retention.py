"""Which of the project's old runs ``prune_runs_job`` may delete: pure, no I/O.

Open-source Dagster keeps every run and its event log for ever, and this project makes thousands
of short runs a day (a CDC batch a minute per pipeline, check-only ``cdc_lag`` runs of idle
pipelines). Deleting the old ones bounds the instance's storage, but three readers still need
some of them:

* the reconciler reads the runs a control row points to (``full_load_run_id``, ``cdc_run_id``,
  ``last_run_id``); a deleted one makes it report ``run record missing``;
* the CDC retry backoff (``status/backoff.py``) and the reconciler's newest-runs window read the
  newest finished run of each pipeline and phase, however old it is (an idle pipeline's last
  batch may be weeks old);
* runs that are not the project's (another code location in the same instance) are not ours to
  delete.

The rule knows the tag names as plain strings so it stays free of Dagster; a unit test holds them
equal to ``defs/tags.py``.
"""

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from cdc_assets.domain import Phase
from cdc_assets.status.reconcile import RunState

TAG_PIPELINE = "cdc/pipeline"
TAG_PHASE = "cdc/phase"
TAG_CHECK_ONLY = "cdc/check_only"
TAG_LOCK_CONFLICT = "cdc/lock_conflict"
CDC_JOB_NAME = "cdc_stream_job"
OLD_CDC_JOB_NAME = "cdc_sync_job"  # one run per batch, before the stream: its runs age out too
FULL_LOAD_JOB_NAME = "full_load_job"
#: Jobs whose every run is the project's (UI Materialize runs of ``__ASSET_JOB`` count by tag).
PROJECT_JOBS = frozenset({CDC_JOB_NAME, OLD_CDC_JOB_NAME, FULL_LOAD_JOB_NAME})


class Verdict(enum.StrEnum):
    """What the retention job does with one run, and why it keeps it."""

    DELETE = "delete"
    KEEP_RECENT = "recent"
    KEEP_UNFINISHED = "unfinished"
    KEEP_NOT_OURS = "not ours"
    KEEP_REFERENCED = "referenced by a control row"
    KEEP_NEWEST = "newest finished run of its pipeline and phase"


@dataclass(frozen=True, slots=True)
class RunSummary:
    """What the rule needs to know about one Dagster run (built from its run record)."""

    run_id: str
    job_name: str
    state: RunState
    created_at: datetime
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_ours(self) -> bool:
        """A run this project launched: its jobs, a tagged UI Materialize, a check-only run."""
        return (
            self.job_name in PROJECT_JOBS
            or bool(self.tags.get(TAG_PIPELINE))
            or self.tags.get(TAG_CHECK_ONLY) == "true"
        )

    @property
    def phase_key(self) -> tuple[str, Phase] | None:
        """``(pipeline, phase)`` of a load or batch; ``None`` for a check-only or untagged run.

        Phase as ``defs/tags.py:phase_of`` decides it: the ``cdc/phase`` tag, else the job.
        """
        pipeline = self.tags.get(TAG_PIPELINE)
        if not pipeline or self.tags.get(TAG_CHECK_ONLY) == "true":
            return None
        tagged = self.tags.get(TAG_PHASE)
        if tagged in (Phase.FULL_LOAD.value, Phase.CDC.value):
            return pipeline, Phase(tagged)
        cdc = self.job_name in (CDC_JOB_NAME, OLD_CDC_JOB_NAME)
        return pipeline, Phase.CDC if cdc else Phase.FULL_LOAD


class RunRefs(Protocol):
    """The run columns of a control row (``control.rows.PipelineRow`` has them)."""

    @property
    def full_load_run_id(self) -> str | None:
        """The run of the row's current full load."""

    @property
    def cdc_run_id(self) -> str | None:
        """The run of the row's latest CDC status."""

    @property
    def last_run_id(self) -> str | None:
        """The run that wrote the row last."""


def referenced_run_ids(rows: Iterable[RunRefs]) -> frozenset[str]:
    """Every run id a control row points to: the reconciler reads these runs."""
    return frozenset(
        run_id
        for r in rows
        for run_id in (r.full_load_run_id, r.cdc_run_id, r.last_run_id)
        if run_id
    )


def retention_cutoff(now: datetime, days: int) -> datetime | None:
    """Runs created before this may go; ``None`` when ``days`` is 0 (keep for ever)."""
    return None if days <= 0 else now - timedelta(days=days)


def newest_finished(newest_first: Iterable[RunSummary]) -> str | None:
    """The newest finished run of one (pipeline, phase), lock-conflict losers stepped over.

    A loser never touched the row, so the backoff and the reconciler skip it too; keeping only
    a loser would leave them nothing.
    """
    for run in newest_first:
        if run.state.is_finished and run.tags.get(TAG_LOCK_CONFLICT) != "true":
            return run.run_id
    return None


def verdict(
    run: RunSummary,
    *,
    created_before: datetime,
    referenced: frozenset[str],
    newest: Mapping[tuple[str, Phase], str | None],
) -> Verdict:
    """Whether ``run`` may be deleted now; the first reason to keep it otherwise.

    ``newest`` maps each (pipeline, phase) to its newest finished run id; a key missing from it
    is treated as unknown and the run is kept, so the shell cannot delete a newest run by
    forgetting to look it up.
    """
    if not run.is_ours:
        return Verdict.KEEP_NOT_OURS
    if not run.state.is_finished:
        return Verdict.KEEP_UNFINISHED
    if run.created_at >= created_before:
        return Verdict.KEEP_RECENT
    if run.run_id in referenced:
        return Verdict.KEEP_REFERENCED
    key = run.phase_key
    if key is not None and (key not in newest or newest[key] in (None, run.run_id)):
        return Verdict.KEEP_NEWEST
    return Verdict.DELETE

"""Compare every row with Dagster's run records and repair drift (the reconciler's I/O shell).

Reads the recent runs of all pipelines in a few bucketed queries (latest runs per pipeline), asks
``status.reconcile.decide`` what to write, and writes through the repository as
``Writer.RECONCILER``. It covers what the run-status sensors cannot: daemon downtime, dropped
events, in-process runs (``cdc-assets run``) and runs deleted from the instance.
"""

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import dagster as dg
from dagster._core.storage.dagster_run import TagBucket

from cdc_assets.defs.run_status import apply_write, aware, run_fact, run_failure_message
from cdc_assets.defs.tags import TAG_PARTITION, TAG_PIPELINE
from cdc_assets.domain import Writer
from cdc_assets.status.reconcile import (
    PhaseFact,
    RowFact,
    RunFact,
    RunState,
    Write,
    decide,
)

if TYPE_CHECKING:
    from cdc_assets.control.repository import PipelineRepository, PipelineRow

RUNS_PER_PIPELINE = 6
"""Newest runs fetched per pipeline and tag: enough to step over lock-conflict losers."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """One write the reconciler asked for and whether the row changed."""

    write: Write
    changed: bool


def row_fact(row: "PipelineRow") -> RowFact:
    """The guard columns of a row, as the pure rules want them."""
    return RowFact(
        name=row.name,
        full_load=PhaseFact(
            status=row.full_load_status,
            run_id=row.full_load_run_id,
            run_created_at=row.full_load_run_created_at,
            authority=row.full_load_authority,
        ),
        cdc=PhaseFact(
            status=row.cdc_status,
            run_id=row.cdc_run_id,
            run_created_at=row.cdc_run_created_at,
            authority=row.cdc_authority,
        ),
        updated_at=row.updated_at,
        created_at=row.created_at,
    )


def recent_runs(instance: dg.DagsterInstance, names: Sequence[str]) -> dict[str, Any]:
    """Run records of the newest runs of each pipeline, by ``cdc/pipeline`` and partition tags."""
    records: dict[str, Any] = {}
    if not names:
        return records
    for tag in (TAG_PIPELINE, TAG_PARTITION):
        for record in instance.get_run_records(
            filters=dg.RunsFilter(tags={tag: list(names)}),
            bucket_by=TagBucket(
                tag_key=tag, tag_values=list(names), bucket_limit=RUNS_PER_PIPELINE
            ),
        ):
            records[record.dagster_run.run_id] = record
    return records


def referenced_runs(
    instance: dg.DagsterInstance, rows: Iterable["PipelineRow"], known: dict[str, Any]
) -> None:
    """Add the runs rows point to (their phase run ids) that the bucketed query did not return."""
    wanted = {
        run_id
        for row in rows
        for run_id in (row.full_load_run_id, row.cdc_run_id)
        if run_id and run_id not in known
    }
    if wanted:
        for record in instance.get_run_records(filters=dg.RunsFilter(run_ids=sorted(wanted))):
            known[record.dagster_run.run_id] = record


def plan(instance: dg.DagsterInstance, rows: Sequence["PipelineRow"]) -> list[Write]:
    """The writes that make ``rows`` equal to the run records (failure messages filled in)."""
    records = recent_runs(instance, [r.name for r in rows])
    referenced_runs(instance, rows, records)
    facts: dict[str, list[RunFact]] = {}
    for record in records.values():
        fact = run_fact(record)
        if fact is not None:
            facts.setdefault(fact.pipeline, []).append(fact)
    writes: list[Write] = []
    for row in rows:
        for write in decide(row_fact(row), facts.get(row.name, [])):
            writes.append(_with_failure_message(instance, write, records))
    return writes


def _with_failure_message(
    instance: dg.DagsterInstance, write: Write, records: dict[str, Any]
) -> Write:
    record = records.get(write.run_id)
    if record is None or record.dagster_run.status.value != RunState.FAILURE.value:
        return write
    message = run_failure_message(instance, write.run_id)
    return dataclasses.replace(write, error=message) if message else write


def reconcile(
    instance: dg.DagsterInstance,
    repo: "PipelineRepository",
    names: Iterable[str] | None = None,
) -> list[Outcome]:
    """Reconcile all pipelines (or ``names``) once; returns each write and whether it changed."""
    rows = repo.list()
    if names is not None:
        wanted = set(names)
        rows = [r for r in rows if r.name in wanted]
    return [
        Outcome(write, apply_write(repo, write, Writer.RECONCILER))
        for write in plan(instance, rows)
    ]


__all__ = ["Outcome", "aware", "plan", "reconcile", "row_fact"]

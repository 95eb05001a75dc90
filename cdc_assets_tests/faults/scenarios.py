"""Scenario machinery: a CDC pipeline under a source workload, a place to hold it mid-flight, and
the recovery an operator (or the daemon) performs.

A run is held mid-flight with a table lock rather than timing: the full load waits for an ACCESS
EXCLUSIVE lock on the source table, a CDC batch for one on the target table. The fault is injected
while the run provably waits inside the engine (``pg_stat_activity`` shows it), then the lock is
released.
"""

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import dagster as dg
import psutil
import psycopg
from psycopg import sql

from cdc_assets import cli
from cdc_assets.control.repository import PipelineRepository
from cdc_assets.defs.tags import TAG_LOCK_CONFLICT, TAG_PIPELINE
from cdc_assets.domain import Mode, Phase
from cdc_assets_tests.e2e.pipelines import make_source, spec
from cdc_assets_tests.faults.checks import TERMINAL
from cdc_assets_tests.support import wait_until

ACTIVE = {"NOT_STARTED", "QUEUED", "STARTING", "STARTED", "CANCELING"}


@dataclass
class Case:
    """One pipeline between two fresh databases of the test server."""

    name: str
    source: str
    target: str

    @property
    def spec(self):  # type: ignore[no-untyped-def]
        return spec(self.name, self.source, self.target, mode=Mode.FULL_LOAD_AND_CDC)


def new_case(new_db, prefix: str, rows: int = 400) -> Case:  # type: ignore[no-untyped-def]
    src, dst = new_db("src"), new_db("dst")
    make_source(src, rows=rows)
    return Case(f"{prefix}_{uuid.uuid4().hex[:6]}", src, dst)


@contextmanager
def locked(url: str, table: str = "orders") -> Iterator[None]:
    """Hold ACCESS EXCLUSIVE on ``public.<table>`` for the block."""
    with psycopg.connect(url) as conn:
        conn.execute(
            sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(
                sql.Identifier("public", table)
            )
        )
        yield
        conn.rollback()


def engine_waiting(url: str, pipeline: str) -> bool:
    """True once a session of the pipeline's run waits for a lock in ``url``'s database."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND application_name = %s",
            (f"cdc_assets:{pipeline}",),
        ).fetchone()
    return bool(row and row[0])


def runs(
    instance: dg.DagsterInstance, name: str, phase: Phase | None = None
) -> list[dg.DagsterRun]:
    """The pipeline's runs, newest first, lock-conflict losers left out."""
    out = []
    for record in instance.get_run_records(dg.RunsFilter(tags={TAG_PIPELINE: name})):
        run = record.dagster_run
        if run.tags.get(TAG_LOCK_CONFLICT) == "true":
            continue
        if phase is not None and run.tags.get("cdc/phase") != phase.value:
            continue
        out.append(run)
    return out


def active_run(instance: dg.DagsterInstance, name: str, phase: Phase) -> str | None:
    found = [r for r in runs(instance, name, phase) if r.status.value in ACTIVE]
    return found[0].run_id if found else None


def started_run(instance: dg.DagsterInstance, name: str, phase: Phase) -> str | None:
    """The pipeline's running run: the coordinator lets one start; a second may wait QUEUED."""
    found = [r for r in runs(instance, name, phase) if r.status.value == "STARTED"]
    return found[0].run_id if found else None


def wait_run_end(instance: dg.DagsterInstance, run_id: str, timeout: float = 90) -> str:
    def ended() -> str | None:
        run = instance.get_run_by_id(run_id)
        return run.status.value if run and run.status.value in TERMINAL else None

    return wait_until(ended, timeout=timeout, describe=f"run {run_id} to end", interval=0.3)


def wait_quiet(instance: dg.DagsterInstance, name: str, timeout: float = 90) -> None:
    """No run of the pipeline queued or running (the sensors have nothing left to do)."""
    wait_until(
        lambda: not any(r.status.value in ACTIVE for r in runs(instance, name)),
        timeout=timeout,
        describe=f"{name}: no active run",
        interval=0.5,
    )


def run_worker(instance: dg.DagsterInstance, run_id: str) -> psutil.Process | None:
    """The run worker process, from the engine event that names its pid."""
    import re

    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        match = re.search(r"Executing steps in process \(pid: (\d+)\)", entry.message or "")
        if match:
            return psutil.Process(int(match.group(1)))
    return None


def cli_ok(control_url: str, *args: str) -> None:
    """Run the operator command in-process; it must exit 0."""
    code = cli.main(["--control-db-url", control_url, *args])
    assert code == 0, f"cdc-assets {' '.join(args)} exited {code}"


def ensure_removed(control: PipelineRepository, control_url: str, name: str) -> None:
    """``pipeline remove`` (drops slot + publication) if the row still exists."""
    if any(r.name == name for r in control.list()):
        cli_ok(control_url, "pipeline", "remove", name)

"""Sensors: run-status writers, the reconciler, and the launcher of full loads.

CDC's stream runs have their own sensor, the supervisor (``defs/supervisor.py``).

Run-status sensors (one per status, names fixed: a rename resets their cursors) write the row from
the run record as ``Writer.SENSOR``. They return ``None``: returning anything ends the tick after
one run. Their bodies never raise: a raising body loses that run for good (the cursor still
moves); the reconciler repairs whatever they miss.
"""

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import dagster as dg

from cdc_assets.defs.active import active_pipelines
from cdc_assets.defs.catalog import Catalog, PipelineAssets, catalog_from_rows
from cdc_assets.defs.check_specs import row_count_keys
from cdc_assets.defs.reconciler import reconcile
from cdc_assets.defs.resources import ControlDb
from cdc_assets.defs.run_status import apply_write, error_text, run_fact, run_failure_message
from cdc_assets.defs.tags import (
    FULL_LOAD_JOB_NAME,
    launch_tags,
)
from cdc_assets.domain import FullLoadStatus, Phase, Writer
from cdc_assets.settings import Settings
from cdc_assets.status.reconcile import RunState, write_for_run

if TYPE_CHECKING:
    from cdc_assets.control.repository import PipelineRepository, PipelineRow


def record_run_event(
    instance: dg.DagsterInstance, control: ControlDb, run_id: str, log: Any
) -> bool:
    """Write the row from the run's *current* record (not the event's status).

    A STARTED event processed after SUCCESS then writes COMPLETED again (a no-op) instead of
    moving the row backwards; lock-conflict runs and runs of no pipeline are ignored.
    """
    try:
        record = instance.get_run_record_by_id(run_id)
        fact = run_fact(record) if record is not None else None
        if fact is None:
            return False
        if fact.state is RunState.FAILURE:
            fact = type(fact)(**{**_fields(fact), "error": run_failure_message(instance, run_id)})
        write = write_for_run(fact)
        if write is None:
            return False
        changed = apply_write(control.repository(), write, Writer.SENSOR)
        log.info(
            f"{fact.pipeline}: run {run_id} {fact.state.value} -> {write.status} "
            f"(changed={changed})"
        )
        return changed
    except Exception as exc:  # a raising body drops this run for good; the reconciler repairs
        log.error(f"could not record run {run_id}: {error_text(exc)}")
        return False


def _fields(fact: Any) -> dict[str, Any]:
    return {name: getattr(fact, name) for name in fact.__slots__}


def _run_status_sensor(status: dg.DagsterRunStatus, name: str, interval: int) -> Any:
    @dg.run_status_sensor(
        run_status=status,
        name=name,
        minimum_interval_seconds=interval,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Writes public.pipelines when a run reaches {status.value}.",
    )
    def _sensor(context: dg.RunStatusSensorContext, control: ControlDb) -> None:
        record_run_event(context.instance, control, context.dagster_run.run_id, context.log)

    return _sensor


def run_status_sensors(settings: Settings) -> list[Any]:
    """STARTED, SUCCESS, FAILURE and CANCELED writers over every job of this code location."""
    interval = settings.sensor_interval_s
    return [
        _run_status_sensor(dg.DagsterRunStatus.STARTED, "pipeline_run_started_sensor", interval),
        _run_status_sensor(dg.DagsterRunStatus.SUCCESS, "pipeline_run_success_sensor", interval),
        _run_status_sensor(dg.DagsterRunStatus.FAILURE, "pipeline_run_failure_sensor", interval),
        _run_status_sensor(dg.DagsterRunStatus.CANCELED, "pipeline_run_canceled_sensor", interval),
    ]


def reconcile_sensor(settings: Settings) -> Any:
    """``reconcile_pipelines_sensor``: the periodic repair of drift between rows and runs."""

    @dg.sensor(
        name="reconcile_pipelines_sensor",
        minimum_interval_seconds=settings.reconcile_interval_s,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Compares public.pipelines with Dagster's run records and repairs drift.",
    )
    def reconcile_pipelines_sensor(
        context: dg.SensorEvaluationContext, control: ControlDb
    ) -> dg.SkipReason:
        outcomes = reconcile(context.instance, control.repository())
        changed = [o for o in outcomes if o.changed]
        for o in changed:
            context.log.info(
                f"{o.write.pipeline}: {o.write.phase} -> {o.write.status} (run {o.write.run_id})"
            )
        return dg.SkipReason(f"reconciled: {len(changed)} row(s) repaired")

    return reconcile_pipelines_sensor


def _stamp(ts: datetime) -> str:
    return f"{ts.timestamp():.6f}"


def launch_full_load_requests(
    instance: dg.DagsterInstance,
    rows: Sequence["PipelineRow"],
    settings: Settings,
    catalog: Catalog,
    *,
    log: Any = None,
    repo: "PipelineRepository | None" = None,
) -> dg.SensorResult:
    """A first full load for each new enabled row whose table assets are loaded.

    A new row no assets can be built for (``catalog_from_rows`` problems) is set ``FAILED`` with
    the reason (:func:`refuse_unbuildable`) when ``repo`` is given, as the sensor gives it.

    The run selects the row's table assets in the shared ``full_load_job``. A row the loaded
    definitions do not know yet (added since the code location loaded) waits for the
    definitions sync to reload it: its assets must exist before a run can materialize them.

    The run key includes the row's id and last change, so a ``pipeline reset`` (which moves
    ``updated_at``) gets a new run while repeated ticks over an unchanged row launch once.
    """
    loaded = {p.name: p for p in catalog.pipelines}
    candidates = [r for r in rows if r.enabled and r.full_load_status is FullLoadStatus.NOT_STARTED]
    if repo is not None:
        refused = set(refuse_unbuildable(repo, rows, candidates, log))
        candidates = [r for r in candidates if r.name not in refused]
    waiting = [r.name for r in candidates if r.name not in loaded]
    if waiting and log is not None:
        log.info(f"waiting for the code location to load the assets of: {', '.join(waiting)}")
    ready = [r for r in candidates if r.name in loaded]
    busy = active_pipelines(instance, [r.name for r in ready])
    requests = [
        full_load_request(
            loaded[r.name], settings, f"full_load:{r.name}:{r.id}:{_stamp(r.updated_at)}"
        )
        for r in ready
        if r.name not in busy
    ]
    return dg.SensorResult(run_requests=requests)


def refuse_unbuildable(
    repo: "PipelineRepository",
    rows: Sequence["PipelineRow"],
    candidates: Sequence["PipelineRow"],
    log: Any,
) -> list[str]:
    """``FAILED`` with the reason for new rows no assets can be built for; returns their names.

    Such a row would otherwise wait for its assets forever with nothing in ``last_error``. The
    same rules as the code location's (``catalog_from_rows``), applied to the rows as they are
    now. Never raises: one row must not stop the launches of the others.
    """
    problems = catalog_from_rows(rows).problems
    refused = []
    for row in candidates:
        reason = problems.get(row.name)
        if reason is None:
            continue
        try:
            if repo.refuse_load(
                row.name,
                reason=f"pipeline {row.name!r}: {reason}; fix the row, then run "
                f"`cdc-assets pipeline reset {row.name}`",
                writer=Writer.SENSOR,
            ):
                refused.append(row.name)
        except Exception as exc:
            if log is not None:
                log.warning(f"{row.name}: cannot record why it has no assets: {error_text(exc)}")
    return refused


def full_load_request(p: PipelineAssets, settings: Settings, run_key: str) -> dg.RunRequest:
    """A full load of ``p`` in ``full_load_job``: every one of its target tables.

    Launched with only the ``row_counts_match`` checks (``row_count_keys``): a load measures
    no lag, CDC batches do.
    """
    return dg.RunRequest(
        run_key=run_key,
        job_name=FULL_LOAD_JOB_NAME,
        asset_selection=[dg.AssetKey(list(k)) for k in p.target_keys()],
        asset_check_keys=row_count_keys(p),
        tags=launch_tags(p.name, Phase.FULL_LOAD, settings),
    )


def launch_sensor(settings: Settings, catalog: Catalog) -> Any:
    """``launch_full_loads_sensor``: new enabled rows get their first full load."""

    @dg.sensor(
        name="launch_full_loads_sensor",
        job_name=FULL_LOAD_JOB_NAME,
        minimum_interval_seconds=settings.sensor_interval_s,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Launches the first full load of every new enabled pipeline row.",
    )
    def launch_full_loads_sensor(
        context: dg.SensorEvaluationContext, control: ControlDb
    ) -> dg.SensorResult:
        repo = control.repository()
        return launch_full_load_requests(
            context.instance, repo.list(), Settings.from_env(), catalog, log=context.log, repo=repo
        )

    return launch_full_loads_sensor

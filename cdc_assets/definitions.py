"""The code location: ``defs = build_defs()``, loaded by ``workspace.yaml``.

``build_defs`` reads the pipelines of ``public.pipelines`` once (``defs/catalog.py``: from the
control database in a code server, from the run's reconstruction metadata in a run worker, from the
last good catalog if the database cannot be read) and builds one asset per target table: per
pipeline a full-load multi-asset with its source tables upstream and every table's checks. A row
added, edited or removed later reaches the UI when the location reloads, which the
``definitions_sync_sensor`` requests. It also reads the ``CDC_*`` intervals from the environment
because Dagster fixes a sensor's interval when the definitions load.
"""

import os
import warnings

import dagster as dg

from cdc_assets.settings import CONTROL_DB_URL_VAR, Settings

OWNERS_BETA_WARNING = (
    r"Parameter `owners` of initializer `SensorDefinition\.__init__` is currently in beta"
)


def build_defs(settings: Settings | None = None, catalog: "object | None" = None) -> dg.Definitions:
    """Assemble assets, checks, jobs, sensors, schedules and resources for the code location."""
    from cdc_assets.defs.catalog import Catalog, load_catalog
    from cdc_assets.defs.checks import idle_lag_sensor
    from cdc_assets.defs.full_load import full_load_asset, source_specs
    from cdc_assets.defs.jobs import cdc_stream_job, full_load_job
    from cdc_assets.defs.resources import ControlDb, PostgresConnections
    from cdc_assets.defs.retention import prune_runs_job, run_retention_schedule
    from cdc_assets.defs.schedules import full_load_refresh_schedule
    from cdc_assets.defs.sensors import (
        launch_sensor,
        reconcile_sensor,
        run_status_sensors,
    )
    from cdc_assets.defs.supervisor import supervisor_sensor
    from cdc_assets.defs.sync import definitions_sync_sensor
    from cdc_assets.defs.tags import register_owners

    settings = settings or Settings.from_env()
    if not isinstance(catalog, Catalog):
        catalog = load_catalog(os.environ.get(CONTROL_DB_URL_VAR, "").strip() or None)
    register_owners(catalog.owner_of())
    control = ControlDb(url=dg.EnvVar(CONTROL_DB_URL_VAR))
    assets: list[dg.AssetsDefinition | dg.AssetSpec] = []
    for p in catalog.pipelines:
        assets.extend(source_specs(p))
        assets.append(full_load_asset(p))
    defs = dg.Definitions(
        assets=assets,
        jobs=[full_load_job(catalog), cdc_stream_job, prune_runs_job],
        sensors=[
            *run_status_sensors(settings),
            reconcile_sensor(settings),
            launch_sensor(settings, catalog),
            supervisor_sensor(settings),
            idle_lag_sensor(settings, catalog),
            definitions_sync_sensor(settings, catalog),
        ],
        schedules=[full_load_refresh_schedule(catalog), run_retention_schedule],
        # Every job, also the hidden __ASSET_JOB behind the UI's Materialize, runs in the run
        # worker itself: no step subprocess that could outlive a killed worker and fire a late hook.
        executor=dg.in_process_executor,
        resources={
            "control": control,
            "connections": PostgresConnections(control=control),
        },
        metadata={
            "cdc/catalog_fingerprint": catalog.fingerprint(),
            "cdc/catalog_origin": catalog.origin,
            "cdc/pipelines": len(catalog.pipelines),
            **({"cdc/catalog_warning": catalog.warning} if catalog.warning else {}),
            **(
                {
                    "cdc/pipelines_left_out": "\n".join(
                        f"{k}: {v}" for k, v in catalog.problems.items()
                    )
                }
                if catalog.problems
                else {}
            ),
        },
    )
    # Resolve now (Dagster caches it) with one warning silenced: resolving re-creates every
    # sensor that targets a job and passes its `owners` on, which Dagster 1.13 flags as a beta
    # parameter although no sensor here sets owners; once per sensor in every process and test.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=OWNERS_BETA_WARNING, category=dg.BetaWarning)
        defs.get_repository_def()
    return defs


defs = build_defs()

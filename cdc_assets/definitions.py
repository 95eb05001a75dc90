"""The code location: ``defs = build_defs()``, loaded by ``workspace.yaml``.

``build_defs`` does no I/O: the control database URL is an ``EnvVar`` resolved by Dagster when a
resource is built, and new pipelines arrive as dynamic partitions at run time. It reads the
``CDC_*`` intervals from the environment because Dagster fixes a sensor's interval when the
definitions load; nothing else happens at import.
"""

import warnings

import dagster as dg

from cdc_assets.settings import CONTROL_DB_URL_VAR, Settings

OWNERS_BETA_WARNING = (
    r"Parameter `owners` of initializer `SensorDefinition\.__init__` is currently in beta"
)


def build_defs(settings: Settings | None = None) -> dg.Definitions:
    """Assemble assets, jobs, sensors, schedules and resources for the code location."""
    from cdc_assets.defs.checks import idle_lag_sensor, lag_check, row_counts_check
    from cdc_assets.defs.full_load import target_tables
    from cdc_assets.defs.jobs import cdc_sync_job, full_load_job
    from cdc_assets.defs.resources import ControlDb, PostgresConnections
    from cdc_assets.defs.schedules import cdc_sync_schedule, full_load_refresh_schedule
    from cdc_assets.defs.sensors import (
        cdc_sensor,
        launch_sensor,
        reconcile_sensor,
        run_status_sensors,
    )

    settings = settings or Settings.from_env()
    control = ControlDb(url=dg.EnvVar(CONTROL_DB_URL_VAR))
    defs = dg.Definitions(
        assets=[target_tables],
        asset_checks=[lag_check(settings), row_counts_check()],
        jobs=[full_load_job, cdc_sync_job],
        sensors=[
            *run_status_sensors(settings),
            reconcile_sensor(settings),
            launch_sensor(settings),
            cdc_sensor(settings),
            idle_lag_sensor(settings),
        ],
        schedules=[full_load_refresh_schedule, cdc_sync_schedule],
        # Every job, also the hidden __ASSET_JOB behind the UI's Materialize, runs in the run
        # worker itself: no step subprocess that could outlive a killed worker and fire a late hook.
        executor=dg.in_process_executor,
        resources={
            "control": control,
            "connections": PostgresConnections(control=control),
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

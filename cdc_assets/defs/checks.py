"""Declared asset checks of ``target_tables`` that are evaluated outside the full load.

``cdc_lag``: each CDC batch reports one evaluation per pipeline (metadata ``pipeline``); running
the check by hand evaluates every CDC pipeline's last recorded lag and reports the worst.
"""

import dagster as dg

from cdc_assets.defs.cdc import LAG_CHECK
from cdc_assets.defs.full_load import TARGET_TABLES
from cdc_assets.defs.resources import ControlDb
from cdc_assets.domain import Mode
from cdc_assets.settings import Settings


@dg.asset_check(
    asset=TARGET_TABLES,
    name=LAG_CHECK,
    description="CDC lag (source WAL not yet applied): WARN above CDC_LAG_WARN_BYTES, ERROR above "
    "CDC_LAG_FAIL_BYTES.",
)
def cdc_lag_check(control: ControlDb) -> dg.AssetCheckResult:
    """Worst recorded ``cdc_lag_bytes`` over enabled CDC pipelines."""
    settings = Settings.from_env()
    lags = {
        r.name: r.cdc_lag_bytes or 0
        for r in control.repository().list()
        if r.enabled and r.mode is Mode.FULL_LOAD_AND_CDC
    }
    worst = max(lags.values(), default=0)
    return dg.AssetCheckResult(
        passed=worst <= settings.lag_warn_bytes,
        severity=(
            dg.AssetCheckSeverity.ERROR
            if worst > settings.lag_fail_bytes
            else dg.AssetCheckSeverity.WARN
        ),
        metadata={"cdc/lag_bytes_max": worst, **{f"{k}/lag_bytes": v for k, v in lags.items()}},
    )

"""The two checks every table asset carries, as specs: names, keys and one-line descriptions.

Both are declared on the pipeline's full-load multi-asset (``defs/full_load.py``), so a pipeline
is one op in the code location whatever it checks: a separate multi-asset check per pipeline
cost a third of the definitions' load time at a thousand pipelines (docs/benchmarks.md). The
descriptions are one line each because the snapshot carries them once per table; the README's
"Asset checks" section says in full what each compares.
"""

import dagster as dg

from cdc_assets.defs.catalog import PipelineAssets

ROW_COUNTS_CHECK = "row_counts_match"
LAG_CHECK = "cdc_lag"

ROW_COUNTS_DESCRIPTION = (
    "The table holds exactly the rows its full load copied (COPY tags in the load's run; later: "
    "its last load, or the source once CDC is caught up). ERROR only on a real difference."
)
LAG_DESCRIPTION = (
    "Source WAL not yet applied by the pipeline's slot: WARN above CDC_LAG_WARN_BYTES, ERROR "
    "above CDC_LAG_FAIL_BYTES."
)


def _key(parts: tuple[str, ...]) -> dg.AssetKey:
    return dg.AssetKey(list(parts))


def row_count_keys(p: PipelineAssets) -> list[dg.AssetCheckKey]:
    """The ``row_counts_match`` check of every table of ``p``."""
    return [dg.AssetCheckKey(_key(k), ROW_COUNTS_CHECK) for k in p.target_keys()]


def lag_keys(p: PipelineAssets) -> list[dg.AssetCheckKey]:
    """The ``cdc_lag`` check of every table of ``p`` (none for a ``full_load`` pipeline)."""
    if not p.wants_cdc:
        return []
    return [dg.AssetCheckKey(_key(k), LAG_CHECK) for k in p.target_keys()]


def check_specs(p: PipelineAssets) -> list[dg.AssetCheckSpec]:
    """Every check spec of ``p``'s tables."""
    specs = [
        dg.AssetCheckSpec(name=k.name, asset=k.asset_key, description=ROW_COUNTS_DESCRIPTION)
        for k in row_count_keys(p)
    ]
    specs += [
        dg.AssetCheckSpec(name=k.name, asset=k.asset_key, description=LAG_DESCRIPTION)
        for k in lag_keys(p)
    ]
    return specs

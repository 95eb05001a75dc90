"""Asset checks in the real deployment (webserver + daemon, dagster-postgres storage).

The lag of a disabled CDC pipeline keeps being evaluated: ``cdc_lag_idle_sensor`` launches a
check-only run of its partition, the daemon runs it, and no status writer takes that run for a
load of the pipeline.
"""

import uuid

import dagster as dg
import pytest

from cdc_assets.defs.checks import LAG_KEY
from cdc_assets.defs.tags import TAG_CHECK_ONLY
from cdc_assets.domain import CdcStatus, FullLoadStatus, Mode
from cdc_assets_tests.e2e.pipelines import make_source, spec
from cdc_assets_tests.support import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_lag_of_a_disabled_pipeline_is_still_evaluated(
    stack, dagster_instance, control, new_db
) -> None:
    src, dst = new_db("src"), new_db("dst")
    make_source(src, rows=10)
    name = f"idle_{uuid.uuid4().hex[:8]}"
    control.add(spec(name, src, dst, mode=Mode.FULL_LOAD_AND_CDC))
    wait_until(
        lambda: control.get(name).cdc_status is CdcStatus.ACTIVE,
        timeout=120,
        describe="the full load and the first batch",
    )
    control.set_enabled(name, False)
    loaded = control.get(name)

    def check_only_evaluation() -> dg.AssetCheckEvaluation | None:
        for record in dagster_instance.event_log_storage.get_asset_check_execution_history(
            LAG_KEY, limit=50
        ):
            if record.partition != name or record.event is None:
                continue
            run = dagster_instance.get_run_by_id(record.run_id)
            if run is not None and run.tags.get(TAG_CHECK_ONLY) == "true":
                # A launched run records what it executes: only the check, no asset.
                assert (run.asset_selection, run.asset_check_selection) == (
                    frozenset(),
                    frozenset({LAG_KEY}),
                )
                data = record.event.dagster_event.event_specific_data
                assert isinstance(data, dg.AssetCheckEvaluation)
                return data
        return None

    # The sensor ticks every CDC_IDLE_LAG_INTERVAL_S (60 s in the test stack); the first tick
    # after disabling launches the check run.
    evaluation = wait_until(check_only_evaluation, timeout=150, describe="an idle-lag check run")
    assert evaluation.partition == name and evaluation.metadata["pipeline"].value == name
    assert evaluation.metadata["cdc/lag_bytes"].value >= 0
    assert evaluation.description and "CDC_LAG_WARN_BYTES" in evaluation.description
    # The run-status sensors and the reconciler saw that run finish: it is no load of the row.
    row = control.get(name)
    assert (row.full_load_status, row.full_load_run_id) == (
        FullLoadStatus.COMPLETED,
        loaded.full_load_run_id,
    )
    assert row.cdc_run_id == loaded.cdc_run_id

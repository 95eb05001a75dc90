"""CDC orchestration rules without I/O: the lag verdict, lag settings, CDC run -> row status."""

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from cdc_assets.defs.catalog import PipelineAssets
from cdc_assets.defs.check_specs import LAG_CHECK
from cdc_assets.defs.checks import lag_results_for
from cdc_assets.defs.tags import TAG_CHECK_ONLY, TAG_PIPELINE, pipeline_of_run, register_owners
from cdc_assets.domain import CdcStatus, FullLoadStatus, Mode, Phase, TableRef, Writer
from cdc_assets.settings import SettingError, Settings
from cdc_assets.status.reconcile import PhaseFact, RowFact, RunFact, RunState, decide, write_for_run

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SHOP = PipelineAssets(
    name="shop",
    mode=Mode.FULL_LOAD_AND_CDC,
    target_schema="public",
    prefix=("shop",),
    tables=(TableRef("public", "orders"), TableRef("sales", "items")),
)
ORDERS = dg.AssetKey(["shop", "orders"])
ITEMS = dg.AssetKey(["shop", "items"])
OTHER = dg.AssetKey(["crm", "people"])
LAG_KEY = dg.AssetCheckKey(ORDERS, LAG_CHECK)
LIMITS = Settings(lag_warn_bytes=100, lag_fail_bytes=1000)


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("lag", "passed", "severity"),
    [
        (0, True, None),
        (100, True, None),  # at the warn threshold: still fine
        (101, False, dg.AssetCheckSeverity.WARN),
        (1000, False, dg.AssetCheckSeverity.WARN),  # at the fail threshold: a warning
        (1001, False, dg.AssetCheckSeverity.ERROR),
    ],
)
def test_lag_verdict_against_thresholds(lag: int, passed: bool, severity: object) -> None:
    evaluations = lag_results_for(SHOP, lag, LIMITS)
    # One result per table of the pipeline, each under its own asset.
    assert [(e.asset_key, e.check_name) for e in evaluations] == [
        (ORDERS, LAG_CHECK),
        (ITEMS, LAG_CHECK),
    ]
    for evaluation in evaluations:
        assert evaluation.passed is passed
        if severity is not None:
            assert evaluation.severity is severity
        assert evaluation.metadata["cdc/pipeline"].value == "shop"
        assert evaluation.metadata["cdc/lag_bytes"].value == lag
        # Constant thresholds in the text, not plotted as metadata.
        assert set(evaluation.metadata) == {"cdc/pipeline", "cdc/lag_bytes"}
        assert evaluation.description is not None
        assert "WARN above 100" in evaluation.description
        assert "ERROR above 1000" in evaluation.description


@pytest.mark.parametrize(
    ("assets", "checks", "tags", "pipeline"),
    [
        # "Execute check" in the UI: the run records a selection of checks only.
        (frozenset(), frozenset({LAG_KEY}), {}, None),
        # The idle-lag sensor's runs say so in a tag too (in-process runs record no selection).
        (None, None, {TAG_CHECK_ONLY: "true", "cdc/check_of": "shop"}, None),
        # Materialize in the UI: the run carries only its selection, mapped to its pipeline.
        (frozenset({ORDERS}), frozenset({LAG_KEY}), {}, "shop"),
        (frozenset({ORDERS, ITEMS}), None, {}, "shop"),
        # Tables of two pipelines in one run: no single pipeline (the op refuses it).
        (frozenset({ORDERS, OTHER}), None, {}, None),
        # full_load_job / cdc_sync_job launches carry the tag.
        (None, None, {TAG_PIPELINE: "shop"}, "shop"),
        (None, None, {}, None),
    ],
)
def test_which_runs_are_pipeline_runs(
    assets: frozenset[dg.AssetKey] | None,
    checks: frozenset[dg.AssetCheckKey] | None,
    tags: dict[str, str],
    pipeline: str | None,
) -> None:
    register_owners(
        {("shop", "orders"): "shop", ("shop", "items"): "shop", ("crm", "people"): "crm"}
    )
    run = dg.DagsterRun(
        job_name="__ASSET_JOB",
        tags=tags,
        asset_selection=assets,
        asset_check_selection=checks,
    )
    assert pipeline_of_run(run) == pipeline


def test_lag_thresholds_come_from_the_environment() -> None:
    s = Settings.from_env({"CDC_LAG_WARN_BYTES": "10", "CDC_LAG_FAIL_BYTES": "20"})
    assert (s.lag_warn_bytes, s.lag_fail_bytes) == (10, 20)
    defaults = Settings.from_env({})
    assert (defaults.lag_warn_bytes, defaults.lag_fail_bytes) == (64 * 1024**2, 1024**3)
    with pytest.raises(SettingError, match="CDC_LAG_FAIL_BYTES"):
        Settings.from_env({"CDC_LAG_FAIL_BYTES": "lots"})
    with pytest.raises(SettingError, match="CDC_LAG_WARN_BYTES"):
        Settings.from_env({"CDC_LAG_WARN_BYTES": "-1"})


def cdc_run(run_id: str, state: RunState, created: int, **kw: object) -> RunFact:
    return RunFact(
        run_id=run_id,
        pipeline="p",
        phase=Phase.CDC,
        state=state,
        created_at=at(created),
        **kw,  # type: ignore[arg-type]
    )


def test_canceled_cdc_run_is_failed_canceled_with_the_run_and_time() -> None:
    write = write_for_run(cdc_run("c9", RunState.CANCELED, 10, ended_at=at(20)))
    assert write is not None
    assert (write.phase, write.status) == (Phase.CDC, CdcStatus.FAILED)
    assert write.error is not None and write.error.startswith("canceled: run c9")
    assert at(20).isoformat(timespec="seconds") in write.error


@pytest.mark.parametrize(
    "state", [RunState.QUEUED, RunState.STARTING, RunState.STARTED, RunState.CANCELING]
)
def test_cdc_has_no_in_progress_status(state: RunState) -> None:
    """A running batch leaves ``cdc_status`` alone, so a late STARTED can never undo ACTIVE."""
    assert write_for_run(cdc_run("c1", state, 10)) is None


def test_lock_loser_cdc_run_writes_nothing() -> None:
    assert write_for_run(cdc_run("c1", RunState.FAILURE, 10, lock_conflict=True)) is None


def loaded_row(*, updated: int, created: int | None) -> RowFact:
    return RowFact(
        name="p",
        full_load=PhaseFact(FullLoadStatus.COMPLETED, "f1", at(1), Writer.SENSOR),
        cdc=PhaseFact(CdcStatus.NOT_STARTED, None, None, None),
        updated_at=at(updated),
        created_at=at(created) if created is not None else None,
    )


def test_first_batch_is_reconciled_though_the_row_changed_after_it_was_created() -> None:
    """The full load's sensor takes authority (row changes at 15) after the first batch was
    created (10): that batch is still the row's, and its failure must reach ``cdc_status``."""
    runs = [
        RunFact("f1", "p", Phase.FULL_LOAD, RunState.SUCCESS, at(1)),
        cdc_run("c1", RunState.FAILURE, 10, error="pipeline 'p': slot missing"),
    ]
    writes = decide(loaded_row(updated=15, created=0), runs)
    assert [(w.phase, w.status, w.run_id, w.error) for w in writes] == [
        (Phase.CDC, CdcStatus.FAILED, "c1", "pipeline 'p': slot missing")
    ]


def test_runs_from_before_the_row_existed_are_a_namesakes() -> None:
    """A pipeline removed and added again under the same name does not inherit old runs."""
    old = [cdc_run("c0", RunState.FAILURE, 5, error="old")]
    assert decide(loaded_row(updated=15, created=8), old) == []

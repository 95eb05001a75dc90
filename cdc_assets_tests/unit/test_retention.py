"""status/retention.py: which of the project's old runs the retention job may delete; pure."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from cdc_assets.defs import tags
from cdc_assets.domain import Phase
from cdc_assets.settings import SettingError, Settings
from cdc_assets.status import retention
from cdc_assets.status.reconcile import RunState
from cdc_assets.status.retention import (
    RunSummary,
    Verdict,
    newest_finished,
    referenced_run_ids,
    retention_cutoff,
    verdict,
)

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 1, 4, 0, tzinfo=UTC)
CUTOFF = NOW - timedelta(days=14)
OLD = CUTOFF - timedelta(days=1)
CDC_KEY = ("orders", Phase.CDC)


def cdc_run(run_id: str, state: RunState = RunState.SUCCESS, **extra: str) -> RunSummary:
    return RunSummary(
        run_id,
        "cdc_sync_job",
        state,
        OLD,
        {"cdc/pipeline": "orders", "cdc/phase": "cdc", **extra},
    )


def decide(
    run: RunSummary, *, referenced: frozenset[str] = frozenset(), newest_id: str = "new"
) -> Verdict:
    return verdict(
        run,
        created_before=CUTOFF,
        referenced=referenced,
        newest={CDC_KEY: newest_id, ("orders", Phase.FULL_LOAD): newest_id},
    )


def test_an_old_finished_cdc_batch_that_nothing_needs_is_deleted() -> None:
    for state in (RunState.SUCCESS, RunState.FAILURE, RunState.CANCELED):
        assert decide(cdc_run("r1", state)) is Verdict.DELETE


@pytest.mark.parametrize(
    "state", [RunState.QUEUED, RunState.STARTING, RunState.STARTED, RunState.CANCELING]
)
def test_a_run_that_has_not_finished_is_kept(state: RunState) -> None:
    assert decide(cdc_run("r1", state)) is Verdict.KEEP_UNFINISHED


def test_a_run_created_at_or_after_the_cutoff_is_kept() -> None:
    run = cdc_run("r1")
    recent = RunSummary(run.run_id, run.job_name, run.state, CUTOFF, run.tags)
    assert decide(recent) is Verdict.KEEP_RECENT


@pytest.mark.parametrize("column", ["full_load_run_id", "cdc_run_id", "last_run_id"])
def test_a_run_any_control_row_points_to_is_kept(column: str) -> None:
    @dataclass(frozen=True)
    class Row:
        full_load_run_id: str | None = None
        cdc_run_id: str | None = None
        last_run_id: str | None = None

    rows = [Row(), Row(**{column: "r1"})]
    referenced = referenced_run_ids(rows)
    assert referenced == {"r1"}
    assert decide(cdc_run("r1"), referenced=referenced) is Verdict.KEEP_REFERENCED
    assert decide(cdc_run("r2"), referenced=referenced) is Verdict.DELETE


def test_the_newest_finished_run_of_a_pipeline_and_phase_is_kept_however_old() -> None:
    assert decide(cdc_run("r1"), newest_id="r1") is Verdict.KEEP_NEWEST
    # Unknown newest (not looked up, or none found): keep rather than guess.
    assert verdict(cdc_run("r1"), created_before=CUTOFF, referenced=frozenset(), newest={}) is (
        Verdict.KEEP_NEWEST
    )
    none_found = {CDC_KEY: None}
    assert verdict(
        cdc_run("r1"), created_before=CUTOFF, referenced=frozenset(), newest=none_found
    ) is (Verdict.KEEP_NEWEST)


def test_runs_of_other_code_locations_are_never_ours() -> None:
    foreign = RunSummary("x", "some_other_job", RunState.SUCCESS, OLD, {"team": "finance"})
    asset_job = RunSummary("y", "__ASSET_JOB", RunState.SUCCESS, OLD, {})
    assert decide(foreign) is Verdict.KEEP_NOT_OURS
    assert decide(asset_job) is Verdict.KEEP_NOT_OURS


def test_what_counts_as_the_projects_run() -> None:
    ui_load = RunSummary(
        "u",
        "__ASSET_JOB",
        RunState.SUCCESS,
        OLD,
        {"cdc/pipeline": "orders", "cdc/phase": "full_load"},
    )
    check_only = RunSummary(
        "c",
        "__ASSET_JOB",
        RunState.SUCCESS,
        OLD,
        {"cdc/check_only": "true", "cdc/check_of": "orders"},
    )
    untagged_load = RunSummary("f", "full_load_job", RunState.FAILURE, OLD, {})
    assert ui_load.phase_key == ("orders", Phase.FULL_LOAD)
    assert check_only.phase_key is None  # no newest to protect: nothing reads check-only runs
    assert untagged_load.phase_key is None
    for run in (ui_load, check_only, untagged_load):
        assert run.is_ours
        assert decide(run) is Verdict.DELETE


def test_phase_comes_from_the_tag_else_the_job_like_phase_of() -> None:
    by_job = RunSummary("a", "cdc_sync_job", RunState.SUCCESS, OLD, {"cdc/pipeline": "p"})
    by_tag = RunSummary(
        "b", "cdc_sync_job", RunState.SUCCESS, OLD, {"cdc/pipeline": "p", "cdc/phase": "full_load"}
    )
    assert by_job.phase_key == ("p", Phase.CDC)
    assert by_tag.phase_key == ("p", Phase.FULL_LOAD)
    for run in (by_job, by_tag):
        assert tags.phase_of(run.job_name, run.tags) is run.phase_key[1]  # type: ignore[index]


def test_newest_finished_steps_over_unfinished_runs_and_lock_conflict_losers() -> None:
    runs = [
        cdc_run("going", RunState.STARTED),
        cdc_run("loser", RunState.FAILURE, **{"cdc/lock_conflict": "true"}),
        cdc_run("real", RunState.FAILURE),
        cdc_run("older"),
    ]
    assert newest_finished(runs) == "real"
    assert newest_finished(runs[:2]) is None
    assert newest_finished([]) is None


def test_retention_zero_keeps_for_ever() -> None:
    assert retention_cutoff(NOW, 0) is None
    assert retention_cutoff(NOW, 14) == CUTOFF


def test_the_rules_tag_and_job_names_are_the_shells() -> None:
    assert retention.TAG_PIPELINE == tags.TAG_PIPELINE
    assert retention.TAG_PHASE == tags.TAG_PHASE
    assert retention.TAG_CHECK_ONLY == tags.TAG_CHECK_ONLY
    assert retention.TAG_LOCK_CONFLICT == tags.TAG_LOCK_CONFLICT
    assert retention.CDC_JOB_NAME == tags.CDC_JOB_NAME
    assert retention.FULL_LOAD_JOB_NAME == tags.FULL_LOAD_JOB_NAME


def test_the_retention_setting_defaults_to_two_weeks_and_zero_turns_it_off() -> None:
    assert Settings.from_env({}).run_retention_days == 14
    assert Settings.from_env({"CDC_RUN_RETENTION_DAYS": "0"}).run_retention_days == 0
    with pytest.raises(SettingError, match="CDC_RUN_RETENTION_DAYS"):
        Settings.from_env({"CDC_RUN_RETENTION_DAYS": "-1"})

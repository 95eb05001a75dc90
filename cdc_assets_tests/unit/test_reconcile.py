"""The reconciler's pure rules: which writes make a row mirror Dagster's run records."""

from datetime import UTC, datetime, timedelta

import pytest

from cdc_assets.domain import CdcStatus, FullLoadStatus, Phase, Writer
from cdc_assets.status.reconcile import (
    RUN_RECORD_MISSING,
    PhaseFact,
    RowFact,
    RunFact,
    RunState,
    decide,
    latest_run,
    stops_cdc,
    write_for_run,
)

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def run(
    run_id: str, state: RunState, created: int, *, phase: Phase = Phase.FULL_LOAD, **kw
) -> RunFact:
    return RunFact(
        run_id=run_id, pipeline="p", phase=phase, state=state, created_at=at(created), **kw
    )


def row(
    status: str = FullLoadStatus.NOT_STARTED,
    run_id: str | None = None,
    created: int | None = None,
    authority: Writer | None = None,
    updated: int = 0,
    cdc: PhaseFact | None = None,
) -> RowFact:
    return RowFact(
        name="p",
        full_load=PhaseFact(
            status, run_id, at(created) if created is not None else None, authority
        ),
        cdc=cdc or PhaseFact(CdcStatus.NOT_STARTED, None, None, None),
        updated_at=at(updated),
    )


def test_not_started_row_with_finished_run_is_completed() -> None:
    writes = decide(row(), [run("r1", RunState.SUCCESS, 10)])
    assert [(w.status, w.run_id, w.run_created_at) for w in writes] == [
        (FullLoadStatus.COMPLETED, "r1", at(10))
    ]


def test_row_equal_to_mapping_and_authoritative_needs_nothing() -> None:
    r = row(FullLoadStatus.COMPLETED, "r1", 10, Writer.SENSOR, updated=20)
    assert decide(r, [run("r1", RunState.SUCCESS, 10)]) == []


def test_hook_written_terminal_status_is_confirmed_once() -> None:
    r = row(FullLoadStatus.COMPLETED, "r1", 10, Writer.HOOK, updated=20)
    writes = decide(r, [run("r1", RunState.SUCCESS, 10)])
    assert [w.status for w in writes] == [FullLoadStatus.COMPLETED]


def test_orphaned_hook_completed_is_repaired_to_failed() -> None:
    r = row(FullLoadStatus.COMPLETED, "r1", 10, Writer.HOOK, updated=20)
    writes = decide(r, [run("r1", RunState.FAILURE, 10, error="worker killed")])
    assert [(w.status, w.error) for w in writes] == [(FullLoadStatus.FAILED, "worker killed")]


def test_in_progress_row_of_running_run_needs_nothing() -> None:
    r = row(FullLoadStatus.IN_PROGRESS, "r1", 10, Writer.OP, updated=11)
    assert decide(r, [run("r1", RunState.STARTED, 10)]) == []


def test_queued_newer_run_decides_nothing() -> None:
    r = row(FullLoadStatus.COMPLETED, "r1", 10, Writer.SENSOR, updated=20)
    runs = [run("r1", RunState.SUCCESS, 10), run("r2", RunState.QUEUED, 30)]
    assert decide(r, runs) == []


def test_newer_started_run_moves_row_in_progress() -> None:
    r = row(FullLoadStatus.COMPLETED, "r1", 10, Writer.SENSOR, updated=20)
    runs = [run("r1", RunState.SUCCESS, 10), run("r2", RunState.STARTED, 30)]
    assert [(w.status, w.run_id) for w in decide(r, runs)] == [(FullLoadStatus.IN_PROGRESS, "r2")]


def test_older_run_never_decides() -> None:
    r = row(FullLoadStatus.IN_PROGRESS, "r2", 30, Writer.SENSOR, updated=31)
    runs = [run("r1", RunState.FAILURE, 10), run("r2", RunState.STARTED, 30)]
    assert decide(r, runs) == []


def test_lock_conflict_runs_are_ignored() -> None:
    r = row(FullLoadStatus.IN_PROGRESS, "r1", 10, Writer.OP, updated=11)
    runs = [run("r1", RunState.STARTED, 10), run("r2", RunState.FAILURE, 12, lock_conflict=True)]
    assert decide(r, runs) == []
    assert latest_run(runs, Phase.FULL_LOAD).run_id == "r1"  # type: ignore[union-attr]


def test_deleted_run_of_in_progress_row_fails_it() -> None:
    r = row(FullLoadStatus.IN_PROGRESS, "gone", 10, Writer.OP, updated=11)
    writes = decide(r, [])
    assert [(w.status, w.run_id, w.error) for w in writes] == [
        (FullLoadStatus.FAILED, "gone", RUN_RECORD_MISSING)
    ]


def test_reset_row_ignores_runs_from_before_the_reset() -> None:
    r = row(FullLoadStatus.NOT_STARTED, None, None, None, updated=50)
    assert decide(r, [run("r1", RunState.SUCCESS, 10)]) == []
    assert [
        w.run_id
        for w in decide(r, [run("r1", RunState.SUCCESS, 10), run("r2", RunState.STARTED, 60)])
    ] == ["r2"]


def test_cancel_says_canceled() -> None:
    w = write_for_run(run("r1", RunState.CANCELED, 10, ended_at=at(20)))
    assert w is not None and w.status == FullLoadStatus.FAILED
    assert w.error is not None and "canceled" in w.error and "r1" in w.error


def test_failure_without_message_still_names_the_run() -> None:
    w = write_for_run(run("r1", RunState.FAILURE, 10))
    assert w is not None and w.error is not None and "r1" in w.error


def test_cdc_phase_maps_to_cdc_statuses() -> None:
    assert write_for_run(run("c1", RunState.STARTED, 10, phase=Phase.CDC)) is None
    ok = write_for_run(run("c1", RunState.SUCCESS, 10, phase=Phase.CDC))
    bad = write_for_run(run("c2", RunState.FAILURE, 11, phase=Phase.CDC, error="slot gone"))
    assert ok is not None and ok.status == CdcStatus.ACTIVE
    assert bad is not None and (bad.status, bad.error) == (CdcStatus.FAILED, "slot gone")


def test_cdc_and_full_load_are_decided_independently() -> None:
    r = row(FullLoadStatus.COMPLETED, "f1", 10, Writer.SENSOR, updated=20)
    runs = [
        run("f1", RunState.SUCCESS, 10),
        run("c1", RunState.FAILURE, 30, phase=Phase.CDC, error="x"),
    ]
    writes = decide(r, runs)
    assert [(w.phase, w.status) for w in writes] == [(Phase.CDC, CdcStatus.FAILED)]


def test_state_helpers() -> None:
    assert RunState.CANCELING.is_active and not RunState.CANCELING.is_finished
    assert RunState.CANCELED.is_finished and not RunState.CANCELED.is_active


@pytest.mark.parametrize("status", list(CdcStatus))
@pytest.mark.parametrize("enabled", [True, False])
@pytest.mark.parametrize("run_active", [True, False])
def test_disabled_idle_cdc_is_stopped(status, enabled, run_active) -> None:
    """Issue 11 item 5: a disabled pipeline's ACTIVE/FAILED CDC rests in STOPPED once idle."""
    want = not enabled and not run_active and status in (CdcStatus.ACTIVE, CdcStatus.FAILED)
    assert stops_cdc(enabled=enabled, status=status, run_active=run_active) is want

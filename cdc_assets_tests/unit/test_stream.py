"""The stream's pure parts: status ranks and mapping of stream runs, heartbeat staleness, the
batch tally, and the loop's stop conditions and retries (``run_cdc_batch`` replaced by fakes)."""

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from cdc_assets.domain import CdcStatus, Lsn, TableRef, Writer
from cdc_assets.engine import stream
from cdc_assets.engine.cdc import CdcBatchResult
from cdc_assets.errors import ConnectError, SchemaChangeError
from cdc_assets.settings import Settings
from cdc_assets.status.machine import Outcome, PhaseState, ProposedWrite, decide
from cdc_assets.status.reconcile import RunState, cdc_status_for
from cdc_assets.status.rules import heartbeat_age, heartbeat_stale

T0 = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
ORDERS = TableRef("public", "orders")


def _write(to: CdcStatus, writer: Writer) -> ProposedWrite:
    return ProposedWrite(to, "run-1", T0, writer, stream=True)


def test_a_stream_runs_active_then_ends_stopped_and_a_late_started_cannot_undo_it() -> None:
    active = PhaseState(CdcStatus.ACTIVE, "run-1", T0, Writer.OP)
    assert decide(active, _write(CdcStatus.STOPPED, Writer.OP)).outcome is Outcome.CHANGE
    stopped = PhaseState(CdcStatus.STOPPED, "run-1", T0, Writer.OP)
    assert decide(stopped, _write(CdcStatus.ACTIVE, Writer.SENSOR)).outcome is Outcome.IGNORE
    # The run record (sensor) overrides the op's outcome of the same run.
    assert decide(stopped, _write(CdcStatus.FAILED, Writer.SENSOR)).outcome is Outcome.CHANGE


def test_a_catch_up_runs_active_is_its_outcome() -> None:
    active = PhaseState(CdcStatus.ACTIVE, "run-1", T0, Writer.OP)
    late = ProposedWrite(CdcStatus.STOPPED, "run-1", T0, Writer.OP)  # stream=False
    assert decide(active, late).outcome is Outcome.IGNORE


@pytest.mark.parametrize(
    ("state", "stream", "want"),
    [
        (RunState.STARTED, True, CdcStatus.ACTIVE),
        (RunState.SUCCESS, True, CdcStatus.STOPPED),
        (RunState.CANCELED, True, CdcStatus.STOPPED),
        (RunState.FAILURE, True, CdcStatus.FAILED),
        (RunState.QUEUED, True, None),
        (RunState.STARTED, False, None),
        (RunState.SUCCESS, False, CdcStatus.ACTIVE),
        (RunState.CANCELED, False, CdcStatus.FAILED),
    ],
)
def test_cdc_status_of_a_run(state: RunState, stream: bool, want: CdcStatus | None) -> None:
    assert cdc_status_for(state, stream=stream) is want


def test_heartbeat_staleness_counts_from_the_newer_of_start_and_beat() -> None:
    timeout = timedelta(seconds=30)
    now = T0 + timedelta(seconds=40)
    assert heartbeat_stale(started_at=T0, heartbeat_at=None, now=now, timeout=timeout)
    fresh = T0 + timedelta(seconds=35)
    assert not heartbeat_stale(started_at=T0, heartbeat_at=fresh, now=now, timeout=timeout)
    # A beat older than the run's start belongs to an earlier run: the start counts.
    old = T0 - timedelta(hours=1)
    assert heartbeat_age(started_at=T0, heartbeat_at=old, now=now) == timedelta(seconds=40)
    assert not heartbeat_stale(
        started_at=T0, heartbeat_at=old, now=T0 + timedelta(seconds=5), timeout=timeout
    )


def _result(changes: int = 1, *, limited: bool = False, lsn: int = 100) -> CdcBatchResult:
    return CdcBatchResult(
        pipeline="p",
        transactions=changes,
        changes=changes,
        inserts=changes,
        updates=0,
        deletes=0,
        truncates=0,
        start_lsn=Lsn(0),
        end_lsn=Lsn(lsn),
        lag_bytes=0,
        seconds=0.01,
        tables_changed=(ORDERS,) if changes else (),
        by_table={ORDERS: (changes, 0, 0, False)} if changes else {},
        limited=limited,
    )


def test_tally_sums_batches_and_take_empties_it() -> None:
    tally = stream.BatchTally()
    tally.add(_result(2, lsn=10))
    tally.add(_result(3, lsn=20))
    taken = tally.take()
    assert taken.by_table == {ORDERS: [5, 0, 0]} and taken.changes == 5 and taken.batches == 2
    assert tally.by_table == {} and tally.changes == 0 and tally.batches == 0
    assert tally.last is not None and tally.last.end_lsn == Lsn(20)  # kept for the heartbeat


class _Fake:
    """``run_cdc_batch`` replaced: returns or raises the scripted outcomes in order."""

    def __init__(self, outcomes: list[Any]) -> None:
        self.outcomes = outcomes
        self.calls = 0

    def __call__(self, *_a: Any, **_k: Any) -> CdcBatchResult:
        self.calls += 1
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        assert isinstance(outcome, CdcBatchResult)
        return outcome


def _loop(monkeypatch: pytest.MonkeyPatch, outcomes: list[Any], **kw: Any) -> tuple[list, list]:
    fake = _Fake(outcomes)
    monkeypatch.setattr(stream, "run_cdc_batch", fake)
    waits: list[float] = []
    now = [0.0]

    def wait(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    results = list(
        stream.cdc_batches(
            None,  # type: ignore[arg-type]
            source_url="",
            target_url="",
            settings=kw.pop("settings", Settings(cdc_commit_interval_ms=250)),
            clock=lambda: now[0],
            wait=wait,
            **kw,
        )
    )
    return results, waits


def test_catch_up_ends_after_the_first_batch_that_left_nothing(monkeypatch) -> None:
    results, waits = _loop(monkeypatch, [_result(limited=True), _result(limited=True), _result()])
    assert [r.limited for r in results] == [True, True, False] and waits == []


def test_a_stream_pauses_between_batches_until_told_to_stop(monkeypatch) -> None:
    asked = iter([False, False, True])
    results, waits = _loop(
        monkeypatch, [_result(), _result(), _result()], should_stop=lambda: next(asked)
    )
    assert len(results) == 3 and waits == [0.25, 0.25]


def test_an_idle_source_skips_batches_but_not_for_ever(monkeypatch) -> None:
    asked = iter([False] * 3 + [True])
    results, _ = _loop(monkeypatch, [_result()], should_stop=lambda: next(asked), idle=lambda: True)
    assert results[0] is not None and results[1:] == [None, None, None]


def test_transient_failures_are_retried_with_doubling_waits_then_raised(monkeypatch) -> None:
    drop = psycopg.OperationalError("server closed the connection unexpectedly")
    asked = iter([False, False, True])  # after each failure, then after the batch
    results, waits = _loop(
        monkeypatch, [drop, ConnectError("down"), _result()], should_stop=lambda: next(asked)
    )
    assert len(results) == 1 and waits == [0.5, 1.0]
    with pytest.raises(ConnectError):
        _loop(
            monkeypatch,
            [ConnectError("down")] * 10,
            should_stop=lambda: False,
            settings=Settings(cdc_stream_retry_s=3),
        )


def test_a_schema_change_fails_at_once_and_catch_up_never_retries(monkeypatch) -> None:
    with pytest.raises(SchemaChangeError):
        _loop(monkeypatch, [SchemaChangeError("column dropped"), _result()], should_stop=bool)
    with pytest.raises(ConnectError):
        _loop(monkeypatch, [ConnectError("down"), _result()])  # no should_stop: catch-up

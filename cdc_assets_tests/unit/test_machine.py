"""status/machine.py: every transition rule, table-driven; pure, no I/O."""

from datetime import UTC, datetime, timedelta

import pytest

from cdc_assets.domain import CdcStatus, FullLoadStatus, Writer
from cdc_assets.status.machine import (
    Outcome,
    PhaseState,
    ProposedWrite,
    decide,
    is_terminal,
    rank,
)

pytestmark = pytest.mark.unit

T0 = datetime(2025, 1, 1, tzinfo=UTC)
OLD, SAME, NEW = T0 - timedelta(minutes=1), T0, T0 + timedelta(minutes=1)
F = FullLoadStatus
C = CdcStatus
W = Writer


def _state(status, authority=W.SENSOR, run_id="r1", created=SAME) -> PhaseState:
    if status in (F.NOT_STARTED, C.NOT_STARTED) and run_id is None:
        return PhaseState(status)
    return PhaseState(status, run_id, created, authority)


def _write(to, writer, run_id="r1", created=SAME) -> ProposedWrite:
    return ProposedWrite(to, run_id, created, writer)


CHANGE, TAKE, IGNORE = Outcome.CHANGE, Outcome.TAKE_AUTHORITY, Outcome.IGNORE

# (current status, current authority, proposed status, writer, outcome) - all for the SAME run.
SAME_RUN = [
    # forward progress, from anyone
    (F.IN_PROGRESS, W.OP, F.COMPLETED, W.OP, CHANGE),
    (F.IN_PROGRESS, W.OP, F.FAILED, W.HOOK, CHANGE),
    (F.IN_PROGRESS, W.SENSOR, F.COMPLETED, W.OP, CHANGE),  # op's end after the STARTED sensor
    (F.IN_PROGRESS, W.SENSOR, F.FAILED, W.RECONCILER, CHANGE),
    # terminal never goes back to IN_PROGRESS (late STARTED after SUCCESS), whoever writes
    (F.COMPLETED, W.SENSOR, F.IN_PROGRESS, W.SENSOR, IGNORE),
    (F.COMPLETED, W.OP, F.IN_PROGRESS, W.RECONCILER, IGNORE),
    (F.FAILED, W.HOOK, F.IN_PROGRESS, W.OP, IGNORE),
    # authoritative replaces an op/hook terminal status (orphaned hook said COMPLETED)
    (F.COMPLETED, W.HOOK, F.FAILED, W.SENSOR, CHANGE),
    (F.FAILED, W.OP, F.COMPLETED, W.RECONCILER, CHANGE),
    (C.FAILED, W.HOOK, C.ACTIVE, W.SENSOR, CHANGE),
    (C.ACTIVE, W.OP, C.FAILED, W.RECONCILER, CHANGE),
    # op/hook never replaces an authoritative status (hook after sensor)
    (F.FAILED, W.SENSOR, F.COMPLETED, W.HOOK, IGNORE),
    (F.COMPLETED, W.RECONCILER, F.FAILED, W.OP, IGNORE),
    (C.ACTIVE, W.SENSOR, C.FAILED, W.HOOK, IGNORE),
    # op/hook terminal does not replace another op/hook terminal
    (F.COMPLETED, W.OP, F.FAILED, W.HOOK, IGNORE),
    (C.FAILED, W.HOOK, C.STOPPED, W.OP, IGNORE),
    # authoritative does not flip another authoritative outcome of the same run
    (F.COMPLETED, W.SENSOR, F.FAILED, W.RECONCILER, IGNORE),
    # same status: nothing, except an authoritative writer takes over authority
    (F.COMPLETED, W.HOOK, F.COMPLETED, W.SENSOR, TAKE),
    (F.COMPLETED, W.SENSOR, F.COMPLETED, W.RECONCILER, IGNORE),
    (F.COMPLETED, W.SENSOR, F.COMPLETED, W.HOOK, IGNORE),
    (F.IN_PROGRESS, W.OP, F.IN_PROGRESS, W.OP, IGNORE),
    (C.ACTIVE, W.OP, C.ACTIVE, W.RECONCILER, TAKE),
    # NOT_STARTED is written by reset only
    (F.FAILED, W.OP, F.NOT_STARTED, W.SENSOR, IGNORE),
    (C.ACTIVE, W.OP, C.NOT_STARTED, W.RECONCILER, IGNORE),
]


@pytest.mark.parametrize(("status", "authority", "to", "writer", "outcome"), SAME_RUN)
def test_same_run(status, authority, to, writer, outcome) -> None:
    decision = decide(_state(status, authority), _write(to, writer))
    assert decision.outcome is outcome, decision.reason
    assert decision.reason


ALL_FULL = [F.NOT_STARTED, F.IN_PROGRESS, F.COMPLETED, F.FAILED]
ALL_CDC = [C.NOT_STARTED, C.ACTIVE, C.FAILED, C.STOPPED]


@pytest.mark.parametrize("writer", list(Writer))
@pytest.mark.parametrize(
    ("status", "to"),
    [(s, t) for s in ALL_FULL for t in ALL_FULL if t is not F.NOT_STARTED]
    + [(s, t) for s in ALL_CDC for t in ALL_CDC if t is not C.NOT_STARTED],
)
def test_newer_run_is_accepted_from_any_status(status, to, writer) -> None:
    current = _state(status, W.RECONCILER)
    decision = decide(current, _write(to, writer, run_id="r2", created=NEW))
    # The same status for a newer run is followed (run columns move) but is no status change.
    assert decision.outcome is (Outcome.FOLLOW if to == status else CHANGE), decision.reason
    assert decision.changes_row


def test_next_good_batch_follows_without_a_status_change() -> None:
    """Issue 11 item 4: each CDC batch is a new run; ACTIVE -> ACTIVE is not an event."""
    current = _state(C.ACTIVE, W.SENSOR)
    decision = decide(current, _write(C.ACTIVE, W.OP, run_id="r2", created=NEW))
    assert decision.outcome is Outcome.FOLLOW and not decision.changes_status


@pytest.mark.parametrize("writer", list(Writer))
@pytest.mark.parametrize("to", [F.IN_PROGRESS, F.COMPLETED, F.FAILED])
def test_stale_run_changes_nothing(to, writer) -> None:
    current = _state(F.IN_PROGRESS, W.OP)
    decision = decide(current, _write(to, writer, run_id="r0", created=OLD))
    assert decision.outcome is IGNORE
    assert "stale" in decision.reason


def test_first_run_is_accepted() -> None:
    decision = decide(PhaseState(F.NOT_STARTED), _write(F.IN_PROGRESS, W.OP))
    assert decision.changes_status


def test_reset_fence_rejects_runs_created_before_the_reset() -> None:
    fenced = PhaseState(F.NOT_STARTED, None, SAME, W.CLI)
    before = decide(fenced, _write(F.COMPLETED, W.SENSOR, run_id="old", created=OLD))
    after = decide(fenced, _write(F.IN_PROGRESS, W.OP, run_id="new", created=NEW))
    assert before.outcome is IGNORE and "reset" in before.reason
    assert after.outcome is CHANGE


def test_runs_created_in_the_same_instant_are_ordered_by_id() -> None:
    current = _state(F.COMPLETED, W.SENSOR, run_id="bbb")
    assert decide(current, _write(F.FAILED, W.SENSOR, run_id="aaa")).outcome is IGNORE
    assert decide(current, _write(F.FAILED, W.SENSOR, run_id="ccc")).outcome is CHANGE


def test_late_started_after_success_sequence() -> None:
    """The sensor sees SUCCESS first and STARTED later: the row stays COMPLETED."""
    state = PhaseState(F.NOT_STARTED)
    for to, writer in [
        (F.COMPLETED, W.SENSOR),
        (F.IN_PROGRESS, W.SENSOR),
        (F.IN_PROGRESS, W.OP),
        (F.FAILED, W.HOOK),
    ]:
        d = decide(state, _write(to, writer))
        if d.changes_row:
            state = PhaseState(to if d.changes_status else state.status, "r1", SAME, writer)
    assert state.status is F.COMPLETED and state.authority is W.SENSOR


def test_phase_mismatch_is_a_programming_error() -> None:
    with pytest.raises(TypeError):
        decide(PhaseState(F.NOT_STARTED), _write(C.ACTIVE, W.OP))


def test_ranks() -> None:
    assert [rank(s) for s in ALL_FULL] == [0, 1, 2, 2]
    assert [rank(s) for s in ALL_CDC] == [0, 2, 2, 2]
    assert not is_terminal(F.IN_PROGRESS) and is_terminal(C.STOPPED)

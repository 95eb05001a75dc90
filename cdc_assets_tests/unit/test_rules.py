"""The pure rules moved out of the Dagster shell: who gets CDC, the lag verdict, the hooks' map."""

from dataclasses import dataclass

import pytest

from cdc_assets.domain import CdcStatus, FullLoadStatus, Mode, Phase
from cdc_assets.status.reconcile import RunState, running_status, status_for, step_status
from cdc_assets.status.rules import LagVerdict, has_slot, lag_verdict, wants_cdc

pytestmark = pytest.mark.unit


@dataclass(frozen=True)
class Row:
    enabled: bool
    mode: Mode
    full_load_status: FullLoadStatus


@pytest.mark.parametrize("enabled", [True, False])
@pytest.mark.parametrize("mode", list(Mode))
@pytest.mark.parametrize("status", list(FullLoadStatus))
def test_wants_cdc_only_enabled_cdc_pipelines_with_a_completed_load(
    enabled: bool, mode: Mode, status: FullLoadStatus
) -> None:
    row = Row(enabled, mode, status)
    slot = mode is Mode.FULL_LOAD_AND_CDC and status is FullLoadStatus.COMPLETED
    assert has_slot(row) is slot
    assert wants_cdc(row) is (enabled and slot)


@pytest.mark.parametrize(
    ("lag", "verdict"),
    [
        (0, LagVerdict.OK),
        (100, LagVerdict.OK),  # at the warning threshold: still passes
        (101, LagVerdict.WARN),
        (1000, LagVerdict.WARN),  # at the failure threshold: a warning
        (1001, LagVerdict.ERROR),
    ],
)
def test_lag_verdict_against_the_thresholds(lag: int, verdict: LagVerdict) -> None:
    got = lag_verdict(lag, warn_bytes=100, fail_bytes=1000)
    assert got is verdict
    assert got.passed is (verdict is LagVerdict.OK)


@pytest.mark.parametrize("phase", list(Phase))
@pytest.mark.parametrize("success", [True, False])
def test_step_status_is_the_run_status_table(phase: Phase, success: bool) -> None:
    """A hook and a run-status sensor map the same outcome to the same status."""
    state = RunState.SUCCESS if success else RunState.FAILURE
    assert step_status(phase, success=success) == status_for(phase, state)
    expected = {
        (Phase.FULL_LOAD, True): FullLoadStatus.COMPLETED,
        (Phase.FULL_LOAD, False): FullLoadStatus.FAILED,
        (Phase.CDC, True): CdcStatus.ACTIVE,
        (Phase.CDC, False): CdcStatus.FAILED,
    }[(phase, success)]
    assert step_status(phase, success=success) == expected


def test_running_status_is_in_progress_for_a_full_load_and_none_for_cdc() -> None:
    """The bracket's entry write: CDC has no running status (docs/internals.md)."""
    assert running_status(Phase.FULL_LOAD) is FullLoadStatus.IN_PROGRESS
    assert running_status(Phase.CDC) is None

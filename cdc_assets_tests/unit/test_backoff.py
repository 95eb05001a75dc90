"""status/backoff.py: when the CDC schedule retries a FAILED pipeline; pure, no I/O."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdc_assets.domain import Phase
from cdc_assets.status.backoff import consecutive_failures, decide_retry, retry_delay
from cdc_assets.status.reconcile import RunFact, RunState

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
CAP = timedelta(minutes=15)
MIN = timedelta(minutes=1)


def runs(*states: RunState, step: timedelta = MIN) -> list[RunFact]:
    """Newest first, the newest ending at T0, each older one ``step`` earlier."""
    return [
        RunFact(f"r{i}", "p", Phase.CDC, s, T0 - i * step - MIN, ended_at=T0 - i * step)
        for i, s in enumerate(states)
    ]


F, C, S = RunState.FAILURE, RunState.CANCELED, RunState.SUCCESS


@pytest.mark.parametrize(
    ("failures", "delay"),
    [(0, 0), (1, 0), (2, 1), (3, 2), (4, 4), (5, 8), (6, 15), (7, 15), (50, 15), (10_000, 15)],
)
def test_delay_doubles_from_the_second_failure_up_to_the_cap(failures: int, delay: int) -> None:
    assert retry_delay(failures, CAP) == delay * MIN


def test_failures_are_counted_back_to_the_last_success() -> None:
    assert consecutive_failures(runs(F, C, F, S, F, F)) == (3, T0)
    assert consecutive_failures(runs(S, F, F)) == (0, None)
    assert consecutive_failures([]) == (0, None)
    # A run record without an end time (a run marked failed by monitoring) counts from creation.
    assert consecutive_failures([RunFact("x", "p", Phase.CDC, F, T0)]) == (1, T0)


@pytest.mark.parametrize(
    ("history", "elapsed", "due"),
    [
        ((F,), timedelta(seconds=5), True),  # the first retry: the very next tick
        ((F, F), timedelta(seconds=20), False),  # second failure: wait a minute
        ((F, F), timedelta(seconds=31), True),  # ... within half a tick of it
        ((F, F, F, F), timedelta(minutes=3), False),  # fourth: 4 minutes
        ((F, F, F, F), timedelta(minutes=3, seconds=31), True),
        ((C, F, C, F, F, F, F, F), timedelta(minutes=14), False),  # capped at 15
        ((C, F, C, F, F, F, F, F), timedelta(minutes=15), True),
        ((S,), timedelta(0), True),  # row FAILED but the newest run succeeded: no backoff
        ((), timedelta(0), True),  # no run on record (row written by hand, records pruned)
    ],
)
def test_decide_retry(history: tuple[RunState, ...], elapsed: timedelta, due: bool) -> None:
    decision = decide_retry(runs(*history), now=T0 + elapsed, cap=CAP)
    assert decision.due is due
    assert decision.failures == (history.index(S) if S in history else len(history))


@given(
    st.lists(st.sampled_from([F, C, S]), max_size=12),
    st.integers(min_value=0, max_value=3 * 3600),
    st.integers(min_value=1, max_value=24 * 60),
)
def test_a_retry_is_never_later_than_the_cap_after_the_last_failure(
    history: list[RunState], elapsed_s: int, cap_min: int
) -> None:
    cap = timedelta(minutes=cap_min)
    decision = decide_retry(runs(*history), now=T0 + timedelta(seconds=elapsed_s), cap=cap)
    if decision.not_before is not None:
        assert decision.not_before - T0 <= cap
        now = T0 + timedelta(seconds=elapsed_s)
        assert decision.due is (now + timedelta(seconds=30) >= decision.not_before)
    else:
        assert decision.due


def test_the_cap_comes_from_the_environment() -> None:
    from cdc_assets.settings import SettingError, Settings

    assert Settings.from_env({}).cdc_retry_max_s == 900
    assert Settings.from_env({"CDC_RETRY_MAX_S": "3600"}).cdc_retry_max_s == 3600
    with pytest.raises(SettingError, match="CDC_RETRY_MAX_S must be >= 60"):
        Settings.from_env({"CDC_RETRY_MAX_S": "5"})


def test_every_tunable_is_documented_in_the_readme() -> None:
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    names = set(re.findall(r'"(CDC_[A-Z_]+)"', (root / "cdc_assets/settings.py").read_text()))
    readme = (root / "README.md").read_text()
    assert "CDC_RETRY_MAX_S" in names
    assert sorted(n for n in names if f"`{n}`" not in readme) == []

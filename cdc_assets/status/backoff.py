"""When the CDC schedule may retry a pipeline whose CDC failed: exponential backoff, stateless.

A failure that cannot heal by itself (slot dropped, column dropped, key removed) used to be
retried every minute for ever: 1,440 failing runs a day, each a failure alert. A transient one
(target restarted) should still be retried soon. Doubling delays serve both. The delay is derived
from Dagster's run records on every tick (how many CDC runs in a row ended without success, when
the newest ended), never from a process's memory, so it survives daemon restarts and works with
any run launcher. A manual ``cdc-assets run NAME --phase cdc`` or a UI launch retries at once.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from cdc_assets.status.reconcile import RunFact, RunState

#: The first retry waits for the next minute tick, then 1, 2, 4 ... minutes, capped.
BASE_DELAY = timedelta(minutes=1)
#: The schedule ticks once a minute: a run due within half a tick is retried at this one.
TICK_SLACK = timedelta(seconds=30)


@dataclass(frozen=True)
class RetryDecision:
    """``due`` now, or not before ``not_before``; ``failures`` in a row so far."""

    due: bool
    failures: int
    not_before: datetime | None = None


def consecutive_failures(newest_first: Iterable[RunFact]) -> tuple[int, datetime | None]:
    """Failed or canceled runs since the last success, and when the newest of them ended.

    ``newest_first`` holds finished CDC runs of one pipeline, lock-conflict losers left out.
    A canceled stream run neither counts nor ends the streak.
    """
    count, newest_end = 0, None
    for run in newest_first:
        if run.state is RunState.SUCCESS:
            break
        if run.state is RunState.CANCELED and run.stream:
            continue  # a stream is canceled on disable or for a full load: not a failure
        count += 1
        if newest_end is None:
            newest_end = run.ended_at or run.created_at
    return count, newest_end


def retry_delay(failures: int, cap: timedelta) -> timedelta:
    """0 after one failure (next tick), then 1, 2, 4 ... minutes, never more than ``cap``."""
    if failures <= 1:
        return timedelta(0)
    exponent = min(failures - 2, 30)  # 2**30 minutes is far past any sensible cap
    return min(BASE_DELAY * (1 << exponent), cap)


def decide_retry(
    newest_first: Iterable[RunFact], *, now: datetime, cap: timedelta
) -> RetryDecision:
    """Whether this tick should launch a retry batch for a FAILED CDC pipeline."""
    failures, newest_end = consecutive_failures(newest_first)
    if failures == 0 or newest_end is None:
        # The row says FAILED but no failed run is on record (written by hand, or records
        # pruned): retry now; the run's own outcome will set the row straight.
        return RetryDecision(due=True, failures=failures)
    not_before = newest_end + retry_delay(failures, cap)
    return RetryDecision(
        due=now + TICK_SLACK >= not_before, failures=failures, not_before=not_before
    )

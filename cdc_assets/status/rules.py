"""Pure rules the Dagster shell applies to pipeline rows: who gets CDC, and how bad a lag is.

They lived in ``defs/`` beside the Dagster code that calls them (sensors, schedules, checks, the
CDC op), some written twice; here they are one function each, stdlib + domain only, so they are
tested without a Dagster instance or a database (``cdc_assets_tests/unit/test_rules.py``).
"""

import enum
from datetime import datetime, timedelta
from typing import Protocol

from cdc_assets.domain import FullLoadStatus, Mode


class RowState(Protocol):
    """The columns of a ``public.pipelines`` row these rules read (``PipelineRow`` has them)."""

    @property
    def enabled(self) -> bool:
        """Whether the pipeline may run."""
        ...

    @property
    def mode(self) -> Mode:
        """Full load only, or full load then CDC."""
        ...

    @property
    def full_load_status(self) -> FullLoadStatus:
        """The full-load phase's status."""
        ...


def has_slot(row: RowState) -> bool:
    """A CDC pipeline whose full load completed: it holds a replication slot on its source.

    Only such a pipeline has a lag to measure; the full load creates the slot and only a
    completed one leaves it behind.
    """
    return row.mode is Mode.FULL_LOAD_AND_CDC and row.full_load_status is FullLoadStatus.COMPLETED


def wants_cdc(row: RowState) -> bool:
    """Enabled CDC pipelines whose full load completed (STOPPED ones resume: they were enabled)."""
    return row.enabled and has_slot(row)


class LagVerdict(enum.StrEnum):
    """How a measured CDC lag compares with the thresholds (``CDC_LAG_WARN/FAIL_BYTES``)."""

    OK = "OK"
    WARN = "WARN"
    ERROR = "ERROR"

    @property
    def passed(self) -> bool:
        """The check passes at or below the warning threshold."""
        return self is LagVerdict.OK


def lag_verdict(lag_bytes: int, *, warn_bytes: int, fail_bytes: int) -> LagVerdict:
    """OK up to ``warn_bytes``, ERROR above ``fail_bytes``, WARN in between.

    One function for every place that judges a lag (the CDC batch's report, the check executed by
    hand, the idle-lag sensor), so the three can never disagree on the same number.
    """
    if lag_bytes <= warn_bytes:
        return LagVerdict.OK
    if lag_bytes > fail_bytes:
        return LagVerdict.ERROR
    return LagVerdict.WARN


def heartbeat_age(
    *, started_at: datetime, heartbeat_at: datetime | None, now: datetime
) -> timedelta:
    """How long a stream run has been silent: since its last heartbeat, or its start if none.

    A heartbeat older than the run's start belongs to an earlier run, so the start counts.
    """
    last = started_at if heartbeat_at is None else max(started_at, heartbeat_at)
    return max(timedelta(0), now - last)


def heartbeat_stale(
    *, started_at: datetime, heartbeat_at: datetime | None, now: datetime, timeout: timedelta
) -> bool:
    """True when a STARTED stream run has been silent for longer than ``timeout``.

    The default run launcher does not check a worker's health: a worker that died with its code
    server would otherwise stay STARTED for ever. The supervisor fails such a run.
    """
    return heartbeat_age(started_at=started_at, heartbeat_at=heartbeat_at, now=now) > timeout

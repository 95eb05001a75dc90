"""The CDC loop: batch after batch of :func:`run_cdc_batch`, until a stop condition says enough.

One loop, two stop conditions (issue: continuous CDC). ``cdc-assets run NAME --phase cdc`` stops
as soon as a batch leaves nothing behind ("caught up"); the stream run of ``cdc_stream_job`` stops
only when asked (its ``should_stop``: cancel, disable, removal, maximum age). Each turn is a whole
exactly-once batch (watermark and rows in one target transaction, slot advanced after the
commit), so a stop, a crash or a ``kill -9`` anywhere loses and doubles nothing, and every check
of the batch (slot moved, tables edited, enum labels, partitions) runs at every turn.

Why batches in one process rather than one replication session held open for hours: the batch
already is the unit every guarantee and check is written for, and what made batches slow was
the Dagster run around each one (~4 s of process start for a 0.3 s op), not the batch. Here a
turn costs its connections and ``START_REPLICATION`` (a few tens of milliseconds) and is
repeated every ``CDC_COMMIT_INTERVAL_MS`` at most. The walsender's session per turn also means
``wal_sender_timeout`` cannot fire and an idle slot still advances every turn.

Transient failures (a dropped connection, a source or target restarting) are retried inside the
loop with doubling delays for at most ``CDC_STREAM_RETRY_S``; anything else (a dropped column, a
vanished slot) ends the loop at once with its message.
"""

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import psycopg

from cdc_assets.domain import PipelineSpec, TableRef
from cdc_assets.engine.cdc import CdcBatchResult, run_cdc_batch
from cdc_assets.errors import CdcError
from cdc_assets.settings import Settings
from cdc_assets.target.batch import DEFAULT_CHUNK

FIRST_RETRY_S = 0.5
MAX_RETRY_S = 15.0
IDLE_BATCH_S = 30.0
"""On an idle source, a batch at least this often all the same: it re-runs the slot and table
checks (a dropped slot or column fails within this long) and measures the lag."""


def is_transient(exc: BaseException) -> bool:
    """True for failures that may heal by themselves: retried inside the stream run."""
    if isinstance(exc, CdcError):
        return exc.transient
    # InterfaceError: an operation on a connection the server closed (a terminated session).
    return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)


def cdc_batches(
    spec: PipelineSpec,
    *,
    source_url: str,
    target_url: str,
    settings: Settings,
    should_stop: Callable[[], bool] | None = None,
    progress: Callable[[str], None] | None = None,
    on_retry: Callable[[BaseException, float], None] | None = None,
    idle: Callable[[], bool] | None = None,
    chunk_changes: int = DEFAULT_CHUNK,
    on_point: Callable[[str], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    wait: Callable[[float], None] = time.sleep,
) -> Iterator[CdcBatchResult | None]:
    """Yield each batch's result after its target commit and slot advance, until told to stop.

    ``should_stop`` None: catch up, i.e. end after the first batch that left nothing behind
    (a batch stopped at ``CDC_BATCH_MAX_CHANGES`` is followed at once by the next). Otherwise the
    loop ends only when ``should_stop()`` is true, asked after every batch and every failed try;
    it starts a batch at most every ``CDC_COMMIT_INTERVAL_MS``. A generator, so that the caller
    (the Dagster op) can yield its events between batches. ``on_retry`` is told about each
    transient failure and the pause before the next try. Raises the batch's error when it is not
    transient, or when transient failures went on longer than ``CDC_STREAM_RETRY_S``.

    ``idle`` (stream only) is asked before a turn: when it says the source wrote nothing past the
    slot, the turn yields None instead of running a batch, so an idle pipeline costs one query per
    turn; a batch still runs every :data:`IDLE_BATCH_S` to re-check the slot and the tables.
    """
    interval = settings.cdc_commit_interval_ms / 1000
    failing_since: float | None = None
    delay = FIRST_RETRY_S
    last_batch = float("-inf")
    while True:
        began = clock()
        if (
            idle is not None
            and should_stop is not None
            and failing_since is None
            and began - last_batch < IDLE_BATCH_S
            and idle()
        ):
            yield None
            if should_stop():
                return
            rest = interval - (clock() - began)
            if rest > 0:
                wait(rest)
            continue
        try:
            result = run_cdc_batch(
                spec,
                source_url=source_url,
                target_url=target_url,
                settings=settings,
                progress=progress,
                chunk_changes=chunk_changes,
                on_point=on_point,
            )
        except Exception as exc:
            if should_stop is None or not is_transient(exc):
                raise
            now = clock()
            failing_since = now if failing_since is None else failing_since
            if now - failing_since + delay > settings.cdc_stream_retry_s:
                raise
            if on_retry is not None:
                on_retry(exc, delay)
            wait(delay)
            delay = min(delay * 2, MAX_RETRY_S)
            if should_stop():
                return
            continue
        failing_since, delay = None, FIRST_RETRY_S
        last_batch = began
        yield result
        if result.limited:
            continue  # more is waiting: no pause
        if should_stop is None or should_stop():
            return
        rest = interval - (clock() - began)
        if rest > 0:
            wait(rest)


@dataclass(slots=True)
class BatchTally:
    """What the batches did since the last report: per table, and in total.

    The stream run reports (materializations, lag checks) at most every
    ``CDC_MATERIALIZE_EVERY_S``, so one report sums many batches; :meth:`take` empties it.
    """

    by_table: dict[TableRef, list[int]] = field(default_factory=dict)
    truncated: set[TableRef] = field(default_factory=set)
    changes: int = 0
    transactions: int = 0
    batches: int = 0
    warnings: list[str] = field(default_factory=list)
    enum_labels_added: list[str] = field(default_factory=list)
    last: CdcBatchResult | None = None

    def add(self, result: CdcBatchResult) -> None:
        """Add one batch's counts (``last`` keeps the newest result: its LSN and lags)."""
        for table, (inserts, updates, deletes, truncated) in result.by_table.items():
            counts = self.by_table.setdefault(table, [0, 0, 0])
            counts[0] += inserts
            counts[1] += updates
            counts[2] += deletes
            if truncated:
                self.truncated.add(table)
        self.changes += result.changes
        self.transactions += result.transactions
        self.batches += 1
        self.warnings += result.warnings
        self.enum_labels_added += result.enum_labels_added
        self.last = result

    def take(self) -> "BatchTally":
        """This tally, leaving an empty one (that remembers ``last``) in its place."""
        taken = BatchTally(
            by_table=self.by_table,
            truncated=self.truncated,
            changes=self.changes,
            transactions=self.transactions,
            batches=self.batches,
            warnings=self.warnings,
            enum_labels_added=self.enum_labels_added,
            last=self.last,
        )
        self.by_table, self.truncated, self.warnings, self.enum_labels_added = {}, set(), [], []
        self.changes = self.transactions = self.batches = 0
        return taken

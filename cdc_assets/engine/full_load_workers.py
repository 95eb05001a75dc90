"""The full load's worker threads: each imports the pipeline snapshot once, then runs copy tasks.

A worker keeps one source transaction (on the shared snapshot) and one target connection for its
whole life (the source one until only index builds are left for it), so the snapshot is imported
``workers`` times, not once per range, and the coordinator can release the exporting session as
soon as every worker has started. Threads suffice: the per-row Python work is one buffer append,
and psycopg's libpq calls run without the GIL.

The same workers build each stage's primary key and indexes as soon as the table's last copy
committed, ahead of the copies still queued: a finished table's index sort then overlaps with the
copy of the others instead of all builds waiting for the last copy, and the number of sessions
working on the target stays ``workers`` (``CDC_FULL_LOAD_WORKERS``). Index builds read only the
target, so the snapshot every copy reads is untouched by them.
"""

import collections
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from cdc_assets.errors import SourceError, TargetError
from cdc_assets.pg.catalog import TableInfo
from cdc_assets.pg.connect import SESSION_OPTIONS, connect, first_line
from cdc_assets.secrets import scrub
from cdc_assets.source.snapshot import (
    BlockRange,
    checksum_query,
    column_list,
    copy_column_list,
    copy_out_query,
    import_snapshot,
)
from cdc_assets.target.copy import SourceReadError, pump
from cdc_assets.target.ddl import build_indexes


@dataclass(frozen=True, slots=True)
class CopyTask:
    """Copy one table or one CTID range of it into the table's stage."""

    table: TableInfo
    stage: str
    rng: BlockRange | None
    binary: bool


@dataclass(frozen=True, slots=True)
class IndexTask:
    """Build the primary key and indexes of one table's stage, once all its rows are in."""

    table: TableInfo
    stage: str


@dataclass(frozen=True, slots=True)
class ChecksumTask:
    """Compute the source checksum of one table inside the snapshot."""

    table: TableInfo


Task = CopyTask | IndexTask | ChecksumTask


@dataclass
class TableTally:
    """Running totals of one table, updated by workers, read by the coordinator."""

    chunks_left: int
    rows: int = 0
    bytes: int = 0
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    checksum: tuple[int, str] | None = None
    reported_bytes: int = -1
    target_rows: int = 0
    """Sum of the target's ``COPY n`` tags: the rows the stage holds, without counting them."""


class WorkerPool:
    """Runs copy and checksum tasks on ``size`` threads that share one snapshot."""

    def __init__(
        self,
        *,
        pipeline: str,
        source_url: str,
        target_url: str,
        target_schema: str,
        snapshot: str,
        tasks: list[CopyTask | ChecksumTask],
        tallies: dict[int, TableTally],
        size: int,
    ) -> None:
        self.pipeline = pipeline
        self.source_url = source_url
        self.target_url = target_url
        self.schema = target_schema
        self.snapshot = snapshot
        self.tallies = tallies
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.queue: collections.deque[Task] = collections.deque(tasks)
        self.pending = len(tasks)
        """Tasks queued or running: a worker may leave only at 0 (a copy can add an index task)."""
        self.size = max(1, min(size, len(tasks)))
        self.imported = 0
        self.exited = 0
        self.error: BaseException | None = None
        self.threads = [
            threading.Thread(target=self._run, name=f"cdc-full-load-{i}", daemon=True)
            for i in range(self.size)
        ]

    def start(self) -> None:
        """Start the threads; they connect and import the snapshot first."""
        for t in self.threads:
            t.start()

    def wait_imported(self) -> None:
        """Block until every worker holds the snapshot (or one failed): then it may be released."""
        with self.changed:
            self.changed.wait_for(lambda: self.imported + self.exited >= self.size or self.error)

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for all workers to exit; True once they all have."""
        with self.changed:
            self.changed.wait_for(lambda: self.exited >= self.size, timeout=timeout)
            return self.exited >= self.size

    def join(self) -> None:
        """Wait for every thread (after an error they stop at their next task)."""
        for t in self.threads:
            t.join()

    def _fail(self, exc: BaseException) -> None:
        with self.changed:
            if self.error is None:
                self.error = exc
            self.changed.notify_all()

    def _run(self) -> None:
        src: psycopg.Connection[Any] | None = None
        tgt: psycopg.Connection[Any] | None = None
        try:
            src = connect(
                self.source_url,
                pipeline=self.pipeline,
                role="source",
                options=SESSION_OPTIONS,
                client_encoding="UTF8",
            )
            import_snapshot(src, self.snapshot)
            with self.changed:
                self.imported += 1
                self.changed.notify_all()
            tgt = connect(
                self.target_url,
                pipeline=self.pipeline,
                role="target",
                options=SESSION_OPTIONS,
                client_encoding="UTF8",
            )
            # Safe: nothing is visible until the swap, whose commit is synchronous and flushes the
            # WAL of every stage commit before it.
            tgt.execute("SET synchronous_commit = off")
            tgt.execute("SET maintenance_work_mem = '256MB'")  # index builds: one sort in memory
            tgt.commit()
            while (task := self._next()) is not None:
                if isinstance(task, IndexTask) and src is not None and self._no_source_work():
                    # Only index builds are left for this worker: end its source transaction
                    # now, so the snapshot does not hold back the source's vacuum meanwhile.
                    src.close()
                    src = None
                try:
                    if isinstance(task, IndexTask):
                        self._index(tgt, task)
                    elif src is None:  # cannot happen: copies are never queued after the start
                        raise RuntimeError("a copy task came after the source was released")
                    elif isinstance(task, CopyTask):
                        self._copy(src, tgt, task)
                    else:
                        self._checksum(src, task)
                finally:
                    with self.changed:
                        self.pending -= 1
                        self.changed.notify_all()
        except BaseException as exc:  # handed to the coordinator, re-raised there
            self._fail(exc)
        finally:
            for conn in (src, tgt):
                if conn is not None:
                    conn.close()
            with self.changed:
                self.exited += 1
                self.changed.notify_all()

    def _next(self) -> Task | None:
        """The next task, index builds first; None once no task is left or can still come."""
        with self.changed:
            self.changed.wait_for(lambda: self.queue or self.pending == 0 or self.error)
            if self.error is not None or not self.queue:
                return None
            return self.queue.popleft()

    def _no_source_work(self) -> bool:
        """True once no copy or checksum is queued (none is ever added after the start)."""
        with self.changed:
            return all(isinstance(t, IndexTask) for t in self.queue)

    def _progress(self, oid: int) -> Callable[[int], None]:
        def add(nbytes: int) -> None:
            with self.changed:
                self.tallies[oid].bytes += nbytes

        return add

    def _copy(
        self, src: psycopg.Connection[Any], tgt: psycopg.Connection[Any], task: CopyTask
    ) -> None:
        table = task.table
        stage = sql.Identifier(self.schema, task.stage)
        # A table copied in one piece is truncated in the COPY's own transaction, which lets
        # COPY FREEZE write its rows already frozen: no hint-bit writes or anti-wraparound
        # vacuum of the whole table later. Ranges share their stage, so they cannot.
        freeze = task.rng is None
        copy_in = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT {}{})").format(
            stage,
            copy_column_list(table),
            sql.SQL("BINARY" if task.binary else "TEXT"),
            sql.SQL(", FREEZE" if freeze else ""),
        )
        self._lock_unchanged(src, table)
        try:
            if freeze:
                tgt.execute(sql.SQL("TRUNCATE {}").format(stage))
            count = pump(
                src,
                copy_out_query(table, task.rng, binary=task.binary),
                tgt,
                copy_in,
                on_progress=self._progress(table.oid),
            )
            tgt.commit()
        except SourceReadError as exc:
            raise SourceError(
                f"reading the table failed: {first_line(scrub(str(exc)))}",
                pipeline=self.pipeline,
                table=table.ref.display,
                fix="see the error; re-run the full load once it is fixed",
            ) from None
        except psycopg.Error as exc:
            raise TargetError(
                f"writing the stage failed: {first_line(scrub(str(exc)))}",
                pipeline=self.pipeline,
                table=table.ref.display,
                fix="see the error (disk space, privileges, types); re-run the full load",
            ) from None
        if count.rows_in != count.rows_out:
            raise TargetError(
                f"target accepted {count.rows_in} rows of {count.rows_out} sent",
                pipeline=self.pipeline,
                table=table.ref.display,
                fix="re-run the full load",
            )
        with self.changed:
            tally = self.tallies[table.oid]
            tally.rows += count.rows_out
            tally.target_rows += count.rows_in
            tally.chunks_left -= 1
            if tally.chunks_left == 0:
                tally.finished = time.monotonic()
                if table.primary_key or table.indexes:
                    # Ahead of the queued copies: its sort overlaps with their I/O.
                    self.queue.appendleft(IndexTask(table, task.stage))
                    self.pending += 1
            self.changed.notify_all()

    def _lock_unchanged(self, src: psycopg.Connection[Any], table: TableInfo) -> None:
        """Lock the table as the COPY would, then check its heap is the one described.

        The snapshot is older than the lock: a table rewritten (``ALTER TABLE ... TYPE``, a
        volatile ``ADD COLUMN``, ``TRUNCATE``) after the tables were described looks empty to it,
        and the copy would be short without any error. The lock keeps the heap as it is until
        this worker's transaction ends; ``pg_relation_filenode`` reads the current catalog.
        """
        if table.filenode is None:
            return
        src.execute(
            sql.SQL("LOCK TABLE {} IN ACCESS SHARE MODE").format(
                sql.Identifier(table.ref.schema, table.ref.name)
            )
        )
        row = src.execute("SELECT pg_relation_filenode(%s::oid)", (table.oid,)).fetchone()
        if row is None or row[0] is None or int(row[0]) != table.filenode:
            raise SourceError(
                "the table was rewritten or truncated (ALTER TABLE, TRUNCATE, VACUUM FULL, "
                "CLUSTER) while the full load started; its copy would miss rows",
                pipeline=self.pipeline,
                table=table.ref.display,
                fix="re-run the full load, without DDL on its tables while it loads",
            )

    def _index(self, tgt: psycopg.Connection[Any], task: IndexTask) -> None:
        """Build on the worker's own target session (no extra connection), then commit."""
        build_indexes(tgt, self.schema, task.stage, task.table, pipeline=self.pipeline)
        tgt.commit()

    def _checksum(self, src: psycopg.Connection[Any], task: ChecksumTask) -> None:
        table = task.table
        row = src.execute(
            checksum_query(sql.Identifier(table.ref.schema, table.ref.name), column_list(table))
        ).fetchone()
        assert row is not None
        with self.changed:
            self.tallies[table.oid].checksum = (int(row[0]), str(row[1]))

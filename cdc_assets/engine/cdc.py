"""One CDC batch: apply every change available at its start, exactly once, then release the WAL.

The order of a batch is the whole guarantee:

1. check the slot exists and has not moved past the target's watermark (a dropped or recreated
   slot would otherwise skip changes silently);
2. pick the end point ``upto`` (the source's flushed WAL position now);
3. stream the slot's changes up to ``upto`` (``source/stream.py``) and apply them to the target
   in one transaction, skipping source transactions the target already has (commit LSN below
   the watermark: the previous batch crashed after its target commit, before its slot advance);
4. set the watermark to ``upto`` (or the end of the last applied transaction if later) in that
   same transaction and commit;
5. only then advance the slot to the watermark: WAL of tables outside the pipeline is released
   too, so an idle pipeline on a busy server does not pin WAL.

A crash before 4 leaves the target untouched and the slot where it was; between 4 and 5 the next
batch re-reads what the target already has and skips it by LSN.

The checks of step 1 are the source's (``source/slot_checks.py``, ``source/table_checks.py``,
``source/partitions.py``), so this module holds the batch's order and nothing else; the cheap
questions sensors ask (``pending_bytes``, ``has_pending_changes``, ``slot_lag_bytes``) live in
``source/pending.py`` and are re-exported here for the callers that import them from here.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg

from cdc_assets.decoding import codec
from cdc_assets.decoding.messages import Delete, Insert, Relation, Truncate, Update
from cdc_assets.decoding.pgoutput import BEGIN, COMMIT, INSERT, DecodeError
from cdc_assets.domain import Lsn, PipelineSpec, TableRef
from cdc_assets.errors import (
    CdcError,
    ConsistencyError,
    SourceError,
    TargetError,
)
from cdc_assets.pg.connect import connect, first_line
from cdc_assets.secrets import scrub
from cdc_assets.settings import Settings
from cdc_assets.source import changes, partitions
from cdc_assets.source.pending import has_pending_changes, pending_bytes, slot_lag_bytes
from cdc_assets.source.slot_checks import check_slot, wait_slot_released
from cdc_assets.source.stream import PG_EPOCH_US, ChangeStream
from cdc_assets.source.table_checks import check_publication_covers, check_tables
from cdc_assets.target.batch import DEFAULT_CHUNK, BatchApply
from cdc_assets.target.ddl import add_enum_labels
from cdc_assets.target.leaves import forget_leaves_sql, get_leaves, set_leaves
from cdc_assets.target.watermark import get_watermark, set_watermark

__all__ = [
    "KILL_POINTS",
    "CdcBatchResult",
    "has_pending_changes",
    "pending_bytes",
    "run_cdc_batch",
    "slot_lag_bytes",
]

KILL_POINTS = ("before_apply", "after_apply", "after_commit")
"""The points of a batch at which it calls its ``on_point`` hook, in order: before the first
change is applied, after the watermark is written but before the target commit, and after the
target commit but before the slot advance (the crash tests kill the process at each)."""


@dataclass(frozen=True, slots=True)
class CdcBatchResult:
    """What one batch did; ``end_lsn`` is the target's new watermark and the slot's position."""

    pipeline: str
    transactions: int
    changes: int
    inserts: int
    updates: int
    deletes: int
    truncates: int
    start_lsn: Lsn
    end_lsn: Lsn
    lag_bytes: int
    seconds: float
    tables_changed: tuple[TableRef, ...]
    warnings: tuple[str, ...] = ()
    by_table: "dict[TableRef, tuple[int, int, int, bool]]" = field(default_factory=dict)
    """Per changed source table: inserts, updates, deletes, and whether it was truncated."""
    enum_labels_added: tuple[str, ...] = ()  # "schema.type: 'label' AFTER 'other'", in order
    limited: bool = False
    """The batch stopped at ``CDC_BATCH_MAX_CHANGES``: more changes wait (the loop goes on)."""
    lag_seconds: float = 0.0
    """Seconds since the commit of the oldest source transaction this batch left unapplied
    (the one its stream stopped before), 0 when it left none: ``cdc_lag_seconds``."""


def _lag_seconds(next_commit_us: int | None) -> float:
    """Seconds from a protocol commit time (microseconds since 2000-01-01) to now, >= 0."""
    if next_commit_us is None:
        return 0.0
    return max(0.0, time.time() - (next_commit_us + PG_EPOCH_US) / 1_000_000)


def _tally(counts: list[int] | None) -> tuple[int, int, int]:
    ins, upd, dele = counts or (0, 0, 0)
    return ins, upd, dele


def _sync_enum_labels(
    spec: PipelineSpec,
    src: psycopg.Connection[Any],
    tgt: psycopg.Connection[Any],
    oids: dict[int, TableRef],
) -> list[str]:
    """Add enum labels the source gained to the target's copies, committed before the batch.

    Called after the batch picked its end point: a row using a label commits after the label,
    so every label a row of this batch carries is in the source catalog now. The labels commit
    on their own (a label cannot be used in the transaction that added it); an extra label
    changes no row, so this is safe even if the batch then fails.
    """
    added: list[str] = []
    try:
        for name, labels in changes.enum_types(src, sorted(oids)):
            added += add_enum_labels(tgt, spec.target_schema, name, labels)
        tgt.commit()
    except psycopg.Error as exc:
        tgt.rollback()
        raise TargetError(
            f"adding the source's new enum labels on the target failed: "
            f"{first_line(scrub(str(exc)))}",
            pipeline=spec.name,
            fix="the target user must own the enum types in the target schema; then rerun",
            transient=isinstance(exc, psycopg.OperationalError),
        ) from None
    return added


def _leaf_files(
    spec: PipelineSpec,
    src: psycopg.Connection[Any],
    tgt: psycopg.Connection[Any],
    oids: dict[int, TableRef],
    watermark: Lsn,
) -> tuple[dict[int, int], dict[int, int], list[changes.LeafPartition]]:
    """Leaf partitions' heap files now, as recorded with ``watermark``, and the leaves changed.

    The files now are the source's, the record the target's (``source/partitions.py`` says why
    both are needed); whether a changed leaf is explained by its root's ``TRUNCATE`` is decided
    after reading the batch's changes.
    """
    current = partitions.leaf_files(src, oids)
    now = {leaf.oid: leaf.filenode for leaf in current}
    before = get_leaves(tgt, spec.target_schema, spec.name, watermark) or {}
    tgt.commit()
    return now, before, partitions.changed_leaves(current, before)


def _accept_leaves(spec: PipelineSpec, tgt: psycopg.Connection[Any], leaves: list[int]) -> str:
    """The target statement, as text for a fix, that accepts ``leaves``' new state."""
    return forget_leaves_sql(spec.target_schema, spec.name, leaves).as_string(tgt)


def run_cdc_batch(
    spec: PipelineSpec,
    *,
    source_url: str,
    target_url: str,
    settings: Settings,
    progress: Callable[[str], None] | None = None,
    chunk_changes: int = DEFAULT_CHUNK,
    on_point: Callable[[str], None] | None = None,
) -> CdcBatchResult:
    """Apply every change committed on the source before this call, exactly once.

    ``source_url``/``target_url`` are resolved libpq URLs. Raises :class:`ConsistencyError` when
    the slot is missing, was recreated or advanced past the target's watermark, or no full load set
    a watermark, or the row's tables differ from the publication's (edited after the full
    load); :class:`SchemaChangeError` for a dropped or retyped source column.

    ``on_point`` is called with each name of :data:`KILL_POINTS` as the batch reaches it (the
    crash tests pass a hook that kills the process there); None calls nothing.
    """
    started = time.monotonic()
    log = progress or (lambda _msg: None)
    point = on_point or (lambda _name: None)
    with (
        connect(
            source_url, pipeline=spec.name, role="source", autocommit=True, session=True
        ) as src,
        connect(target_url, pipeline=spec.name, role="target", session=True) as tgt,
    ):
        slot = check_slot(spec, src)
        check_tables(spec, src)
        check_publication_covers(spec, src)
        watermark = get_watermark(tgt, spec.target_schema, spec.name)
        tgt.commit()
        if watermark is None:
            raise ConsistencyError(
                "the target has no CDC watermark: no full load handed over to CDC",
                pipeline=spec.name,
                fix="run the pipeline's full load first (mode full_load_and_cdc)",
            )
        confirmed = slot.confirmed_flush_lsn
        assert confirmed is not None
        if watermark < confirmed:
            raise ConsistencyError(
                f"replication slot {spec.slot_name} is at {confirmed}, past the target's "
                f"watermark {watermark}: it was recreated or advanced outside this pipeline and "
                "the changes in between are lost",
                pipeline=spec.name,
                fix="reset the pipeline and run a new full load",
            )
        oids = {
            oid: t
            for t in spec.tables
            if (oid := changes.table_oid(src, t.schema, t.name)) is not None
        }
        leaves, leaves_before, leaves_changed = _leaf_files(spec, src, tgt, oids, watermark)
        if gone := partitions.gone_leaves(leaves, leaves_before):
            raise partitions.leaves_gone_error(
                spec, src, gone, accept=_accept_leaves(spec, tgt, gone)
            )
        changes.flush_source_wal(src)
        upto = changes.current_flush_lsn(src)
        log(f"batch from {watermark} (slot at {confirmed}) up to {upto}")
        labels_added = _sync_enum_labels(spec, src, tgt, oids)
        for added in labels_added:
            log(f"added enum label {added} on the target (added on the source)")

        batch = BatchApply(
            tgt,
            spec,
            source_type=lambda oid, mod: changes.builtin_type_name(src, oid, mod),
            source_fill=lambda oid, col: changes.added_column_fill(src, oid, col),
            source_columns=lambda oid: changes.column_slots(src, oid),
            source_generated=lambda t: changes.generated_columns(src, t.schema, t.name),
            oids=oids,
            chunk_changes=chunk_changes,
            log=log,
        )
        # The compiled decoder when built (CDC_ASSETS_PURE_PYTHON=1 forces the reference): chosen
        # per batch, not at import, and bound to local names for the hot loop.
        chosen = codec.load()
        decode, decode_new_row = chosen.decode, chosen.decode_new_row
        begin_final_lsn, commit_end_lsn = chosen.begin_final_lsn, chosen.commit_end_lsn
        log(f"decoder: {'compiled' if chosen.compiled else 'pure Python'}")
        transactions = 0
        last_end = 0
        skipping = False
        try:
            stream = ChangeStream(
                source_url,
                pipeline=spec.name,
                slot=spec.slot_name,
                publication=spec.publication_name,
                upto=upto,
                max_changes=settings.cdc_batch_max_changes,
            )
            try:
                point("before_apply")
                for data in stream:
                    first = data[0]
                    if first == BEGIN:
                        skipping = begin_final_lsn(data) < watermark
                        continue
                    if first == COMMIT:
                        if not skipping:
                            transactions += 1
                            last_end = commit_end_lsn(data)
                        skipping = False
                        continue
                    fast = decode_new_row(data)
                    if fast is not None:
                        if not skipping:
                            batch.new_row(fast[0], fast[1], insert=first == INSERT)
                        continue
                    msg = decode(data)
                    kind = type(msg)  # exact types, most frequent first: the hot loop
                    if kind is Update:
                        if not skipping:
                            batch.update(msg)  # type: ignore[arg-type]
                    elif kind is Insert:
                        if not skipping:
                            batch.insert(msg)  # type: ignore[arg-type]
                    elif kind is Delete:
                        if not skipping:
                            batch.delete(msg)  # type: ignore[arg-type]
                    elif isinstance(msg, Relation):
                        batch.relation(msg)  # kept even in skipped transactions
                    elif isinstance(msg, Truncate) and not skipping:
                        batch.truncate(msg)
                    # Origin, Type and logical messages carry nothing to apply.
            finally:
                stream.close()
            read_done = time.monotonic()
            batch.flush(wait=True)
            write_wait = time.monotonic() - read_done
        except DecodeError as exc:
            raise SourceError(
                f"cannot decode the change stream: {exc}",
                pipeline=spec.name,
                fix="report this with the server version; the batch was not applied",
            ) from None
        except psycopg.Error as exc:
            if isinstance(exc, psycopg.errors.ObjectInUse):
                fix = "another process reads this slot; wait for it or stop it"
            else:
                fix = (
                    "see the server log; the batch was rolled back (nothing applied) and the next "
                    "batch tries again, failing the same way until the cause is fixed"
                )
            raise SourceError(
                f"reading or applying changes failed: {first_line(scrub(str(exc)))}",
                pipeline=spec.name,
                fix=fix,
                transient=isinstance(
                    exc,
                    psycopg.OperationalError | psycopg.InterfaceError | psycopg.errors.ObjectInUse,
                ),
            ) from None
        finally:
            batch.close()

        limited = stream.limited
        end = Lsn(max(watermark, last_end) if limited else max(watermark, upto, last_end))
        # A root's TRUNCATE applied by this batch explains its leaves' new files.
        unexplained = [x for x in leaves_changed if x.root_oid not in batch.truncated]
        if unexplained and not limited:
            raise partitions.leaf_truncated_error(
                spec,
                oids,
                unexplained,
                accept=_accept_leaves(spec, tgt, [x.oid for x in unexplained]),
            )
        for leaf in unexplained:
            # The root's TRUNCATE may be past this batch's end: decide at the next batch.
            leaves[leaf.oid] = leaves_before[leaf.oid]
        if batch.truncated:
            # A truncated root gave its leaves new files: record those, not the old ones.
            roots = [r for r in batch.truncated if r in oids]
            leaves.update((x.oid, x.filenode) for x in changes.leaf_partitions(src, roots))
        try:
            set_watermark(tgt, spec.target_schema, spec.name, end)
            set_leaves(tgt, spec.target_schema, spec.name, leaves, end)
            point("after_apply")
            tgt.commit()
        except psycopg.Error as exc:
            raise TargetError(
                f"committing the batch failed: {first_line(scrub(str(exc)))}",
                pipeline=spec.name,
                fix="rerun the batch: nothing of it was committed",
                transient=isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError),
            ) from None
        point("after_commit")
        try:
            wait_slot_released(src, spec.slot_name)
            changes.advance_slot(src, spec.slot_name, end)
        except psycopg.Error as exc:
            raise CdcError(
                f"the batch was applied, but advancing slot {spec.slot_name} failed: "
                f"{first_line(scrub(str(exc)))}",
                pipeline=spec.name,
                fix="rerun the batch: it skips what the target already has",
                transient=isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError),
            ) from None
        lag = changes.lag_bytes(src, spec.slot_name)
    counts = batch.counts
    result = CdcBatchResult(
        pipeline=spec.name,
        transactions=transactions,
        changes=counts.changes,
        inserts=counts.inserts,
        updates=counts.updates,
        deletes=counts.deletes,
        truncates=counts.truncates,
        start_lsn=watermark,
        end_lsn=end,
        lag_bytes=lag,
        seconds=time.monotonic() - started,
        tables_changed=tuple(sorted(counts.tables_changed)),
        by_table={
            t: (*_tally(counts.by_table.get(t)), t in counts.truncated_tables)
            for t in counts.tables_changed
        },
        warnings=tuple(batch.warnings),
        enum_labels_added=tuple(labels_added),
        limited=limited,
        lag_seconds=_lag_seconds(stream.next_commit_us),
    )
    log(
        f"applied {result.transactions} transactions, {result.changes} changes up to {end}; "
        f"lag {lag} bytes; {result.seconds:.2f}s total, of which reading and decoding ended at "
        f"{read_done - started:.2f}s, then {write_wait:.2f}s waiting for the last chunk"
    )
    return result

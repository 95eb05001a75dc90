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
"""

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from cdc_assets.decoding import codec
from cdc_assets.decoding.messages import Delete, Insert, Relation, Truncate, Update
from cdc_assets.decoding.pgoutput import BEGIN, COMMIT, INSERT, DecodeError
from cdc_assets.domain import Lsn, PipelineSpec, TableRef
from cdc_assets.errors import (
    CdcError,
    ConsistencyError,
    SchemaChangeError,
    SourceError,
    TargetError,
)
from cdc_assets.pg.connect import connect, first_line
from cdc_assets.secrets import scrub
from cdc_assets.settings import Settings
from cdc_assets.source import changes
from cdc_assets.source.stream import ChangeStream
from cdc_assets.target.batch import DEFAULT_CHUNK, BatchApply
from cdc_assets.target.ddl import add_enum_labels
from cdc_assets.target.leaves import LEAVES_TABLE, get_leaves, set_leaves
from cdc_assets.target.watermark import get_watermark, set_watermark

KILL_ENV = "CDC_ASSETS_TEST_KILL_AT"
"""Test-only: name of a point at which the batch process SIGKILLs itself (crash tests)."""

KILL_POINTS = ("before_apply", "after_apply", "after_commit")

_SESSION = (
    "SET TimeZone = 'UTC'",
    "SET DateStyle = 'ISO, YMD'",
    "SET IntervalStyle = 'postgres'",
    "SET extra_float_digits = 3",
)
"""Both sides speak the same text forms: pgoutput prints values with the reading session's settings
and COPY parses them with the target session's."""


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
    enum_labels_added: tuple[str, ...] = ()  # "schema.type: 'label' AFTER 'other'", in order


def _kill_point(name: str) -> None:
    """Crash the process here when a crash test asks for it; a no-op otherwise."""
    if os.environ.get(KILL_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def _session(conn: psycopg.Connection[Any]) -> None:
    for stmt in _SESSION:
        conn.execute(stmt)


SLOT_BUSY_WAIT_S = 15.0


def _check_slot(spec: PipelineSpec, src: psycopg.Connection[Any]) -> changes.SlotInfo:
    slot = changes.get_slot(src, spec.slot_name)
    deadline = time.monotonic() + SLOT_BUSY_WAIT_S
    # A reader killed a moment ago keeps the slot until its backend notices: give it a moment.
    while slot is not None and slot.active_pid is not None and time.monotonic() < deadline:
        time.sleep(0.2)
        slot = changes.get_slot(src, spec.slot_name)
    if slot is None:
        raise ConsistencyError(
            f"replication slot {spec.slot_name} is missing: changes since the last batch are lost",
            pipeline=spec.name,
            fix="reset the pipeline and run a new full load",
        )
    if slot.plugin != "pgoutput" or slot.confirmed_flush_lsn is None:
        raise ConsistencyError(
            f"replication slot {spec.slot_name} is not a usable pgoutput slot "
            f"(plugin {slot.plugin}, wal_status {slot.wal_status})",
            pipeline=spec.name,
            fix="reset the pipeline and run a new full load",
        )
    if slot.wal_status == "lost":
        raise ConsistencyError(
            f"replication slot {spec.slot_name} lost the WAL it needed (wal_status lost)",
            pipeline=spec.name,
            fix="reset the pipeline and run a new full load; raise max_slot_wal_keep_size",
        )
    if slot.active_pid is not None:
        raise SourceError(
            f"replication slot {spec.slot_name} is in use by server process {slot.active_pid}",
            pipeline=spec.name,
            fix="wait for the other reader to finish, or terminate that process",
        )
    if not changes.publication_exists(src, spec.publication_name):
        raise ConsistencyError(
            f"publication {spec.publication_name} is missing",
            pipeline=spec.name,
            fix="reset the pipeline and run a new full load",
        )
    return slot


def _wait_slot_released(src: psycopg.Connection[Any], slot: str) -> None:
    """The walsender of our stream lets go of the slot a moment after the session ends."""
    deadline = time.monotonic() + SLOT_BUSY_WAIT_S
    while time.monotonic() < deadline:
        info = changes.get_slot(src, slot)
        if info is None or info.active_pid is None:
            return
        time.sleep(0.05)


def _check_tables(spec: PipelineSpec, src: psycopg.Connection[Any]) -> None:
    for table in spec.tables:
        ident = changes.table_identity(src, table.schema, table.name)
        if ident is None:
            raise SourceError(
                "source table does not exist",
                pipeline=spec.name,
                table=str(table),
                fix=_missing_table_fix(spec, src, table),
            )
        has_key, replident = ident
        # A key pgoutput sends: the primary key (identity default), the identity index's columns
        # (USING INDEX, with or without a primary key; the target has a unique index on them),
        # or every column (FULL).
        if not (replident == "f" or (has_key and replident in ("d", "i"))):
            raise SourceError(
                "CDC needs a primary key or REPLICA IDENTITY FULL to match updates and deletes",
                pipeline=spec.name,
                table=str(table),
                fix=f"add a primary key or run ALTER TABLE {table} REPLICA IDENTITY FULL (or "
                "USING INDEX <a unique index on NOT NULL columns>)",
            )


def _missing_table_fix(spec: PipelineSpec, src: psycopg.Connection[Any], table: TableRef) -> str:
    """The fix for a pipeline table missing by name: renamed (still published, by OID) or gone.

    A renamed table's changes wait in the slot; the batch follows tables by OID, so renaming it
    back loses nothing.
    """
    published = changes.publication_tables(src, spec.publication_name) or frozenset()
    others = sorted(published - frozenset(spec.tables))
    if not others:
        return "restore the table or remove it from the pipeline and reset it"
    new = others[0] if len(others) == 1 else None
    if new is None:
        where = ", ".join(map(str, others))
        return (
            f"publication {spec.publication_name} now also lists {where}: if the table was "
            f"renamed, rename it back to {table.name} and rerun (nothing is lost), or reset the "
            "pipeline with the new name in its tables (a new full load)"
        )
    steps = []
    if new.schema != table.schema:
        steps.append(
            sql.SQL("ALTER TABLE {} SET SCHEMA {}").format(
                sql.Identifier(new.schema, new.name), sql.Identifier(table.schema)
            )
        )
    if new.name != table.name:
        steps.append(
            sql.SQL("ALTER TABLE {} RENAME TO {}").format(
                sql.Identifier(table.schema, new.name), sql.Identifier(table.name)
            )
        )
    back = sql.SQL("; ").join(steps)
    return (
        f"it looks renamed or moved to {new} (publication {spec.publication_name} lists it): run "
        f"{back.as_string(src)} on the source and rerun, nothing is lost; to adopt the new name, "
        f"reset the pipeline with {new} in its tables instead of {table} (a new full load)"
    )


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

    pgoutput never sends a ``TRUNCATE`` of a single partition when the publication publishes via
    the root (it sends nothing at all), so without this check the target would keep that
    partition's rows silently. A leaf with a new file was truncated (or rewritten) since the last
    batch, unless the batch then applies a ``TRUNCATE`` of its root (which gives every leaf a new
    file and empties them all anyway): the caller decides after reading the batch's changes.
    """
    leaves = changes.leaf_partitions(src, sorted(oids))
    now = {leaf.oid: leaf.filenode for leaf in leaves}
    before = get_leaves(tgt, spec.target_schema, spec.name, watermark) or {}
    tgt.commit()
    changed = [x for x in leaves if x.oid in before and before[x.oid] != x.filenode]
    return now, before, changed


def _leaf_truncated(
    spec: PipelineSpec,
    tgt: psycopg.Connection[Any],
    oids: dict[int, TableRef],
    leaves: list[changes.LeafPartition],
) -> SchemaChangeError:
    """The error for leaves truncated behind the publication's back, with fixes that work.

    Their position in the WAL is unknown, so it cannot be applied exactly (the rows inserted into
    a partition after it are in the stream, mixed with those before). All of them are named at
    once, so one rewrite of many leaves (a volatile ``ADD COLUMN`` on the root) needs one fix.
    """
    accept = sql.SQL("DELETE FROM {} WHERE pipeline = {} AND leaf IN ({})").format(
        sql.Identifier(spec.target_schema, LEAVES_TABLE),
        sql.Literal(spec.name),
        sql.SQL(", ").join(sql.Literal(leaf.oid) for leaf in leaves),
    )
    named = ", ".join(
        f"{leaf.schema}.{leaf.name} of {oids[leaf.root_oid]} ({leaf.bound})" for leaf in leaves
    )
    several = len(leaves) > 1
    return SchemaChangeError(
        f"partition{'s' if several else ''} {named} {'were' if several else 'was'} truncated or "
        "rewritten on the source since the last batch; logical decoding does not send a TRUNCATE "
        "of one partition (the publication publishes via the partition root), so the target may "
        "still hold rows that partition no longer has; nothing of this batch was applied",
        pipeline=spec.name,
        table=", ".join(sorted({str(oids[leaf.root_oid]) for leaf in leaves})),
        fix="reset the pipeline for a new full load; if "
        f"{'those partitions were' if several else 'that partition was'} only rewritten "
        f"(VACUUM FULL, CLUSTER, ADD COLUMN with a volatile default) and nothing was removed, run "
        f"{accept.as_string(tgt)} on the target and rerun",
    )


def _leaves_gone(
    spec: PipelineSpec, src: psycopg.Connection[Any], tgt: psycopg.Connection[Any], gone: list[int]
) -> SchemaChangeError:
    """The error for partitions that left a pipeline table since the last batch.

    ``DETACH PARTITION`` and ``DROP TABLE`` of a partition remove its rows from the partitioned
    table without a DELETE in the stream, so the target's copy would keep them for good. Checked
    before reading the stream: nothing of the batch is applied.
    """
    names = changes.relation_names(src, gone)
    named = ", ".join(
        f"{names[oid]} (OID {oid}, detached)" if oid in names else f"OID {oid} (dropped)"
        for oid in gone
    )
    accept = sql.SQL("DELETE FROM {} WHERE pipeline = {} AND leaf IN ({})").format(
        sql.Identifier(spec.target_schema, LEAVES_TABLE),
        sql.Literal(spec.name),
        sql.SQL(", ").join(sql.Literal(oid) for oid in gone),
    )
    return SchemaChangeError(
        f"partition{'s' if len(gone) > 1 else ''} {named} left a partitioned table of the "
        "pipeline since the last batch (DETACH PARTITION or DROP TABLE); logical decoding sends "
        "no DELETE for its rows, so the target still holds them; nothing of this batch was applied",
        pipeline=spec.name,
        table=", ".join(map(str, sorted(spec.tables))),
        fix="reset the pipeline for a new full load; or delete those rows from the target table "
        f"yourself, then run {accept.as_string(tgt)} on the target and rerun",
    )


def _check_publication_covers(spec: PipelineSpec, src: psycopg.Connection[Any]) -> None:
    """Fail unless the publication sends exactly the row's tables.

    The publication is made from the row's tables by the full load; ``tables`` edited afterwards
    (by SQL: the row is the whole configuration) would otherwise leave an added table never
    copied nor captured, or a removed one still applied, while the row stays ACTIVE. Until
    table-level edits exist, the only way to change the table list is a reset and a new full
    load, so that is the fix the message names.
    """
    published = changes.publication_tables(src, spec.publication_name)
    if published is None:
        return  # no publication: the callers report that with its own message
    wanted = frozenset(spec.tables)
    missing, extra = sorted(wanted - published), sorted(published - wanted)
    if not missing and not extra:
        return
    parts = []
    if missing:
        parts.append(
            "in the row but not captured (added after the full load, or recreated: never "
            "copied): " + ", ".join(t.display for t in missing)
        )
    if extra:
        parts.append(
            "captured but no longer in the row (removed after the full load, or renamed on "
            "the source): " + ", ".join(t.display for t in extra)
        )
    raise ConsistencyError(
        f"the pipeline's tables differ from publication {spec.publication_name}: "
        + "; ".join(parts),
        pipeline=spec.name,
        table=", ".join(t.display for t in missing + extra),
        fix=f"run `cdc-assets pipeline reset {spec.name}` to copy and capture the row's tables "
        "with a new full load (editing the tables of a loaded pipeline is not supported yet)",
    )


def run_cdc_batch(
    spec: PipelineSpec,
    *,
    source_url: str,
    target_url: str,
    settings: Settings,
    progress: Callable[[str], None] | None = None,
    chunk_changes: int = DEFAULT_CHUNK,
) -> CdcBatchResult:
    """Apply every change committed on the source before this call, exactly once.

    ``source_url``/``target_url`` are resolved libpq URLs. Raises :class:`ConsistencyError` when
    the slot is missing, was recreated or advanced past the target's watermark, or no full load set
    a watermark, or the row's tables differ from the publication's (edited after the full
    load); :class:`SchemaChangeError` for a dropped or retyped source column.
    """
    started = time.monotonic()
    log = progress or (lambda _msg: None)
    with (
        connect(source_url, pipeline=spec.name, role="source", autocommit=True) as src,
        connect(target_url, pipeline=spec.name, role="target") as tgt,
    ):
        _session(src)
        _session(tgt)
        tgt.commit()
        slot = _check_slot(spec, src)
        _check_tables(spec, src)
        _check_publication_covers(spec, src)
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
        if gone := sorted(set(leaves_before) - set(leaves)):
            raise _leaves_gone(spec, src, tgt, gone)
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
                _kill_point("before_apply")
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
            ) from None
        finally:
            batch.close()

        limited = stream.limited
        end = Lsn(max(watermark, last_end) if limited else max(watermark, upto, last_end))
        # A root's TRUNCATE applied by this batch explains its leaves' new files.
        unexplained = [x for x in leaves_changed if x.root_oid not in batch.truncated]
        if unexplained and not limited:
            raise _leaf_truncated(spec, tgt, oids, unexplained)
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
            _kill_point("after_apply")
            tgt.commit()
        except psycopg.Error as exc:
            raise TargetError(
                f"committing the batch failed: {first_line(scrub(str(exc)))}",
                pipeline=spec.name,
                fix="rerun the batch: nothing of it was committed",
            ) from None
        _kill_point("after_commit")
        try:
            _wait_slot_released(src, spec.slot_name)
            changes.advance_slot(src, spec.slot_name, end)
        except psycopg.Error as exc:
            raise CdcError(
                f"the batch was applied, but advancing slot {spec.slot_name} failed: "
                f"{first_line(scrub(str(exc)))}",
                pipeline=spec.name,
                fix="rerun the batch: it skips what the target already has",
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
        warnings=tuple(batch.warnings),
        enum_labels_added=tuple(labels_added),
    )
    log(
        f"applied {result.transactions} transactions, {result.changes} changes up to {end}; "
        f"lag {lag} bytes; {result.seconds:.2f}s total, of which reading and decoding ended at "
        f"{read_done - started:.2f}s, then {write_wait:.2f}s waiting for the last chunk"
    )
    return result


def pending_bytes(spec: PipelineSpec, *, source_url: str) -> int:
    """Source WAL after the slot's confirmed position: > 0 means a batch has work (or WAL to free).

    Cheap (one catalog query), for sensors. Raises :class:`ConsistencyError` when the slot is gone,
    so a sensor launches a batch that fails with the clear message instead of waiting forever.
    """
    with connect(source_url, pipeline=spec.name, role="source", autocommit=True) as src:
        if changes.get_slot(src, spec.slot_name) is None:
            raise ConsistencyError(
                f"replication slot {spec.slot_name} is missing",
                pipeline=spec.name,
                fix="reset the pipeline and run a new full load",
            )
        return changes.lag_bytes(src, spec.slot_name)


def has_pending_changes(spec: PipelineSpec, *, source_url: str) -> bool:
    """True when the slot holds at least one change of the pipeline's own tables.

    ``pending_bytes`` counts all WAL, and on a busy cluster (or one that also hosts Dagster's
    storage) WAL always grows, which would launch a batch every sensor tick for every pipeline.
    Peeking one change through the pipeline's publication answers the real question; pgoutput
    (PostgreSQL 15+) skips transactions that touch none of its tables, so this costs decoding
    the WAL since the last batch, which the once-a-minute schedule keeps short by advancing
    idle slots. When the answer cannot be had (slot in use, publication gone) it says True, so
    a batch runs and reports the real state. Raises :class:`ConsistencyError` when the row's
    tables differ from the publication's: an added table's changes never show in the peek, so
    without this the sensor would wait silently instead of launching the batch that fails.
    """
    with connect(source_url, pipeline=spec.name, role="source", autocommit=True) as src:
        if changes.get_slot(src, spec.slot_name) is None:
            raise ConsistencyError(
                f"replication slot {spec.slot_name} is missing",
                pipeline=spec.name,
                fix="reset the pipeline and run a new full load",
            )
        _check_publication_covers(spec, src)
        if changes.lag_bytes(src, spec.slot_name) == 0:
            return False
        try:
            row = src.execute(
                "SELECT count(*) FROM pg_logical_slot_peek_binary_changes("
                "%s, NULL, 1, 'proto_version', '1', 'publication_names', %s)",
                (spec.slot_name, spec.publication_name),
            ).fetchone()
        except (psycopg.errors.ObjectInUse, psycopg.errors.UndefinedObject):
            return True
        return bool(row and row[0])


def slot_lag_bytes(spec: PipelineSpec, *, source_url: str) -> int:
    """Same as :func:`pending_bytes`; the name the lag asset check reads best with."""
    return pending_bytes(spec, source_url=source_url)

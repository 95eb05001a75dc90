"""One CDC batch on the target: route decoded changes to tables, follow schema changes, truncate.

Everything here runs inside one target transaction that the engine commits together with the
watermark. Schema rules: a column the source added is added on the target (same type) before any
row carrying it is staged; a column the target has but the source no longer sends (dropped or
renamed), or one whose type differs, stops the batch with :class:`SchemaChangeError`, because
applying past it would silently lose or mangle data.

Changes are applied in relation-version order: each Relation message starts a new shape, and the
rows of a shape are written with its own column set. A column a shape carries that neither the
target nor the source has any more (dropped later on the source, and on the target by following the
drop's fix, or added and dropped again within the batch) is left out of that shape's rows: its
values end up nowhere on the source either. Tables are followed by relation OID, not by name, so a
table renamed and renamed back keeps every change made while it had the other name.
"""

from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from cdc_assets.decoding.messages import Delete, Insert, Relation, Row, Truncate, Update
from cdc_assets.domain import AddedColumnFill, GeneratedColumn, PipelineSpec, TableRef
from cdc_assets.errors import SchemaChangeError, SourceError, TargetError
from cdc_assets.pg.connect import first_line
from cdc_assets.secrets import scrub
from cdc_assets.target.apply import Chunk, ProjectedTableApply, TableApply
from cdc_assets.target.catalog import TargetTable, describe_table

DEFAULT_CHUNK = 50_000


def _write_all(chunks: list[Chunk]) -> None:
    for chunk in chunks:
        chunk.write()


def dropped_since(
    shape: Sequence[str], column: str, slots: Sequence[tuple[int, str, bool]]
) -> bool | None:
    """Whether ``column`` of an older shape was dropped on the source since (False: still there).

    ``slots`` are the relation's columns now, dropped ones included: ``(attnum, name, alive)``.
    A shape lists the columns alive when it was sent, in attribute order; attribute numbers are
    never reused, and a column added later gets a higher one. So between the nearest columns of
    the shape still alive under their names, a live column the shape does not name can only be
    one of the shape's columns renamed: then (and when the column was last, where a column added
    later looks the same) the answer is None, unknown, and the values cannot be placed safely.
    """
    alive = {name: num for num, name, live in slots if live}
    if column in alive:
        return False
    i = list(shape).index(column)
    low = next((alive[c] for c in reversed(shape[:i]) if c in alive), 0)
    high = next((alive[c] for c in shape[i + 1 :] if c in alive), None)
    named = set(shape)
    for num, name, live in slots:
        if live and num > low and (high is None or num < high) and name not in named:
            return None
    return True


def target_table(spec: PipelineSpec, source: TableRef) -> TableRef:
    """Where the full load put ``source``: same table name, in the pipeline's target schema."""
    return TableRef(spec.target_schema, source.name)


@dataclass
class BatchCounts:
    """What a batch applied, for the result and the run's metadata."""

    inserts: int = 0
    updates: int = 0
    deletes: int = 0
    truncates: int = 0
    tables_changed: set[TableRef] = field(default_factory=set)  # source tables
    by_table: dict[TableRef, list[int]] = field(default_factory=dict)
    """[inserts, updates, deletes] per source table (truncates are in ``truncated_tables``)."""
    truncated_tables: set[TableRef] = field(default_factory=set)

    @property
    def changes(self) -> int:
        """Row changes plus truncated tables."""
        return self.inserts + self.updates + self.deletes + self.truncates


class BatchApply:
    """Routes one batch's changes to per-table appliers and flushes them in bounded chunks."""

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        spec: PipelineSpec,
        *,
        source_type: Callable[[int, int], str | None],
        source_fill: Callable[[int, str], AddedColumnFill],
        source_columns: Callable[[int], list[tuple[int, str, bool]]] = lambda _oid: [],
        oids: dict[int, TableRef] | None = None,
        chunk_changes: int = DEFAULT_CHUNK,
        log: Callable[[str], None] | None = None,
        source_generated: Callable[[TableRef], tuple[GeneratedColumn, ...]] | None = None,
    ) -> None:
        """``source_type(oid, typmod)`` spells a built-in source column type (None: user type).

        User-defined types are mapped by the full load (enums re-created, domains to their base,
        others to text), so their target spelling legitimately differs: they are not compared, and
        a user-typed column added on the source is added as ``text`` (the value's text form).
        ``source_fill(oid, column)`` says how the source filled an added column's existing rows;
        ``source_columns(oid)`` lists the relation's columns now (see :func:`dropped_since`).
        ``oids`` maps the source OID of each pipeline table (resolved by name at the batch's start)
        to it.
        """
        self.conn = conn
        self.spec = spec
        self.source_type = source_type
        self.source_fill = source_fill
        self.source_generated = source_generated  # generated columns never show in a Relation
        self.source_columns = source_columns
        self.oids = dict(oids or {})
        self.chunk_changes = chunk_changes
        self.log = log or (lambda _msg: None)
        self.warnings: list[str] = []  # for the operator: the run logs them as warnings
        self.tables = set(spec.tables)
        self.appliers: dict[int, TableApply] = {}  # relation id -> applier of its current shape
        self.relations: dict[int, Relation] = {}  # relation id -> shape the applier was made for
        self.latest: dict[int, Relation] = {}  # relation id -> last Relation message seen
        self._active: dict[int, TableApply] = {}  # relation id -> applier, up to date (hot path)
        self.counts = BatchCounts()
        self.truncated: set[int] = set()  # relation ids of tables truncated by this batch
        self._pending = 0
        self._stage_seq = 0
        self._source_of: dict[TableRef, TableRef] = {}  # target table -> source table
        self._writer = futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="cdc-apply")
        self._inflight: futures.Future[None] | None = None

    # -- schema ------------------------------------------------------------------------------

    def relation(self, rel: Relation) -> None:
        """Remember a Relation message; the target is checked at the relation's next change.

        pgoutput sends a relation's schema once per decoding session, possibly inside a source
        transaction the batch skips (already applied), so it must be kept even then; and checking
        lazily means a schema from a skipped transaction never alters the target.
        """
        self.latest[rel.relation_id] = rel
        self._active.pop(rel.relation_id, None)

    def _activate(self, rel: Relation) -> TableApply:
        """Check the target against ``rel`` (adding columns), and route its changes from now."""
        # By OID first: a table renamed and renamed back sends its old changes under the other name.
        source = self.oids.get(rel.relation_id) or TableRef(rel.namespace, rel.name)
        if source not in self.tables:
            # The publication lists exactly the pipeline's tables, so this is a table renamed or
            # moved on the source (or a publication edited by hand): its changes would be lost.
            seen = TableRef(rel.namespace, rel.name)
            raise SchemaChangeError(
                f"changes arrive for {seen}, which is not one of the pipeline's tables (relation "
                f"OID {rel.relation_id}): was a table renamed or moved while another took its "
                f"name, or was it added to publication {self.spec.publication_name}?",
                pipeline=self.spec.name,
                table=str(seen),
                fix="reset the pipeline with the tables it should follow for a new full load",
            )
        self.wait()
        current = self.appliers.pop(rel.relation_id, None)
        if current is not None:
            self._flush_one(current)
        target, left_out = self._reconcile(source, rel)
        self.relations[rel.relation_id] = rel
        applier = self._applier(source, rel, target, left_out)
        self.appliers[rel.relation_id] = applier
        self._source_of[target.table] = source
        applier.tally = self.counts.by_table.setdefault(source, [0, 0, 0])
        return applier

    def _reconcile(self, source: TableRef, rel: Relation) -> tuple[TargetTable, frozenset[str]]:
        """Check (and extend) the target for ``rel``; returns it and the columns to leave out."""
        dest = target_table(self.spec, source)
        target = describe_table(self.conn, dest)
        if target is None:
            raise TargetError(
                f"target table {dest} does not exist",
                pipeline=self.spec.name,
                table=str(source),
                fix="reset the pipeline and run a new full load",
            )
        if self.source_generated is not None:
            target = self._add_generated(source, dest, target, self.source_generated(source))
        names = {c.name for c in rel.columns}
        gone = [c for c in target.columns if c not in names]
        if gone:
            now = self.source_columns(rel.relation_id)
            provable = all(dropped_since(list(target.columns), c, now) for c in gone)
            raise self._gone(
                source, dest, gone, [c for c in names if c not in target.columns], provable
            )
        altered = False
        left_out: set[str] = set()
        slots: list[tuple[int, str, bool]] | None = None
        shape = [c.name for c in rel.columns]
        for col in rel.columns:
            if col.name in target.generated:
                continue  # published generated column (PostgreSQL 18+): the target computes it
            builtin = self.source_type(col.type_oid, col.type_modifier)
            src_type = builtin or "text"
            have = target.columns.get(col.name)
            if have is None:
                slots = self.source_columns(rel.relation_id) if slots is None else slots
                dropped = dropped_since(shape, col.name, slots)
                if dropped is None:
                    raise SchemaChangeError(
                        f"column {col.name!r} of earlier changes is gone from the source, and may "
                        "have been renamed: its values cannot be placed",
                        pipeline=self.spec.name,
                        table=str(source),
                        fix="reset the pipeline for a new full load",
                    )
                if dropped:
                    # Dropped later on the source (and on the target by the drop's fix), or added
                    # and dropped again within the batch: this shape's values of it are gone.
                    left_out.add(col.name)
                    self.log(f"{dest}: column {col.name} left out of earlier rows (dropped since)")
                    continue
                self._add_column(
                    source,
                    rel.relation_id,
                    dest,
                    col.name,
                    type_sql=src_type,
                    builtin=builtin is not None,
                )
                self.log(f"{dest}: added column {col.name} {src_type} (added on the source)")
                altered = True
            elif builtin is not None and have != builtin:
                raise SchemaChangeError(
                    f"column {col.name!r} changed type on the source from {have} to {src_type}",
                    pipeline=self.spec.name,
                    table=str(source),
                    fix=f"alter column {col.name!r} of {dest} to {src_type} on the target "
                    "(or reset the pipeline for a new full load), then rerun",
                )
        if altered:
            refreshed = describe_table(self.conn, dest)
            assert refreshed is not None
            target = refreshed
        return target, frozenset(left_out)

    def _gone(
        self, source: TableRef, dest: TableRef, gone: list[str], new: list[str], dropped: bool
    ) -> SchemaChangeError:
        """The error for target columns the source no longer sends, with a fix that works.

        Dropping them on the target is enough for a drop: the rerun writes earlier rows without
        them (see :meth:`_reconcile`). That fix is named only when the source's catalog proves a
        drop (:func:`dropped_since`, with the target's column order as the older shape): a rename
        cannot be followed exactly (rows changed before it carry the value under the old name),
        and after a drop fix the rerun would stop at the same doubt. Otherwise the fix is a reset.
        """
        drop = sql.SQL("ALTER TABLE {} {}").format(
            sql.Identifier(dest.schema, dest.name),
            sql.SQL(", ").join(sql.SQL("DROP COLUMN {}").format(sql.Identifier(c)) for c in gone),
        )
        what = ", ".join(map(repr, gone))
        plural = len(gone) > 1
        if dropped:
            fix = (
                f"run {drop.as_string(self.conn)} on the target (the source's catalog shows a "
                "drop), then rerun; or reset the pipeline for a new full load"
            )
        else:
            fix = (
                "reset the pipeline for a new full load (the source's catalog cannot tell a drop "
                f"from a rename to {', '.join(map(repr, sorted(new))) or 'another column'}; "
                "a rename cannot be followed exactly)"
            )
        return SchemaChangeError(
            f"column{'s' if plural else ''} {what} {'were' if plural else 'was'} dropped or "
            f"renamed on the source; CDC cannot apply changes without {'them' if plural else 'it'}",
            pipeline=self.spec.name,
            table=str(source),
            fix=fix,
        )

    def _add_generated(
        self,
        source: TableRef,
        dest: TableRef,
        target: TargetTable,
        generated: tuple[GeneratedColumn, ...],
    ) -> TargetTable:
        """Create on the target, generated too, a generated column added on the source.

        Its values never arrive as changes (pgoutput leaves generated columns out before
        PostgreSQL 18, virtual ones always), so the target computes them, for existing rows too.
        """
        have = set(target.columns) | target.generated
        added = [g for g in generated if g.name not in have]
        for g in added:
            if g.type_sql is None:
                raise SchemaChangeError(
                    f"generated column {g.name!r} of a user-defined type was added on the source",
                    pipeline=self.spec.name,
                    table=str(source),
                    fix="reset the pipeline for a new full load, which maps its type",
                )
            virtual = g.virtual and self.conn.info.server_version >= 180000
            stmt = sql.SQL("ALTER TABLE {} ADD COLUMN {} {} GENERATED ALWAYS AS ({}) {}").format(
                sql.Identifier(dest.schema, dest.name),
                sql.Identifier(g.name),
                sql.SQL(g.type_sql),  # type: ignore[arg-type]  # format_type() output
                sql.SQL(g.expression),  # type: ignore[arg-type]  # pg_get_expr() output
                sql.SQL("VIRTUAL" if virtual else "STORED"),
            )
            try:
                with self.conn.transaction():  # a savepoint: the batch's transaction goes on
                    self.conn.execute(stmt)
            except (psycopg.errors.ProgrammingError, psycopg.errors.NotSupportedError) as exc:
                raise SchemaChangeError(
                    f"generated column {g.name!r} was added on the source, and its expression "
                    f"cannot be created on the target: {first_line(scrub(str(exc)))}",
                    pipeline=self.spec.name,
                    table=str(source),
                    fix="create on the target what the expression uses and rerun, or reset the "
                    "pipeline for a new full load",
                ) from None
            self.log(f"{dest}: added generated column {g.name} (added on the source)")
        if not added:
            return target
        refreshed = describe_table(self.conn, dest)
        assert refreshed is not None
        return refreshed

    def _add_column(
        self,
        source: TableRef,
        relation_id: int,
        dest: TableRef,
        column: str,
        *,
        type_sql: str,
        builtin: bool,
    ) -> None:
        """Add a source column on the target; existing rows get what they got on the source.

        ``ADD COLUMN ... DEFAULT`` fills existing source rows without sending them as changes, so
        the target column is added with that same value as a default (then the default is
        dropped: every later row arrives with its value). A value computed per row (volatile
        default, identity) cannot be known here: the batch goes on, and says so as a warning.
        """
        fill = self.source_fill(relation_id, column)
        value = fill.missing
        table = sql.Identifier(dest.schema, dest.name)
        ident = sql.Identifier(column)
        type_ = sql.SQL(type_sql)  # type: ignore[arg-type]  # format_type() output, catalog text
        stmt = sql.SQL("ALTER TABLE {} ADD COLUMN {} {}").format(table, ident, type_)
        if value is not None:
            stmt += sql.SQL(" DEFAULT {}::{}").format(sql.Literal(value), type_)
        self.conn.execute(stmt)
        if fill.per_row:
            self.warnings.append(
                f"pipeline {self.spec.name!r}, table {source}: column {column!r} was added on the "
                "source with a default computed per row (volatile default or identity) or got a "
                "default after it was added; if the former, rows that existed before it hold "
                "values on the source that no change event carried, and NULL on the target until "
                "they change (fix: reset the pipeline for a new full load if those values matter)"
            )
        if value is not None:
            self.conn.execute(
                sql.SQL("ALTER TABLE {} ALTER COLUMN {} DROP DEFAULT").format(table, ident)
            )

    def _applier(
        self, source: TableRef, rel: Relation, target: TargetTable, left_out: frozenset[str]
    ) -> TableApply:
        columns = [c.name for c in rel.columns if c.name not in left_out]
        pk = target.primary_key
        if rel.replica_identity in ("d", "i") and rel.key_columns:
            key = rel.key_columns
            upsert = set(pk) == set(key)
        elif rel.replica_identity == "f":
            key = pk if pk and all(k in columns for k in pk) else ()
            upsert = bool(key)
        else:
            raise SourceError(
                "table has no primary key and no REPLICA IDENTITY FULL, so updates and deletes "
                "cannot be matched on the target",
                pipeline=self.spec.name,
                table=str(source),
                fix=f"add a primary key to {source} or run ALTER TABLE {source} REPLICA "
                "IDENTITY FULL on the source",
            )
        self._stage_seq += 1
        kind: type[TableApply] = TableApply
        extra: dict[str, Any] = {}
        if left_out:
            kind = ProjectedTableApply
            extra["keep"] = [i for i, c in enumerate(rel.columns) if c.name not in left_out]
        applier = kind(
            self.conn,
            pipeline=self.spec.name,
            target=target,
            columns=columns,
            key=key,
            upsert=upsert,
            stage_name=f"_cdc_stage_{self.spec.name}_{self._stage_seq}",
            generated=target.generated,
            **extra,
        )
        applier.barrier = self.wait
        return applier

    # -- changes -----------------------------------------------------------------------------

    def _for(self, relation_id: int) -> TableApply:
        rel = self.latest.get(relation_id)
        if rel is None:
            raise SourceError(
                f"change for relation {relation_id} arrived before its Relation message",
                pipeline=self.spec.name,
                fix="report this: the pgoutput stream is out of order",
            )
        if self.relations.get(relation_id) is not rel:
            applier = self._activate(rel)
        else:
            applier = self.appliers[relation_id]
        self._active[relation_id] = applier
        return applier

    def new_row(self, relation_id: int, row: Row, *, insert: bool) -> None:
        """Stage an insert, or an update without old tuple, from :func:`decode_new_row`."""
        applier = self._active.get(relation_id) or self._for(relation_id)
        if insert:
            applier.insert(row)
            self.counts.inserts += 1
            applier.tally[0] += 1
        else:
            applier.update(None, None, row)
            self.counts.updates += 1
            applier.tally[1] += 1
        self._changed(applier)

    def insert(self, msg: Insert) -> None:
        """Stage an insert."""
        applier = self._active.get(msg.relation_id) or self._for(msg.relation_id)
        applier.insert(msg.new)
        self.counts.inserts += 1
        applier.tally[0] += 1
        self._changed(applier)

    def update(self, msg: Update) -> None:
        """Stage an update."""
        applier = self._active.get(msg.relation_id) or self._for(msg.relation_id)
        applier.update(msg.old_kind, msg.old, msg.new)
        self.counts.updates += 1
        applier.tally[1] += 1
        self._changed(applier)

    def delete(self, msg: Delete) -> None:
        """Stage a delete."""
        applier = self._active.get(msg.relation_id) or self._for(msg.relation_id)
        applier.delete(msg.old)
        self.counts.deletes += 1
        applier.tally[2] += 1
        self._changed(applier)

    def truncate(self, msg: Truncate) -> None:
        """Empty the target tables now; their pending changes are moot, others' stay pending."""
        targets = []
        for relid in msg.relation_ids:
            applier = self._for(relid)
            self._pending -= applier.raw
            applier.discard()
            targets.append(applier.target.table)
            self.truncated.add(relid)
            self.counts.tables_changed.add(self._source_of[applier.target.table])
            self.counts.truncated_tables.add(self._source_of[applier.target.table])
        if not targets:
            return
        self.wait()
        self.conn.execute(
            sql.SQL("TRUNCATE {}").format(
                sql.SQL(", ").join(sql.Identifier(t.schema, t.name) for t in targets)
            )
        )
        self.counts.truncates += len(targets)

    def _changed(self, applier: TableApply) -> None:
        if not applier.changed:
            applier.changed = True
            self.counts.tables_changed.add(self._source_of[applier.target.table])
        self._pending += 1
        if self._pending >= self.chunk_changes:
            self.flush()

    def _flush_one(self, applier: TableApply) -> None:
        self._pending -= applier.raw
        applier.flush()

    def wait(self) -> None:
        """Barrier: return once the in-flight chunk is written (re-raising its error).

        Called before any other use of the target connection, so statements keep source order.
        """
        inflight, self._inflight = self._inflight, None
        if inflight is not None:
            inflight.result()

    def flush(self, *, wait: bool = False) -> None:
        """Hand every table's pending changes to the writer thread (bounded memory).

        At most one chunk is being written while the next is collected: the target executes SQL
        (GIL released) while this thread decodes. ``wait`` returns only once all is written.
        """
        chunks = [c for c in (a.take() for a in self.appliers.values()) if c is not None]
        self._pending = 0
        self.wait()
        if chunks:
            self._inflight = self._writer.submit(_write_all, chunks)
        if wait:
            self.wait()

    def close(self) -> None:
        """Stop the writer thread; an in-flight chunk is finished first (errors ignored here)."""
        inflight, self._inflight = self._inflight, None
        if inflight is not None:
            futures.wait([inflight])
        self._writer.shutdown(wait=True)

"""One CDC batch on the target: route decoded changes to tables, follow schema changes, truncate.

Everything here runs inside one target transaction that the engine commits together with the
watermark. Schema rules: a column the source added is added on the target (same type) before any
row carrying it is staged; a column the target has but the source no longer sends (dropped or
renamed), or one whose type differs, stops the batch with :class:`SchemaChangeError`, because
applying past it would silently lose or mangle data.
"""

from collections.abc import Callable
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
from cdc_assets.target.apply import Chunk, TableApply
from cdc_assets.target.catalog import TargetTable, describe_table

DEFAULT_CHUNK = 50_000


def _write_all(chunks: list[Chunk]) -> None:
    for chunk in chunks:
        chunk.write()


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
        source_fill: Callable[[TableRef, str], AddedColumnFill],
        chunk_changes: int = DEFAULT_CHUNK,
        log: Callable[[str], None] | None = None,
        source_generated: Callable[[TableRef], tuple[GeneratedColumn, ...]] | None = None,
    ) -> None:
        """``source_type(oid, typmod)`` spells a built-in source column type (None: user type).

        User-defined types are mapped by the full load (enums re-created, domains to their base,
        others to text), so their target spelling legitimately differs: they are not compared, and
        a user-typed column added on the source is added as ``text`` (the value's text form).
        """
        self.conn = conn
        self.spec = spec
        self.source_type = source_type
        self.source_fill = source_fill
        self.source_generated = source_generated  # generated columns never show in a Relation
        self.chunk_changes = chunk_changes
        self.log = log or (lambda _msg: None)
        self.warnings: list[str] = []  # for the operator: the run logs them as warnings
        self.tables = set(spec.tables)
        self.appliers: dict[int, TableApply] = {}  # relation id -> applier of its current shape
        self.relations: dict[int, Relation] = {}  # relation id -> shape the applier was made for
        self.latest: dict[int, Relation] = {}  # relation id -> last Relation message seen
        self._active: dict[int, TableApply] = {}  # relation id -> applier, up to date (hot path)
        self.counts = BatchCounts()
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
        source = TableRef(rel.namespace, rel.name)
        if source not in self.tables:
            # The publication lists exactly the pipeline's tables, so this is a table renamed or
            # moved on the source (or a publication edited by hand): its changes would be lost.
            raise SchemaChangeError(
                f"changes arrive for {source}, which is not one of the pipeline's tables: was a "
                f"table renamed or moved, or added to publication {self.spec.publication_name}?",
                pipeline=self.spec.name,
                table=str(source),
                fix="rename the table back on the source, or change the pipeline's tables and "
                "reset it for a new full load",
            )
        self.wait()
        current = self.appliers.pop(rel.relation_id, None)
        if current is not None:
            self._flush_one(current)
        target = self._reconcile(source, rel)
        self.relations[rel.relation_id] = rel
        applier = self._applier(source, rel, target)
        self.appliers[rel.relation_id] = applier
        self._source_of[target.table] = source
        return applier

    def _reconcile(self, source: TableRef, rel: Relation) -> TargetTable:
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
        for gone in [c for c in target.columns if c not in names]:
            raise SchemaChangeError(
                f"column {gone!r} was dropped or renamed on the source; CDC cannot apply "
                "changes without it",
                pipeline=self.spec.name,
                table=str(source),
                fix=f"drop or rename column {gone!r} on the target table {dest} the same way "
                "(or reset the pipeline for a new full load), then rerun",
            )
        altered = False
        for col in rel.columns:
            if col.name in target.generated:
                continue  # published generated column (PostgreSQL 18+): the target computes it
            builtin = self.source_type(col.type_oid, col.type_modifier)
            src_type = builtin or "text"
            have = target.columns.get(col.name)
            if have is None:
                self._add_column(source, dest, col.name, src_type, builtin is not None)
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
        return target

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
        self, source: TableRef, dest: TableRef, column: str, type_sql: str, builtin: bool
    ) -> None:
        """Add a source column on the target; existing rows get what they got on the source.

        ``ADD COLUMN ... DEFAULT`` fills existing source rows without sending them as changes, so
        the target column is added with that same value as a default (then the default is
        dropped: every later row arrives with its value). A value computed per row (volatile
        default, identity) cannot be known here: the batch goes on, and says so as a warning.
        """
        fill = self.source_fill(source, column)
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

    def _applier(self, source: TableRef, rel: Relation, target: TargetTable) -> TableApply:
        columns = [c.name for c in rel.columns]
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
        applier = TableApply(
            self.conn,
            pipeline=self.spec.name,
            target=target,
            columns=columns,
            key=key,
            upsert=upsert,
            stage_name=f"_cdc_stage_{self.spec.name}_{self._stage_seq}",
            generated=target.generated,
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
        else:
            applier.update(None, None, row)
            self.counts.updates += 1
        self._changed(applier)

    def insert(self, msg: Insert) -> None:
        """Stage an insert."""
        applier = self._active.get(msg.relation_id) or self._for(msg.relation_id)
        applier.insert(msg.new)
        self.counts.inserts += 1
        self._changed(applier)

    def update(self, msg: Update) -> None:
        """Stage an update."""
        applier = self._active.get(msg.relation_id) or self._for(msg.relation_id)
        applier.update(msg.old_kind, msg.old, msg.new)
        self.counts.updates += 1
        self._changed(applier)

    def delete(self, msg: Delete) -> None:
        """Stage a delete."""
        applier = self._active.get(msg.relation_id) or self._for(msg.relation_id)
        applier.delete(msg.old)
        self.counts.deletes += 1
        self._changed(applier)

    def truncate(self, msg: Truncate) -> None:
        """Empty the target tables now; their pending changes are moot, others' stay pending."""
        targets = []
        for relid in msg.relation_ids:
            applier = self._for(relid)
            self._pending -= applier.raw
            applier.discard()
            targets.append(applier.target.table)
            self.counts.tables_changed.add(self._source_of[applier.target.table])
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

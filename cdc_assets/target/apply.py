"""Apply decoded changes to one target table, set-based, in chunks, inside the caller's transaction.

Per table, changes are collapsed to the last state per key as they arrive (an insert then three
updates of one row become one upsert), so the source's commit order per key is kept while the
target does one statement per kind of change instead of one per row. A flush stages the chunk with
``COPY`` into a temporary table and runs, in this order:

1. ``DELETE ... USING stage`` for keys whose last change is a delete;
2. ``INSERT ... SELECT ... ON CONFLICT (pk) DO UPDATE`` for keys with a full new row (when the
   target's primary key is the replica identity key; otherwise delete-then-insert);
3. ``UPDATE ... FROM stage`` for rows whose unchanged TOASTed columns arrived as "unchanged", one
   statement per set of unchanged columns, setting only the columns that came with values, so the
   target keeps its own copy of the big values.

Keys are disjoint across the three sets, so their order does not matter for correctness. Tables
without a primary key (allowed only with ``REPLICA IDENTITY FULL``) are applied row by row, in
order, matching one row on all columns; slow but exact, and rare.

The temporary staging tables are named ``_cdc_stage_<pipeline>_<n>`` and dropped at commit; a
crash leaves nothing behind because temporary tables die with their session.
"""

import json
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import psycopg
from psycopg import sql

from cdc_assets.decoding.messages import UNCHANGED_TOAST, Row, TupleValue, UnchangedToast
from cdc_assets.errors import TargetError
from cdc_assets.target.catalog import TargetTable
from cdc_assets.target.copytext import NULL, field, line, row_line

KIND_COLUMN = "_cdc_assets_kind"
DELETE = 0
UPSERT = 1
COPY_BUFFER = 1 << 20

Key = Hashable  # one column's value, or a tuple of values for composite keys


def _has_unchanged(row: Row) -> bool:
    # Tuple containment compares by identity first; bytes never equal the marker.
    return UNCHANGED_TOAST in row


def _merge(new: Row, base: Row) -> Row:
    """Fill ``new``'s unchanged-TOAST markers from ``base`` (an earlier image of the same row)."""
    return tuple(b if isinstance(n, UnchangedToast) else n for n, b in zip(new, base, strict=True))


@dataclass(frozen=True, slots=True)
class Chunk:
    """Changes of one table taken out of collection, to be written by :meth:`TableApply.write`."""

    table: "TableApply"
    pending: dict[Key, Row | None]
    ordered: list[tuple[str, Row | None, Row | None]]

    def write(self) -> None:
        """Write this chunk through its table."""
        self.table.write(self)


class TableApply:
    """Pending changes of one target table, for one shape (column list) of its source relation.

    A new shape (column added on the source) means a new instance; the batch flushes the old one
    first, so staged rows always line up with the columns they were decoded with.
    """

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        *,
        pipeline: str,
        target: TargetTable,
        columns: Sequence[str],
        key: Sequence[str],
        upsert: bool,
        stage_name: str,
        generated: frozenset[str] = frozenset(),
    ) -> None:
        """``key`` empty means "no key": match whole rows (REPLICA IDENTITY FULL, no PK).

        ``generated``: target columns the target computes; a source that publishes them
        (PostgreSQL 18+) sends their values, which are staged with the row but never written.
        """
        self.conn = conn
        self.pipeline = pipeline
        self.target = target
        self.columns = tuple(columns)
        self.generated = generated
        self.written = tuple(c for c in self.columns if c not in generated)
        self.key = tuple(key)
        self.key_idx = tuple(self.columns.index(k) for k in self.key)
        # itemgetter returns a bare value for one index and a tuple for several: both hashable.
        self._key: Callable[[Row], Key] = (
            itemgetter(*self.key_idx) if self.key_idx else (lambda _row: None)
        )
        self.changed = False  # any change routed here during the batch
        # [inserts, updates, deletes] of the source table in this batch, shared by its shapes.
        self.tally: list[int] = [0, 0, 0]
        self.barrier: Callable[[], None] = lambda: None  # waits for the batch's in-flight chunk
        self.upsert = upsert
        self.stage_name = stage_name
        self.pending: dict[Key, Row | None] = {}
        self.ordered: list[tuple[str, Row | None, Row | None]] = []  # keyless tables only
        self.raw = 0
        self._stage_created = False
        self._table = sql.Identifier(target.table.schema, target.table.name)
        self._stage = sql.Identifier("pg_temp", stage_name)

    @property
    def keyless(self) -> bool:
        """True for tables matched on all columns (no primary key, REPLICA IDENTITY FULL)."""
        return not self.key

    def _key_values(self, key: Key) -> tuple[TupleValue, ...]:
        return key if len(self.key_idx) > 1 else (key,)  # type: ignore[return-value]

    # -- collecting -------------------------------------------------------------------------

    def insert(self, new: Row) -> None:
        """A new row; replaces whatever the chunk had for its key."""
        self.raw += 1
        if self.keyless:
            self.ordered.append(("I", None, new))
            return
        self.pending[self._key(new)] = new

    def update(self, old_kind: str | None, old: Row | None, new: Row) -> None:
        """A changed row; unchanged TOAST values are filled from what the chunk already has."""
        self.raw += 1
        if old_kind is None and self.key_idx:  # the common case: no old tuple, same key
            key = self._key(new)
            if UNCHANGED_TOAST in new:
                base = self.pending.get(key)
                if base is not None:
                    new = _merge(new, base)
            self.pending[key] = new
            return
        if old_kind == "O" and old is not None and _has_unchanged(new):
            new = _merge(new, old)  # REPLICA IDENTITY FULL carries the whole old row
        if self.keyless:
            if old is None:
                raise TargetError(
                    "update without old row on a table matched on all columns",
                    pipeline=self.pipeline,
                    table=str(self.target.table),
                    fix="set REPLICA IDENTITY FULL on the source table",
                )
            self.ordered.append(("U", old, new))
            return
        new_key = self._key(new)
        old_key = self._key(old) if old is not None else new_key
        if old_key != new_key:
            base = self.pending.get(old_key)
            if base is not None and _has_unchanged(new):
                new = _merge(new, base)
            if _has_unchanged(new):
                # Key changed and a TOASTed value lives only in the target row: move that row.
                self.flush()
                self._move_row(old_key, new)
                return
            self.pending[old_key] = None
            self.pending[new_key] = new
            return
        if _has_unchanged(new):
            base = self.pending.get(new_key)
            if base is not None:
                new = _merge(new, base)
        self.pending[new_key] = new

    def delete(self, old: Row) -> None:
        """A removed row, by key (or by whole row for keyless tables)."""
        self.raw += 1
        if self.keyless:
            self.ordered.append(("D", old, None))
            return
        self.pending[self._key(old)] = None

    def discard(self) -> None:
        """Forget pending changes: a TRUNCATE of this table follows and makes them moot."""
        self.pending.clear()
        self.ordered.clear()
        self.raw = 0

    # -- writing ----------------------------------------------------------------------------

    def take(self) -> Chunk | None:
        """Hand over the pending changes as a chunk to :meth:`write`, and start a new one.

        Lets the batch write one chunk (target busy, GIL released) while it decodes the next.
        """
        self.raw = 0
        if self.keyless:
            if not self.ordered:
                return None
            chunk = Chunk(self, {}, self.ordered)
            self.ordered = []
            return chunk
        if not self.pending:
            return None
        chunk = Chunk(self, self.pending, [])
        self.pending = {}
        return chunk

    def flush(self) -> None:
        """Write the pending changes now (after the batch's in-flight chunk, if any)."""
        self.barrier()
        chunk = self.take()
        if chunk is not None:
            self.write(chunk)

    def write(self, chunk: "Chunk") -> None:
        """Write a chunk to the target, inside the caller's open transaction."""
        if self.keyless:
            for op, old, new in chunk.ordered:
                self._apply_one(op, old, new)
            return
        pending = chunk.pending
        groups: dict[tuple[int, ...], int] = {}
        buf = bytearray()
        n_delete = n_full = 0
        with self.conn.cursor() as cur:
            self._prepare_stage(cur)
            copy_sql = sql.SQL("COPY {} ({}) FROM STDIN").format(
                self._stage,
                sql.SQL(", ").join(map(sql.Identifier, (KIND_COLUMN, *self.columns))),
            )
            with cur.copy(copy_sql) as copy:
                nulls = [NULL] * len(self.columns)
                for key, row in pending.items():
                    if row is None:
                        fields = list(nulls)
                        for i, v in zip(self.key_idx, self._key_values(key), strict=True):
                            fields[i] = field(v)
                        buf += line([b"0", *fields])
                        n_delete += 1
                    elif UNCHANGED_TOAST not in row:
                        n_full += 1
                        buf += row_line(b"1\t", row)
                    else:
                        unchanged = tuple(
                            i for i, v in enumerate(row) if isinstance(v, UnchangedToast)
                        )
                        kind = groups.setdefault(unchanged, UPSERT + 1 + len(groups))
                        buf += line([str(kind).encode(), *map(field, row)])
                    if len(buf) >= COPY_BUFFER:
                        copy.write(bytes(buf))
                        buf.clear()
                if buf:
                    copy.write(bytes(buf))
            if len(pending) >= 1000:
                cur.execute(sql.SQL("ANALYZE {}").format(self._stage))
            if n_delete or (n_full and not self.upsert):
                cur.execute(self._delete_sql(DELETE if self.upsert else None))
            if n_full:
                cur.execute(self._insert_sql())
            for unchanged, kind in groups.items():
                stmt = self._partial_update_sql(kind, unchanged)
                if stmt is not None:
                    cur.execute(stmt)

    def _prepare_stage(self, cur: psycopg.Cursor[Any]) -> None:
        stage = self._stage
        if self._stage_created:
            cur.execute(sql.SQL("TRUNCATE {}").format(stage))
            return
        cur.execute(
            sql.SQL(
                "CREATE TEMPORARY TABLE {} ON COMMIT DROP AS"
                " SELECT 0 AS {}, {} FROM {} WITH NO DATA"
            ).format(
                stage,
                sql.Identifier(KIND_COLUMN),
                sql.SQL(", ").join(map(sql.Identifier, self.columns)),
                self._table,
            )
        )
        self._stage_created = True

    def _key_match(self) -> sql.Composable:
        return sql.SQL(" AND ").join(
            sql.SQL("t.{c} = s.{c}").format(c=sql.Identifier(k)) for k in self.key
        )

    def _delete_sql(self, kind: int | None) -> sql.Composed:
        """Delete staged keys; ``kind`` None means deletes and full rows (delete-then-insert)."""
        where = (
            sql.SQL("s.{} = {}").format(sql.Identifier(KIND_COLUMN), sql.Literal(kind))
            if kind is not None
            else sql.SQL("s.{} IN (0, 1)").format(sql.Identifier(KIND_COLUMN))
        )
        return sql.SQL("DELETE FROM {} AS t USING {} AS s WHERE {} AND {}").format(
            self._table, self._stage, where, self._key_match()
        )

    def _insert_sql(self) -> sql.Composed:
        cols = sql.SQL(", ").join(map(sql.Identifier, self.written))
        stmt = sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} WHERE {} = 1").format(
            self._table, cols, cols, self._stage, sql.Identifier(KIND_COLUMN)
        )
        if not self.upsert:
            return stmt
        rest = [c for c in self.written if c not in self.key]
        keys = sql.SQL(", ").join(map(sql.Identifier, self.key))
        if not rest:
            return stmt + sql.SQL(" ON CONFLICT ({}) DO NOTHING").format(keys)
        sets = sql.SQL(", ").join(
            sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c)) for c in rest
        )
        return stmt + sql.SQL(" ON CONFLICT ({}) DO UPDATE SET {}").format(keys, sets)

    def _partial_update_sql(self, kind: int, unchanged: tuple[int, ...]) -> sql.Composed | None:
        cols = [
            c
            for i, c in enumerate(self.columns)
            if i not in unchanged and c not in self.key and c not in self.generated
        ]
        if not cols:
            return None
        sets = sql.SQL(", ").join(sql.SQL("{c} = s.{c}").format(c=sql.Identifier(c)) for c in cols)
        return sql.SQL("UPDATE {} AS t SET {} FROM {} AS s WHERE s.{} = {} AND {}").format(
            self._table,
            sets,
            self._stage,
            sql.Identifier(KIND_COLUMN),
            sql.Literal(kind),
            self._key_match(),
        )

    # -- row at a time (key changes with unchanged TOAST, keyless tables) --------------------

    def _record(self, row: Row) -> str:
        """A row as JSON text for ``json_populate_record``: values stay in their text form."""
        out: dict[str, str | None] = {}
        for c, v in zip(self.columns, row, strict=True):
            if isinstance(v, UnchangedToast):
                continue
            if isinstance(v, bytes):
                out[c] = v.decode("utf-8")
            elif v is None:
                out[c] = None
            else:
                raise TargetError(
                    "binary column values are not supported",
                    pipeline=self.pipeline,
                    table=str(self.target.table),
                )
        return json.dumps(out)

    def _set_from_record(self, row: Row) -> sql.Composable:
        return sql.SQL(", ").join(
            sql.SQL("{c} = r.{c}").format(c=sql.Identifier(c))
            for c, v in zip(self.columns, row, strict=True)
            if v is not UNCHANGED_TOAST and c not in self.generated
        )

    def _move_row(self, old_key: Key, new: Row) -> None:
        """Apply a key-changing update whose unchanged TOAST values exist only in the target."""
        values = self._key_values(old_key)
        key_json = self._record(
            tuple(values[self.key.index(c)] if c in self.key else None for c in self.columns)
        )
        match = sql.SQL(" AND ").join(
            sql.SQL("t.{c} = k.{c}").format(c=sql.Identifier(c)) for c in self.key
        )
        stmt = sql.SQL(
            "UPDATE {t} AS t SET {sets} FROM json_populate_record(NULL::{t}, %s::json) AS r,"
            " json_populate_record(NULL::{t}, %s::json) AS k WHERE {match}"
        ).format(t=self._table, sets=self._set_from_record(new), match=match)
        self.conn.execute(stmt, (self._record(new), key_json))

    def _row_match(self) -> sql.Composable:
        return sql.SQL(" AND ").join(
            sql.SQL("x.{c}::text IS NOT DISTINCT FROM o.{c}::text").format(c=sql.Identifier(c))
            for c in self.columns
        )

    def _apply_one(self, op: str, old: Row | None, new: Row | None) -> None:
        t = self._table
        one_row = sql.SQL(
            "(SELECT x.ctid FROM {t} AS x, json_populate_record(NULL::{t}, %s::json) AS o"
            " WHERE {match} LIMIT 1)"
        ).format(t=t, match=self._row_match())
        if op == "I" and new is not None:
            cols = sql.SQL(", ").join(map(sql.Identifier, self.written))
            self.conn.execute(
                sql.SQL(
                    "INSERT INTO {t} ({cols}) SELECT {cols} FROM json_populate_record(NULL::{t},"
                    " %s::json)"
                ).format(t=t, cols=cols),
                (self._record(new),),
            )
        elif op == "D" and old is not None:
            self.conn.execute(
                sql.SQL("DELETE FROM {t} WHERE ctid = {one}").format(t=t, one=one_row),
                (self._record(old),),
            )
        elif op == "U" and old is not None and new is not None:
            self.conn.execute(
                sql.SQL(
                    "UPDATE {t} SET {sets} FROM json_populate_record(NULL::{t}, %s::json) AS r"
                    " WHERE {t}.ctid = {one}"
                ).format(t=t, sets=self._set_from_record(new), one=one_row),
                (self._record(new), self._record(old)),
            )


class ProjectedTableApply(TableApply):
    """A shape some of whose columns the target no longer has: rows are cut down as they arrive.

    Only for the rows of a relation version written before a column was dropped (see
    ``BatchApply._reconcile``); the common path stays :class:`TableApply`, untouched.
    """

    def __init__(self, conn: psycopg.Connection[Any], *, keep: Sequence[int], **kw: Any) -> None:
        """``keep``: indexes, in the source relation's column list, of the columns written."""
        super().__init__(conn, **kw)
        self._keep = itemgetter(*keep) if len(keep) > 1 else (lambda row: (row[keep[0]],))

    def _cut(self, row: Row) -> Row:
        return tuple(self._keep(row))

    def insert(self, new: Row) -> None:
        """A new row, without the left-out columns."""
        super().insert(self._cut(new))

    def update(self, old_kind: str | None, old: Row | None, new: Row) -> None:
        """A changed row, without the left-out columns (in the old image too)."""
        super().update(old_kind, self._cut(old) if old is not None else None, self._cut(new))

    def delete(self, old: Row) -> None:
        """A removed row, without the left-out columns."""
        super().delete(self._cut(old))

"""Catalog look-ups on the source: what a table is made of and whether a pipeline can read it.

Everything the full load needs to know about a source table is read here once, into frozen
:class:`TableInfo` values, so planning, DDL and COPY never query the catalog themselves. The checks
that turn catalog facts into clear errors (missing table, no SELECT privilege, no key for CDC) live
here too, because this is the one place that has the facts.

Type mapping (also described in the README): built-in types are kept as they are; enums are
re-created on the target (same name, in the target schema) so every label round-trips; domains are
mapped to their base type (the value is kept, the domain's CHECK constraints are not); every other
user-defined type (composite, range, extension base types) becomes ``text`` holding the source's
text form, which keeps every value, and forces text COPY for that table.
"""

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from cdc_assets.domain import TableRef
from cdc_assets.errors import SourceError

FIRST_USER_OID = 16384
"""PostgreSQL's FirstNormalObjectId: OIDs below it are built-in and equal on every server."""


@dataclass(frozen=True, slots=True)
class EnumType:
    """A source enum the target must have, with its labels in sort order."""

    name: str
    labels: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ColumnInfo:
    """One source column and the type it gets on the target.

    ``target_type`` is either built-in SQL text from ``format_type`` (catalog output, safe to
    embed) or, for enums, ``None`` with ``enum`` set so the DDL composes the name as an identifier.
    """

    name: str
    source_type: str
    target_type: str | None
    enum: EnumType | None
    array_dims: int
    not_null: bool
    default: str | None
    generated: bool
    binary_safe: bool
    user_defined: bool
    generation: str | None = None
    """For a generated column, the source's expression (``pg_get_expr``): the target column is
    ``GENERATED ALWAYS AS (<it>)`` too, computed there and never copied or written. None for a
    plain column, and for a generated one whose expression the target cannot create (a function
    or type it lacks): then it is a plain column holding the source's values (see ``ddl.py``)."""
    virtual: bool = False
    """PostgreSQL 18's ``VIRTUAL`` generated column (computed when read, never stored)."""

    @property
    def computed_on_target(self) -> bool:
        """True when the target computes the column itself: leave it out of COPY and writes."""
        return self.generated and self.generation is not None

    @property
    def generated_fallback(self) -> bool:
        """True for a source generated column that is a plain, copied column on the target."""
        return self.generated and self.generation is None


@dataclass(frozen=True, slots=True)
class IndexInfo:
    """A plain btree index on columns (no expressions, no predicate) to rebuild on the target."""

    columns: tuple[str, ...]
    unique: bool


@dataclass(frozen=True, slots=True)
class TableInfo:
    """A source table as the full load sees it."""

    ref: TableRef
    oid: int
    kind: str
    columns: tuple[ColumnInfo, ...]
    primary_key: tuple[str, ...]
    indexes: tuple[IndexInfo, ...]
    replica_identity: str
    estimated_rows: int
    pages: int
    identity_index: tuple[str, ...] = ()
    """Key columns of the ``REPLICA IDENTITY USING INDEX`` index (empty for other identities):
    pgoutput sends them as the key, and the target gets a unique index on them."""
    filenode: int | None = None
    """The heap's file when described; a rewrite (``ALTER TABLE ... TYPE``, a volatile
    ``ADD COLUMN``, ``TRUNCATE``, ``VACUUM FULL``) gives it a new one. None: partitioned."""

    @property
    def is_partitioned(self) -> bool:
        """Partitioned parents have no heap of their own: no CTID ranges, COPY via SELECT."""
        return self.kind == "p"

    @property
    def has_user_types(self) -> bool:
        """True when a column uses an OID that may differ between servers."""
        return any(c.user_defined for c in self.columns)

    def binary_safe(self, same_major: bool) -> bool:
        """Binary COPY is exact only when both servers encode every column the same way."""
        if not same_major and self.has_user_types:
            return False
        return all(c.binary_safe for c in self.columns)

    @property
    def copied_columns(self) -> tuple[ColumnInfo, ...]:
        """Columns the full load copies: all but those the target computes (generated there)."""
        return tuple(c for c in self.columns if not c.computed_on_target)

    @property
    def enums(self) -> tuple[EnumType, ...]:
        """Enums the target needs before its table can be created."""
        seen: dict[str, EnumType] = {}
        for c in self.columns:
            if c.enum is not None:
                seen.setdefault(c.enum.name, c.enum)
        return tuple(seen.values())


_TABLE_SQL = """
SELECT c.oid, c.relkind::text, c.relreplident::text, c.reltuples::bigint, c.relpages::bigint,
       has_table_privilege(c.oid, 'SELECT'), pg_relation_filenode(c.oid)::bigint
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relname = %s
"""

_COLUMNS_SQL = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.atttypid::bigint, a.attnotnull,
       a.attndims, a.attgenerated::text, t.typtype::text, t.typelem::bigint, t.typbasetype::bigint,
       t.typtypmod, (d.adbin::text LIKE '{CONST %%'), pg_get_expr(d.adbin, d.adrelid)
FROM pg_attribute a
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""

_INDEXES_SQL = """
SELECT i.indisprimary, i.indisunique,
       array(SELECT a.attname FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
             ORDER BY k.ord),
       i.indnkeyatts, cardinality(i.indkey::int2[]),
       i.indexprs IS NULL AND i.indpred IS NULL AND am.amname = 'btree' AND 0 <> ALL(i.indkey),
       i.indisreplident
FROM pg_index i
JOIN pg_class ic ON ic.oid = i.indexrelid
JOIN pg_am am ON am.oid = ic.relam
WHERE i.indrelid = %s AND i.indisvalid
ORDER BY i.indisprimary DESC, ic.relname
"""

_TYPE_SQL = """
SELECT t.typname, t.typtype::text, t.typelem::bigint, t.typbasetype::bigint, t.typtypmod,
       format_type(t.typbasetype, t.typtypmod),
       array(SELECT e.enumlabel::text FROM pg_enum e WHERE e.enumtypid = t.oid
             ORDER BY e.enumsortorder)
FROM pg_type t WHERE t.oid = %s
"""


def server_major(conn: psycopg.Connection[Any]) -> int:
    """Major version of the connected server (``180006`` -> 18)."""
    return conn.info.server_version // 10000


def wal_level(conn: psycopg.Connection[Any]) -> str:
    """The server's ``wal_level`` (``replica``, ``logical``, ``minimal``)."""
    row = conn.execute("SELECT current_setting('wal_level')").fetchone()
    return str(row[0]) if row else ""


def describe_tables(
    conn: psycopg.Connection[Any], refs: tuple[TableRef, ...], *, pipeline: str
) -> tuple[TableInfo, ...]:
    """Read every table of a pipeline, failing on the first one the pipeline cannot copy.

    Run before the slot and its snapshot exist, so a bad table name never leaves a slot behind.
    A copy worker checks, under its table lock, that the heap is still the one described
    (``filenode``): a rewrite in between would make the snapshot's copy silently empty.
    """
    return tuple(_describe(conn, ref, pipeline) for ref in refs)


def _describe(conn: psycopg.Connection[Any], ref: TableRef, pipeline: str) -> TableInfo:
    row = conn.execute(_TABLE_SQL, (ref.schema, ref.name)).fetchone()
    if row is None:
        raise SourceError(
            "table does not exist on the source",
            pipeline=pipeline,
            table=ref.display,
            fix="create the table or correct the pipeline's tables (schema.table, quote "
            'mixed-case names like "Sales"."Order Items")',
        )
    oid, kind, replident, reltuples, relpages, can_select, filenode = row
    if kind not in ("r", "p"):
        raise SourceError(
            f"is not a table (relkind {kind!r}); only tables and partitioned tables can be copied",
            pipeline=pipeline,
            table=ref.display,
            fix="list base tables in the pipeline, not views or sequences",
        )
    if not can_select:
        raise SourceError(
            "the source user lacks SELECT privilege",
            pipeline=pipeline,
            table=ref.display,
            fix=f"GRANT SELECT ON {ref.display} TO the source user",
        )
    columns = tuple(_column(conn, r) for r in conn.execute(_COLUMNS_SQL, (oid,)).fetchall())
    pk: tuple[str, ...] = ()
    identity: tuple[str, ...] = ()
    indexes: list[IndexInfo] = []
    for primary, unique, cols, nkey, ncols, simple, replident_idx in conn.execute(
        _INDEXES_SQL, (oid,)
    ):
        if replident_idx and replident == "i":
            # PostgreSQL allows only a plain unique index here (no expression, no predicate, NOT
            # NULL columns); its key columns, INCLUDE columns left out, are what pgoutput sends.
            identity = tuple(cols[:nkey])
            if not primary and not (simple and nkey == ncols):
                indexes.append(IndexInfo(identity, True))
        if primary:
            pk = tuple(cols[:nkey])
        elif simple and nkey == ncols:
            indexes.append(IndexInfo(tuple(cols), bool(unique)))
    return TableInfo(
        ref=ref,
        oid=int(oid),
        kind=kind,
        columns=columns,
        primary_key=pk,
        indexes=tuple(indexes),
        replica_identity=replident,
        identity_index=identity,
        estimated_rows=max(int(reltuples), 0),
        pages=int(relpages),
        filenode=int(filenode) if filenode is not None else None,
    )


def _column(conn: psycopg.Connection[Any], r: tuple[Any, ...]) -> ColumnInfo:
    (name, fmt, typid, notnull, ndims, attgenerated, typtype, typelem, _base, _mod, const, dflt) = r
    generated = attgenerated != ""
    user = typid >= FIRST_USER_OID
    is_array = typelem != 0 and typtype == "b" and fmt.endswith("[]")
    elem_id = typelem if is_array else typid
    target_type: str | None = fmt
    enum: EnumType | None = None
    binary_safe = True
    user_defined = user
    if elem_id >= FIRST_USER_OID:
        user_defined = True
        target_type, enum = _map_user_type(conn, elem_id)
        # Arrays carry their element type's OID in binary form; enum OIDs differ per database.
        # Binary arrays carry their element type's OID, which differs between databases for
        # enums and is the domain's (not the base type's) for arrays of domains.
        binary_safe = not is_array and target_type != "text"
        if target_type is not None and is_array:
            target_type += "[]"
    keep_default = bool(const) and not user_defined and not generated
    return ColumnInfo(
        name=name,
        source_type=fmt,
        target_type=target_type,
        enum=enum,
        array_dims=max(int(ndims), 1) if is_array else 0,
        not_null=bool(notnull),
        default=dflt if keep_default else None,
        generated=generated,
        binary_safe=binary_safe,
        user_defined=user_defined,
        generation=str(dflt) if generated and dflt is not None else None,
        virtual=attgenerated == "v",
    )


def _map_user_type(conn: psycopg.Connection[Any], oid: int) -> tuple[str | None, EnumType | None]:
    """Follow domains to their base; enums are re-created; anything else becomes text."""
    for _ in range(16):  # domains over domains; bounded in case of a catalog surprise
        row = conn.execute(_TYPE_SQL, (oid,)).fetchone()
        if row is None:
            return "text", None
        typname, typtype, _elem, base, _mod, base_fmt, labels = row
        if typtype == "e":
            return None, EnumType(typname, tuple(labels))
        if typtype == "d":
            if base < FIRST_USER_OID:
                return str(base_fmt), None
            oid = base
            continue
        return "text", None
    return "text", None


def check_cdc_ready(
    conn: psycopg.Connection[Any], tables: tuple[TableInfo, ...], *, pipeline: str
) -> None:
    """Refuse, before anything is created, a CDC pipeline the source cannot feed.

    Logical decoding needs ``wal_level=logical``; the slot needs a role with REPLICATION; updates
    and deletes can only be applied when pgoutput sends a key: a primary key with the default
    replica identity, the index's columns with ``REPLICA IDENTITY USING INDEX`` (with or without a
    primary key: the target gets a unique index on them), or every column with ``FULL``.
    """
    level = wal_level(conn)
    if level != "logical":
        raise SourceError(
            f"the source has wal_level={level}; CDC needs logical decoding",
            pipeline=pipeline,
            fix="set wal_level = logical in the source's postgresql.conf and restart it, "
            "or change the pipeline's mode to full_load",
        )
    row = conn.execute(
        "SELECT rolsuper OR rolreplication FROM pg_roles WHERE rolname = current_user"
    ).fetchone()
    if not row or not row[0]:
        user = conn.info.user
        raise SourceError(
            f"the source user {user!r} may not create replication slots",
            pipeline=pipeline,
            fix=f"ALTER ROLE {sql.Identifier(user).as_string(conn)} REPLICATION on the source",
        )
    for t in tables:
        if t.replica_identity == "f" and any(c.virtual for c in t.columns):
            raise SourceError(
                "has REPLICA IDENTITY FULL and a VIRTUAL generated column, which no publication "
                "can carry: PostgreSQL would refuse every UPDATE and DELETE of the table once "
                "the pipeline publishes it",
                pipeline=pipeline,
                table=t.ref.display,
                fix="give the table a primary key (REPLICA IDENTITY DEFAULT or USING INDEX), make "
                "the column STORED, or use mode full_load",
            )
        if t.replica_identity == "f" or (t.replica_identity == "i" and t.identity_index):
            continue
        if t.replica_identity == "n":
            raise SourceError(
                "has REPLICA IDENTITY NOTHING, so CDC cannot apply its updates and deletes",
                pipeline=pipeline,
                table=t.ref.display,
                fix=f"ALTER TABLE {t.ref.display} REPLICA IDENTITY DEFAULT (or FULL)",
            )
        if not t.primary_key:
            raise SourceError(
                "has no primary key, so CDC cannot apply its updates and deletes",
                pipeline=pipeline,
                table=t.ref.display,
                fix=f"add a primary key, or ALTER TABLE {t.ref.display} REPLICA IDENTITY FULL "
                "(or USING INDEX <a unique index on NOT NULL columns>), or use mode full_load",
            )

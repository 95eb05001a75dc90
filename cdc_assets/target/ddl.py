"""Target DDL: schema checks, enum types, staging tables, and the indexes built after the data.

Staging tables are named ``_cdc_stage_<pipeline>_<n>`` in the target schema so a later attempt or a
``pipeline reset`` finds every leftover of a pipeline by name alone, with no state to consult. The
match is exact (``<n>`` all digits): pipeline ``a`` never touches the stages of pipeline ``a_b``.
"""

import dataclasses
import hashlib
import re
from typing import Any

import psycopg
from psycopg import sql

from cdc_assets.domain import TableRef
from cdc_assets.errors import TargetError
from cdc_assets.pg.catalog import ColumnInfo, EnumType, TableInfo
from cdc_assets.pg.connect import first_line
from cdc_assets.secrets import scrub

STAGE_PREFIX = "_cdc_stage_"
MAX_IDENT_BYTES = 63


def stage_name(pipeline: str, index: int) -> str:
    """Staging table of the pipeline's ``index``-th table."""
    return f"{STAGE_PREFIX}{pipeline}_{index}"


def fit_identifier(name: str) -> str:
    """Trim to PostgreSQL's 63-byte limit without splitting a UTF-8 character."""
    return fit_identifier_to(name, MAX_IDENT_BYTES)


def fit_identifier_to(name: str, limit: int) -> str:
    """Trim to ``limit`` bytes without splitting a UTF-8 character."""
    raw = name.encode()
    if len(raw) <= limit:
        return name
    return raw[:limit].decode(errors="ignore")


def check_target_schema(conn: psycopg.Connection[Any], schema: str, *, pipeline: str) -> None:
    """The schema must exist and the target user must be able to create tables in it."""
    row = conn.execute(
        "SELECT has_schema_privilege(oid, 'CREATE') FROM pg_namespace WHERE nspname = %s",
        (schema,),
    ).fetchone()
    quoted = sql.Identifier(schema).as_string(conn)
    if row is None:
        raise TargetError(
            f"target schema {quoted} does not exist",
            pipeline=pipeline,
            fix=f"CREATE SCHEMA {quoted} on the target, or change the pipeline's target_schema",
        )
    if not row[0]:
        raise TargetError(
            f"the target user {conn.info.user!r} may not create tables in schema {quoted}",
            pipeline=pipeline,
            fix=f"GRANT CREATE, USAGE ON SCHEMA {quoted} TO the target user",
        )


def ensure_enums(
    conn: psycopg.Connection[Any], schema: str, enums: tuple[EnumType, ...], *, pipeline: str
) -> None:
    """Create missing enum types in ``schema``; add labels the source gained since the last load.

    Runs in autocommit: ``ALTER TYPE ... ADD VALUE`` values cannot be used in the transaction that
    added them.
    """
    for enum in enums:
        name = sql.Identifier(schema, enum.name)
        row = conn.execute(
            "SELECT array(SELECT e.enumlabel::text FROM pg_enum e WHERE e.enumtypid = t.oid "
            "ORDER BY e.enumsortorder), t.typtype::text "
            "FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
            "WHERE n.nspname = %s AND t.typname = %s",
            (schema, enum.name),
        ).fetchone()
        if row is None:
            conn.execute(
                sql.SQL("CREATE TYPE {} AS ENUM ({})").format(
                    name, sql.SQL(", ").join(map(sql.Literal, enum.labels))
                )
            )
            continue
        existing, typtype = row
        if typtype != "e":
            raise TargetError(
                f"type {name.as_string(conn)} exists on the target but is not an enum",
                pipeline=pipeline,
                fix="drop or rename that type on the target",
            )
        for label in enum.labels:
            if label not in existing:
                conn.execute(
                    sql.SQL("ALTER TYPE {} ADD VALUE IF NOT EXISTS {}").format(
                        name, sql.Literal(label)
                    )
                )


def add_enum_labels(
    conn: psycopg.Connection[Any], schema: str, name: str, labels: tuple[str, ...]
) -> list[str]:
    """Add to enum ``schema.name`` the source labels it lacks, each in the source's position.

    Returns what was added (``'c' AFTER 'b'``), for the batch's metadata. A label goes ``BEFORE``
    the next source label the target has, else ``AFTER`` the previous one, so sort order (and so
    ``ORDER BY``, ``<`` and indexes on the column) is the same on both sides. A missing type (the
    column is mapped to something else) adds nothing. The caller commits before using the labels.
    """
    row = conn.execute(
        "SELECT array(SELECT e.enumlabel::text FROM pg_enum e WHERE e.enumtypid = t.oid "
        "ORDER BY e.enumsortorder) "
        "FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
        "WHERE n.nspname = %s AND t.typname = %s AND t.typtype = 'e'",
        (schema, name),
    ).fetchone()
    if row is None:
        return []
    have = set(row[0])
    added: list[str] = []
    ident = sql.Identifier(schema, name)
    for i, label in enumerate(labels):
        if label in have:
            continue
        nxt = next((x for x in labels[i + 1 :] if x in have), None)
        prev = next((x for x in reversed(labels[:i]) if x in have), None)
        stmt = sql.SQL("ALTER TYPE {} ADD VALUE IF NOT EXISTS {}").format(ident, sql.Literal(label))
        if nxt is not None:
            stmt += sql.SQL(" BEFORE {}").format(sql.Literal(nxt))
            where = f" BEFORE {nxt!r}"
        elif prev is not None:
            stmt += sql.SQL(" AFTER {}").format(sql.Literal(prev))
            where = f" AFTER {prev!r}"
        else:
            where = ""
        conn.execute(stmt)
        have.add(label)
        added.append(f"{schema}.{name}: {label!r}{where}")
    return added


def _column_type(schema: str, col: ColumnInfo) -> sql.Composable:
    if col.enum is not None:
        brackets = sql.SQL("[]" * col.array_dims) if col.array_dims else sql.SQL("")
        return sql.Composed([sql.Identifier(schema, col.enum.name), brackets])
    assert col.target_type is not None
    # format_type() output (or "text"): catalog-generated SQL, never user input.
    return sql.SQL(col.target_type)  # type: ignore[arg-type]


_EXPRESSION_ERRORS = (
    psycopg.errors.UndefinedFunction,
    psycopg.errors.UndefinedObject,
    psycopg.errors.UndefinedTable,
    psycopg.errors.InvalidSchemaName,
    psycopg.errors.InvalidObjectDefinition,
    psycopg.errors.DatatypeMismatch,
    psycopg.errors.FeatureNotSupported,
    psycopg.errors.InsufficientPrivilege,
)
"""What a source's generation expression can raise on a target that lacks what it uses: a
function, a type, a schema (or is not immutable there, or cannot be virtual on this server)."""


@dataclasses.dataclass(frozen=True, slots=True)
class StageTable:
    """The stage as created: ``table`` with the columns the target could not compute made plain.

    ``fallbacks`` names each such column with the target's reason, for the load to report (and
    to refuse CDC where the source cannot publish generated columns).
    """

    table: TableInfo
    fallbacks: tuple[tuple[str, str], ...] = ()


def _column_def(conn: psycopg.Connection[Any], schema: str, c: ColumnInfo) -> sql.Composable:
    parts: list[sql.Composable] = [sql.Identifier(c.name), _column_type(schema, c)]
    if c.computed_on_target:
        assert c.generation is not None
        virtual = c.virtual and conn.info.server_version >= 180000
        # pg_get_expr() output: catalog-generated SQL that the source itself accepted.
        parts.append(
            sql.SQL("GENERATED ALWAYS AS ({}) {}").format(
                sql.SQL(c.generation),  # type: ignore[arg-type]
                sql.SQL("VIRTUAL" if virtual else "STORED"),
            )
        )
    if c.default is not None:
        parts.append(sql.SQL("DEFAULT {}").format(sql.SQL(c.default)))  # type: ignore[arg-type]
    if c.not_null:
        parts.append(sql.SQL("NOT NULL"))
    return sql.SQL(" ").join(parts)


def _create_table(
    conn: psycopg.Connection[Any], schema: str, stage: str, columns: tuple[ColumnInfo, ...]
) -> None:
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(schema, stage)))
    conn.execute(
        sql.SQL("CREATE TABLE {} ({})").format(
            sql.Identifier(schema, stage),
            sql.SQL(", ").join(_column_def(conn, schema, c) for c in columns),
        )
    )


def create_stage(
    conn: psycopg.Connection[Any], schema: str, stage: str, table: TableInfo
) -> StageTable:
    """Create an empty staging table with the source's columns; no keys or indexes yet.

    Generated columns are created generated, with the source's expression (``STORED``, or
    ``VIRTUAL`` as on the source where the target is PostgreSQL 18+), so the target computes them
    like the source does and neither COPY nor CDC ever writes them: pgoutput does not send them
    before PostgreSQL 18. An expression the target cannot create (it calls a function or uses a
    type the target lacks) makes that one column a plain column of the same type instead, filled
    from the source by the copy and, where the source publishes generated columns (18+), by CDC.
    ``conn`` is in autocommit: each attempt is its own statement.
    """
    plain = {c.name: dataclasses.replace(c, generation=None) for c in table.columns}
    try:
        _create_table(conn, schema, stage, table.columns)
        return StageTable(table)
    except _EXPRESSION_ERRORS:
        if not any(c.computed_on_target for c in table.columns):
            raise
    # Find which expressions fail: each alone, with every other generated column plain.
    fallbacks: list[tuple[str, str]] = []
    for c in table.columns:
        if not c.computed_on_target:
            continue
        probe = tuple(c if o.name == c.name else plain[o.name] for o in table.columns)
        try:
            _create_table(conn, schema, stage, probe)
        except _EXPRESSION_ERRORS as exc:
            fallbacks.append((c.name, first_line(scrub(str(exc)))))
    failed = {name for name, _ in fallbacks}
    columns = tuple(plain[c.name] if c.name in failed else c for c in table.columns)
    _create_table(conn, schema, stage, columns)
    return StageTable(dataclasses.replace(table, columns=columns), tuple(fallbacks))


def index_names(live: str, table: TableInfo) -> tuple[str | None, list[str]]:
    """Names the primary key and indexes get once the stage becomes ``live``."""
    pk = _derived_name(live, "pkey") if table.primary_key else None
    return pk, [_derived_name(live, f"cdc_idx{i}") for i in range(len(table.indexes))]


def _derived_name(live: str, suffix: str) -> str:
    """``<live>_<suffix>``, or when that passes 63 bytes a trimmed ``live`` plus a hash of both.

    Plain truncation would make the names of a long table's indexes equal to each other, or to the
    table's own name (a 63-byte table's ``_pkey`` truncates back to the table name), and the swap
    would fail with "relation already exists".
    """
    name = f"{live}_{suffix}"
    if len(name.encode()) <= MAX_IDENT_BYTES:
        return name
    tail = f"_{hashlib.sha1(name.encode()).hexdigest()[:8]}_{suffix}"
    return fit_identifier_to(live, MAX_IDENT_BYTES - len(tail.encode())) + tail


def stage_index_names(stage: str, table: TableInfo) -> tuple[str | None, list[str]]:
    """Names used while the table is still a stage (cannot clash with the live table's)."""
    pk = f"{stage}_pkey" if table.primary_key else None
    return pk, [f"{stage}_i{i}" for i in range(len(table.indexes))]


def build_indexes(
    conn: psycopg.Connection[Any], schema: str, stage: str, table: TableInfo, *, pipeline: str
) -> None:
    """Build the primary key and indexes on the loaded stage: one sort each, not a row at a time."""
    pk_name, idx_names = stage_index_names(stage, table)
    target = sql.Identifier(schema, stage)
    try:
        if pk_name is not None:
            conn.execute(
                sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} PRIMARY KEY ({})").format(
                    target,
                    sql.Identifier(pk_name),
                    sql.SQL(", ").join(map(sql.Identifier, table.primary_key)),
                )
            )
        for name, idx in zip(idx_names, table.indexes, strict=True):
            conn.execute(
                sql.SQL("CREATE {}INDEX {} ON {} ({})").format(
                    sql.SQL("UNIQUE " if idx.unique else ""),
                    sql.Identifier(name),
                    target,
                    sql.SQL(", ").join(map(sql.Identifier, idx.columns)),
                )
            )
    except psycopg.errors.UniqueViolation as exc:
        raise TargetError(
            f"duplicate key while building the primary key or a unique index: "
            f"{first_line(scrub(str(exc)))}",
            pipeline=pipeline,
            table=table.ref.display,
            fix="the copy is inconsistent with the source's constraints; re-run the full load",
        ) from None


def find_stages(conn: psycopg.Connection[Any], schema: str, pipeline: str) -> list[str]:
    """Staging tables of ``pipeline`` in ``schema`` (exact name match)."""
    pattern = "^" + re.escape(f"{STAGE_PREFIX}{pipeline}_") + "[0-9]+$"
    rows = conn.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relkind IN ('r', 'p') AND c.relname ~ %s ORDER BY 1",
        (schema, pattern),
    ).fetchall()
    return [r[0] for r in rows]


def drop_stages(conn: psycopg.Connection[Any], schema: str, pipeline: str) -> list[str]:
    """Drop every staging table of ``pipeline``; returns what it dropped, schema-qualified."""
    dropped = []
    for name in find_stages(conn, schema, pipeline):
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(schema, name)))
        dropped.append(TableRef(schema, name).display)
    return dropped

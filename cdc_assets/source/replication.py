"""Publication and logical replication slot of a CDC pipeline, created with an exported snapshot.

Why this is the consistent hand-off between full load and CDC: ``CREATE_REPLICATION_SLOT
... LOGICAL pgoutput (SNAPSHOT 'export')`` waits until every transaction running at that moment
has finished, then fixes the slot's ``consistent_point`` LSN and exports a snapshot that sees
exactly the transactions committed before that point. Decoding from the slot returns exactly the
transactions that commit after it. Every COPY of the full load imports that snapshot (``SET
TRANSACTION SNAPSHOT``), so the data copied plus the changes decoded from ``consistent_point`` on
are the source's history with nothing missing and nothing twice.

Released psycopg 3 has no replication protocol, but a ``replication=database`` connection accepts
replication commands through the simple-query protocol, which ``PGconn.exec_`` (libpq's PQexec)
speaks. The exported snapshot lives only while that session stays idle in the same state, so
:func:`slot_with_snapshot` keeps it open until the caller says every reader has imported it.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import pq, sql

from cdc_assets.domain import Lsn, TableRef, publication_name, slot_name
from cdc_assets.errors import SourceError
from cdc_assets.pg.connect import connect, first_line
from cdc_assets.secrets import scrub


@dataclass(frozen=True, slots=True)
class SlotSnapshot:
    """What slot creation hands over: where CDC starts, and the snapshot that ends there."""

    slot: str
    consistent_lsn: Lsn
    snapshot: str


def ensure_publication(
    conn: psycopg.Connection[Any], pipeline: str, tables: tuple[TableRef, ...]
) -> str:
    """Make the pipeline's publication publish exactly ``tables``; return what was done.

    A publication ``cdc_assets_<pipeline>`` that already publishes exactly these tables (all
    four actions, no row filter or column list, through the partition root where a table is
    partitioned, and on PostgreSQL 18+ with stored generated columns where a table has them) is
    kept as it is. That is how a source role that does not own the tables runs a CDC pipeline:
    PostgreSQL lets only a table's owner publish it, so an admin creates the publication once
    (docs/security.md). Otherwise it is dropped and recreated when the source user may (it owns
    the publication, or there is none yet): a reload must publish exactly the current table list,
    and one left by a failed attempt may list others. A publication that does not fit and belongs
    to someone else is never touched: the error names the SQL its owner can run.
    ``publish_via_partition_root`` makes changes of partitions arrive under the parent, which is
    the table the target has. On PostgreSQL 18+ it publishes stored generated columns too:
    PostgreSQL 18 refuses UPDATE and DELETE of a ``REPLICA IDENTITY FULL`` table whose generated
    columns a publication leaves out, and a target that cannot compute a generated column
    (``target/ddl.py``) gets its values. The apply never writes the ones the target computes.
    """
    name = publication_name(pipeline)
    found = _describe_publication(conn, name, tables)
    if found is not None and not found.problems:
        return f"kept publication {name} (owned by {found.owner}): it publishes these tables"
    targets = sql.SQL(", ").join(sql.Identifier(t.schema, t.name) for t in tables)
    options: sql.Composable = sql.SQL("publish_via_partition_root = true")
    if conn.info.server_version >= 180000:
        options += sql.SQL(", publish_generated_columns = stored")
    if found is not None and not found.ours:
        create = sql.SQL(
            "DROP PUBLICATION {}; CREATE PUBLICATION {} FOR TABLE {} WITH ({})"
        ).format(sql.Identifier(name), sql.Identifier(name), targets, options)
        raise SourceError(
            f"publication {name} exists but {'; '.join(found.problems)}, and it belongs to "
            f"{found.owner}, not to the source user, so the pipeline may not change it",
            pipeline=pipeline,
            fix=f"have {found.owner} (or a superuser) run: {create.as_string(conn)}",
        )
    try:
        with conn.transaction():
            conn.execute(sql.SQL("DROP PUBLICATION IF EXISTS {}").format(sql.Identifier(name)))
            conn.execute(
                sql.SQL("CREATE PUBLICATION {} FOR TABLE {} WITH ({})").format(
                    sql.Identifier(name), targets, options
                )
            )
    except psycopg.errors.InsufficientPrivilege as exc:
        reason = first_line(scrub(str(exc)))
        if "permission denied for database" in reason:
            fix = "GRANT CREATE ON DATABASE <source database> TO the source user"
        else:  # "must be owner of table ...": only a table's owner may publish it
            fix = (
                "make the source user the owner of the pipeline's tables or a member of their "
                "owner role (GRANT <owner role> TO <source user>), or have the tables' owner "
                f"create the publication once: CREATE PUBLICATION {name} FOR TABLE "
                f"{targets.as_string(conn)} WITH ({options.as_string(conn)})"
            )
        raise SourceError(
            f"cannot create publication {name}: {reason}", pipeline=pipeline, fix=fix
        ) from None
    return f"{'recreated' if found is not None else 'created'} publication {name}"


@dataclass(frozen=True, slots=True)
class _Publication:
    owner: str
    ours: bool  # the source user may drop it (owner, member of the owner role, or superuser)
    problems: tuple[str, ...]  # why it does not publish exactly the pipeline's tables


def _describe_publication(
    conn: psycopg.Connection[Any], name: str, tables: tuple[TableRef, ...]
) -> _Publication | None:
    """The publication as the pipeline sees it, or None when there is none."""
    row = conn.execute(
        "SELECT oid, pg_get_userbyid(pubowner), pg_has_role(current_user, pubowner, 'USAGE'),"
        " puballtables, pubinsert AND pubupdate AND pubdelete AND pubtruncate, pubviaroot"
        " FROM pg_publication WHERE pubname = %s",
        (name,),
    ).fetchone()
    if row is None:
        return None
    oid, owner, ours, all_tables, all_actions, via_root = row
    problems: list[str] = []
    if all_tables:
        problems.append("it is FOR ALL TABLES")
    if not all_actions:
        problems.append("it does not publish all of insert, update, delete and truncate")
    pg15 = conn.info.server_version >= 150000
    filtered = "r.prqual IS NOT NULL OR r.prattrs IS NOT NULL" if pg15 else "false"
    rels = conn.execute(
        sql.SQL(
            "SELECT n.nspname, c.relname, c.relkind = 'p', {} FROM pg_publication_rel r"
            " JOIN pg_class c ON c.oid = r.prrelid"
            " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE r.prpubid = %s"
        ).format(sql.SQL(filtered)),
        (oid,),
    ).fetchall()
    published = {TableRef(schema, table): (part, filt) for schema, table, part, filt in rels}
    if missing := [t for t in tables if t not in published]:
        problems.append("it does not publish " + ", ".join(t.display for t in missing))
    if extra := sorted(set(published) - set(tables), key=lambda t: t.display):
        problems.append("it also publishes " + ", ".join(t.display for t in extra))
    if filters := [t for t, (_p, filt) in published.items() if filt and t in tables]:
        problems.append(
            "it has a row filter or column list on " + ", ".join(t.display for t in filters)
        )
    if not via_root and any(part for t, (part, _f) in published.items() if t in tables):
        problems.append("it lacks publish_via_partition_root for a partitioned table")
    if (
        pg15
        and conn.execute(
            "SELECT 1 FROM pg_publication_namespace WHERE pnpubid = %s", (oid,)
        ).fetchone()
    ):
        problems.append("it publishes whole schemas (TABLES IN SCHEMA)")
    if conn.info.server_version >= 180000 and _lacks_generated_columns(conn, oid):
        problems.append("it leaves out stored generated columns (publish_generated_columns)")
    return _Publication(owner=owner, ours=bool(ours), problems=tuple(problems))


def _lacks_generated_columns(conn: psycopg.Connection[Any], oid: int) -> bool:
    """PostgreSQL 18+: the publication leaves out stored generated columns its tables have.

    PostgreSQL 18 then refuses UPDATE and DELETE of such a table if it is ``REPLICA IDENTITY
    FULL``, and a target that copies the column as plain data would miss its changes.
    """
    row = conn.execute(
        "SELECT p.pubgencols <> 's' AND EXISTS ("
        " SELECT 1 FROM pg_publication_rel r JOIN pg_attribute a ON a.attrelid = r.prrelid"
        " WHERE r.prpubid = p.oid AND a.attgenerated = 's' AND NOT a.attisdropped)"
        " FROM pg_publication p WHERE p.oid = %s",
        (oid,),
    ).fetchone()
    return bool(row and row[0])


def drop_slot_if_exists(conn: psycopg.Connection[Any], pipeline: str) -> bool:
    """Drop the pipeline's slot left by an earlier attempt; a reload restarts CDC from scratch.

    A killed run may leave its walsender alive for a moment, holding the slot active; that
    backend is terminated first (only one run per pipeline exists, so it is ours).
    """
    name = slot_name(pipeline)
    row = conn.execute(
        "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", (name,)
    ).fetchone()
    if row is None:
        return False
    if row[0] is not None:
        conn.execute("SELECT pg_terminate_backend(%s, 10000)", (row[0],))
    conn.execute(
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s",
        (name,),
    )
    return True


@contextmanager
def slot_with_snapshot(source_url: str, pipeline: str) -> Iterator[SlotSnapshot]:
    """Create the pipeline's pgoutput slot and hold its exported snapshot open for the block.

    Leave the block as soon as every reader has imported the snapshot: the importers keep it alive
    from then on, and an idle walsender is one more session on the source.
    """
    name = slot_name(pipeline)
    conn = connect(
        source_url, pipeline=pipeline, role="source", autocommit=True, replication="database"
    )
    try:
        if conn.info.server_version >= 150000:
            cmd = sql.SQL("CREATE_REPLICATION_SLOT {} LOGICAL pgoutput (SNAPSHOT 'export')")
        else:
            cmd = sql.SQL("CREATE_REPLICATION_SLOT {} LOGICAL pgoutput EXPORT_SNAPSHOT")
        query = cmd.format(sql.Identifier(name)).as_bytes(conn)
        res = conn.pgconn.exec_(query)
        if res.status != pq.ExecStatus.TUPLES_OK:
            message = res.error_message.decode(errors="replace")
            raise SourceError(
                f"cannot create replication slot {name}: {first_line(scrub(message))}",
                pipeline=pipeline,
                fix="check max_replication_slots and max_wal_senders on the source, and that "
                "the source user has the REPLICATION attribute",
            )
        values = {
            (res.fname(i) or b"").decode(): (res.get_value(0, i) or b"").decode()
            for i in range(res.nfields)
        }
        yield SlotSnapshot(
            slot=name,
            consistent_lsn=Lsn(values["consistent_point"]),
            snapshot=values["snapshot_name"],
        )
    finally:
        conn.close()

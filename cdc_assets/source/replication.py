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


def recreate_publication(
    conn: psycopg.Connection[Any], pipeline: str, tables: tuple[TableRef, ...]
) -> None:
    """(Re)create the pipeline's publication FOR TABLE its tables, in one transaction.

    Recreated rather than altered: a reload must publish exactly the current table list, and a
    publication left by a failed attempt may list other tables. ``publish_via_partition_root``
    makes changes of partitions arrive under the parent, which is the table the target has.
    On PostgreSQL 18+ it publishes stored generated columns too: PostgreSQL 18 refuses UPDATE and
    DELETE of a ``REPLICA IDENTITY FULL`` table whose generated columns a publication leaves out,
    and a target that cannot compute a generated column (``target/ddl.py``) gets its values. The
    apply never writes the ones the target computes itself.
    """
    name = publication_name(pipeline)
    targets = sql.SQL(", ").join(sql.Identifier(t.schema, t.name) for t in tables)
    try:
        with conn.transaction():
            conn.execute(sql.SQL("DROP PUBLICATION IF EXISTS {}").format(sql.Identifier(name)))
            options: sql.Composable = sql.SQL("publish_via_partition_root = true")
            if conn.info.server_version >= 180000:
                options += sql.SQL(", publish_generated_columns = stored")
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
                "owner role (GRANT <owner role> TO <source user>)"
            )
        raise SourceError(
            f"cannot create publication {name}: {reason}", pipeline=pipeline, fix=fix
        ) from None


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

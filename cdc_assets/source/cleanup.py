"""Drop a pipeline's replication slot and publication: what reset and remove must never leak.

A forgotten logical slot pins WAL on the source forever (disk full, eventually), so this runs on
every reset and remove, and is safe to run again: what is already gone is simply not reported.
"""

import time
from typing import Any

import psycopg
from psycopg import sql

from cdc_assets.domain import publication_name, slot_name
from cdc_assets.errors import SourceError
from cdc_assets.pg.connect import connect, first_line, resolve
from cdc_assets.secrets import scrub

RELEASE_TIMEOUT_S = 15.0
"""How long a terminated walsender may take to let go of the slot."""


def drop_replication_artifacts(source_url: str, pipeline: str) -> list[str]:
    """Drop the pipeline's slot (terminating a backend that holds it) and its publication.

    A publication that belongs to another role (an admin created it for the pipeline) is kept,
    and the returned line says so.

    ``source_url`` may be a libpq URL or the row's ``env:VAR`` reference. Returns one line per
    object dropped (empty when there was nothing to drop). Raises :class:`ConnectError` when the
    source is unreachable and :class:`SourceError` when the role may not drop them.
    """
    url = resolve(source_url, pipeline=pipeline, role="source")
    done: list[str] = []
    with connect(url, pipeline=pipeline, role="source", autocommit=True) as conn:
        try:
            slot = _drop_slot(conn, slot_name(pipeline), pipeline)
            if slot:
                done.append(slot)
            publication = _drop_publication(conn, publication_name(pipeline))
            if publication:
                done.append(publication)
        except psycopg.errors.InsufficientPrivilege as exc:
            raise SourceError(
                f"cannot drop replication slot/publication: {first_line(scrub(str(exc)))}",
                pipeline=pipeline,
                fix="run reset/remove with a source role that has REPLICATION and owns the "
                "publication, or drop them by hand",
            ) from None
    return done


def _drop_slot(conn: psycopg.Connection[Any], slot: str, pipeline: str) -> str | None:
    deadline = time.monotonic() + RELEASE_TIMEOUT_S
    terminated: list[int] = []
    while True:
        row = conn.execute(
            "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", (slot,)
        ).fetchone()
        if row is None:
            return None  # already gone (or dropped by a racing reset)
        (active_pid,) = row
        if active_pid is not None:
            if active_pid not in terminated:
                conn.execute("SELECT pg_terminate_backend(%s)", (active_pid,))
                terminated.append(active_pid)
        else:
            try:
                conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
            except psycopg.errors.UndefinedObject:
                return None
            except psycopg.errors.ObjectInUse:
                pass  # grabbed again between our check and the drop: terminate and retry
            else:
                killed = f" (terminated backend {terminated[0]})" if terminated else ""
                return f"dropped replication slot {slot}{killed}"
        if time.monotonic() >= deadline:
            raise SourceError(
                f"replication slot {slot} is still in use after {RELEASE_TIMEOUT_S:.0f}s",
                pipeline=pipeline,
                fix="stop the process reading the slot (a running CDC job?) and retry",
            )
        time.sleep(0.1)


def _drop_publication(conn: psycopg.Connection[Any], name: str) -> str | None:
    """Drop the publication if the source user may; keep one an admin created for it.

    A publication owned by another role is how a source user that does not own the tables runs
    CDC (docs/security.md): it holds no WAL, and the next full load reuses it, so it stays.
    """
    row = conn.execute(
        "SELECT pg_get_userbyid(pubowner), pg_has_role(current_user, pubowner, 'USAGE')"
        " FROM pg_publication WHERE pubname = %s",
        (name,),
    ).fetchone()
    if row is None:
        return None
    owner, ours = row
    if not ours:
        return f"kept publication {name}: it belongs to {owner}, who created it for this pipeline"
    conn.execute(sql.SQL("DROP PUBLICATION IF EXISTS {}").format(sql.Identifier(name)))
    return f"dropped publication {name}"

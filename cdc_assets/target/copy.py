"""Stream one ``COPY ... TO STDOUT`` into one ``COPY ... FROM STDIN`` without looking at rows.

The server sends one CopyData message per row. The source side reads them with libpq directly
(``PGconn.get_copy_data``): measured on this machine that halves the Python CPU per row compared
with psycopg's ``Copy`` iterator, and that CPU competes with the two PostgreSQL backends for the
same cores. Rows are appended to a buffer and handed to the target's psycopg ``Copy`` in ~1 MiB
writes, so Python does one append per row and one write per MiB, and memory per stream is bounded
by that buffer whatever the table size.

The read is the non-blocking ``get_copy_data(1)``, with a wait on the socket when libpq has no
complete row buffered, as psycopg's own ``generators.copy_from`` does. psycopg's C ``PGconn``
calls ``PQgetCopyData`` while holding the GIL, so the blocking form ``get_copy_data(0)`` froze
every other Python thread of the process for as long as the source took to send the next row
(a slow or lock-waiting source, or a busy core): the full load's parallel copy workers, which
are threads, then ran one at a time. ``select.poll`` releases the GIL while it waits.
"""

import select
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import pq, sql

WRITE_BYTES = 1 << 20
PROGRESS_BYTES = 8 << 20


class SourceReadError(Exception):
    """The source side of a stream failed; the message is the server's (not yet scrubbed)."""


@dataclass(frozen=True, slots=True)
class CopyCount:
    """Rows each side reported for one stream, and the bytes moved."""

    rows_out: int
    rows_in: int
    bytes: int


def pump(
    source: psycopg.Connection[Any],
    copy_out: sql.Composed,
    target: psycopg.Connection[Any],
    copy_in: sql.Composed,
    *,
    on_progress: Callable[[int], None] | None = None,
) -> CopyCount:
    """Copy one stream; the caller owns both transactions (the target commits after this returns).

    ``on_progress`` gets byte increments every few MiB, for progress reports during big ranges.
    Raises :class:`SourceReadError` for source failures, ``psycopg.Error`` for target ones.
    """
    src = source.pgconn
    res = src.exec_(copy_out.as_bytes(source))
    if res.status != pq.ExecStatus.COPY_OUT:
        raise SourceReadError(_message(res.error_message or src.error_message))
    in_cur = target.cursor()
    total = 0
    reported = 0
    get = src.get_copy_data
    readable = select.poll()  # poll, not select: no FD_SETSIZE limit on the socket number
    readable.register(src.socket, select.POLLIN)
    with in_cur.copy(copy_in) as inp:
        buf = bytearray()
        while True:
            nbytes, block = get(1)
            if nbytes == 0:  # no complete row buffered: wait for the socket without the GIL
                readable.poll()
                try:
                    src.consume_input()
                except psycopg.OperationalError:
                    raise SourceReadError(_message(src.error_message)) from None
                continue
            if nbytes < 0:
                break
            buf += block
            if len(buf) >= WRITE_BYTES:
                inp.write(buf)
                total += len(buf)
                buf = bytearray()
                if on_progress is not None and total - reported >= PROGRESS_BYTES:
                    on_progress(total - reported)
                    reported = total
        if nbytes == -2:
            raise SourceReadError(_message(src.error_message))
        rows_out = _finish(src)
        if buf:
            inp.write(buf)
            total += len(buf)
    if on_progress is not None and total > reported:
        on_progress(total - reported)
    return CopyCount(rows_out=rows_out, rows_in=in_cur.rowcount, bytes=total)


def _finish(src: pq.abc.PGconn) -> int:
    """Collect the COPY's final result ("COPY n"); drain to the end as libpq requires."""
    rows = -1
    error: str | None = None
    while (res := src.get_result()) is not None:
        if res.status == pq.ExecStatus.COMMAND_OK and res.command_status:
            rows = int(res.command_status.split()[-1])
        elif res.status != pq.ExecStatus.COMMAND_OK:
            error = _message(res.error_message)
    if error is not None:
        raise SourceReadError(error)
    return rows


def _message(raw: bytes) -> str:
    return raw.decode(errors="replace").strip() or "unknown error"

"""Stream one ``COPY ... TO STDOUT`` into one ``COPY ... FROM STDIN`` without looking at rows.

The server sends one CopyData message per row; they are appended to a buffer and written to the
target in ~1 MiB pieces, so Python does one cheap append per row and one network write per MiB.
Memory per stream is bounded by the buffer (plus psycopg's own few-MiB write queue), whatever the
table size. psycopg's libpq calls release the GIL, so several streams run in parallel threads.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

WRITE_BYTES = 1 << 20
PROGRESS_BYTES = 8 << 20


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
    """
    out_cur = source.cursor()
    in_cur = target.cursor()
    total = 0
    reported = 0
    with out_cur.copy(copy_out) as out, in_cur.copy(copy_in) as inp:
        buf = bytearray()
        for block in out:
            buf += block
            if len(buf) >= WRITE_BYTES:
                inp.write(buf)
                total += len(buf)
                buf = bytearray()
                if on_progress is not None and total - reported >= PROGRESS_BYTES:
                    on_progress(total - reported)
                    reported = total
        if buf:
            inp.write(buf)
            total += len(buf)
    if on_progress is not None and total > reported:
        on_progress(total - reported)
    return CopyCount(rows_out=out_cur.rowcount, rows_in=in_cur.rowcount, bytes=total)

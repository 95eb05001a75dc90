"""Encode decoded tuple values as ``COPY ... FROM STDIN`` text-format lines.

pgoutput already sends each value in its type's text output form, which is exactly what COPY's
text format expects once the four special bytes are escaped; so values go from the slot to the
staging table without ever being parsed in Python.
"""

import re
from collections.abc import Iterable

from cdc_assets.decoding.messages import BinaryValue, Row, TupleValue, UnchangedToast

NULL = b"\\N"
_SPECIAL = re.compile(rb"[\\\n\r\t]")
_ESCAPED = re.compile(rb"[\\\n\r]")


def escape(value: bytes) -> bytes:
    """Escape backslash, newline, carriage return and tab for COPY text format."""
    if _SPECIAL.search(value) is None:
        return value
    return (
        value.replace(b"\\", b"\\\\")
        .replace(b"\n", b"\\n")
        .replace(b"\r", b"\\r")
        .replace(b"\t", b"\\t")
    )


def field(value: TupleValue) -> bytes:
    """One COPY field; unchanged-TOAST markers become NULL (the apply SQL never reads them)."""
    if value is None or isinstance(value, UnchangedToast):
        return NULL
    if isinstance(value, BinaryValue):
        raise ValueError("binary pgoutput values cannot be staged as COPY text")
    return escape(value)


def line(fields: Iterable[bytes]) -> bytes:
    """A COPY text line from already-encoded fields."""
    return b"\t".join(fields) + b"\n"


def row_line(prefix: bytes, row: Row) -> bytes:
    """``prefix`` + a whole row as one COPY line; the common case costs three C-level scans.

    Joining first and checking the joined line once is much cheaper than escaping per value; the
    per-value path runs only when a value holds a special byte, a NULL or is not plain text.
    """
    try:
        joined = b"\t".join(row)  # type: ignore[arg-type]  # TypeError unless all bytes
    except TypeError:
        return prefix + line(map(field, row))
    if joined.count(b"\t") == len(row) - 1 and _ESCAPED.search(joined) is None:
        return prefix + joined + b"\n"
    return prefix + line(map(field, row))

"""Frozen value objects for pgoutput messages (logical replication protocol, version 1).

These cross from the decoder to the engine; they hold LSNs as plain ints (the decoder is stdlib only
and must not depend on ``domain``; ``domain.Lsn(value)`` wraps them where an LSN is printed).

Tuple values keep the server's text form as ``bytes``: the apply path writes them straight into a
``COPY ... FROM STDIN`` text stream, so decoding to ``str`` and encoding again would only cost time.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Final


class UnchangedToast:
    """Marker for a TOASTed column that an UPDATE did not change ('u' in TupleData).

    The server does not send the value; the target must keep the one it already has.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNCHANGED_TOAST"

    def __reduce__(self) -> str:
        return "UNCHANGED_TOAST"


UNCHANGED_TOAST: Final = UnchangedToast()


@dataclass(frozen=True, slots=True)
class BinaryValue:
    """A column in the type's binary send/recv format ('b'; only with the ``binary`` option)."""

    data: bytes


TupleValue = bytes | BinaryValue | UnchangedToast | None
"""One column of a TupleData: text bytes, binary, unchanged-TOAST marker, or SQL NULL."""

Row = tuple[TupleValue, ...]


@dataclass(frozen=True, slots=True)
class Begin:
    """Start of a transaction; ``final_lsn`` is the LSN of its commit record."""

    final_lsn: int
    commit_ts: datetime
    xid: int


@dataclass(frozen=True, slots=True)
class Commit:
    """End of a transaction. ``end_lsn`` is what a watermark records: everything before it is in."""

    flags: int
    commit_lsn: int
    end_lsn: int
    commit_ts: datetime


@dataclass(frozen=True, slots=True)
class Origin:
    """The transaction was replayed from another node (replication origin)."""

    origin_lsn: int
    name: str


@dataclass(frozen=True, slots=True)
class Column:
    """A column as the Relation message describes it."""

    name: str
    type_oid: int
    type_modifier: int
    is_key: bool


@dataclass(frozen=True, slots=True)
class Relation:
    """Schema of a table at this point of the WAL; sent before its first change after any DDL."""

    relation_id: int
    namespace: str
    name: str
    replica_identity: str  # 'd' default, 'n' nothing, 'f' full, 'i' index
    columns: tuple[Column, ...]

    @property
    def key_columns(self) -> tuple[str, ...]:
        """Names of the replica identity columns (all of them for REPLICA IDENTITY FULL)."""
        return tuple(c.name for c in self.columns if c.is_key)


@dataclass(frozen=True, slots=True)
class Type:
    """A non-builtin data type used by a following Relation."""

    type_oid: int
    namespace: str
    name: str


@dataclass(frozen=True, slots=True)
class Insert:
    """A new row."""

    relation_id: int
    new: Row


@dataclass(frozen=True, slots=True)
class Update:
    """A changed row.

    ``old_kind`` is ``'K'`` when ``old`` carries only the old key (the key changed), ``'O'`` when it
    carries the whole old row (REPLICA IDENTITY FULL), ``None`` when no old tuple was sent.
    """

    relation_id: int
    old_kind: str | None
    old: Row | None
    new: Row


@dataclass(frozen=True, slots=True)
class Delete:
    """A removed row, identified by its key (``'K'``) or its whole old row (``'O'``)."""

    relation_id: int
    old_kind: str
    old: Row


@dataclass(frozen=True, slots=True)
class Truncate:
    """TRUNCATE of one or more published tables in one statement."""

    options: int  # bit 1: CASCADE, bit 2: RESTART IDENTITY
    relation_ids: tuple[int, ...]

    @property
    def cascade(self) -> bool:
        """The source statement had CASCADE."""
        return bool(self.options & 1)

    @property
    def restart_identity(self) -> bool:
        """The source statement had RESTART IDENTITY."""
        return bool(self.options & 2)


@dataclass(frozen=True, slots=True)
class LogicalMessage:
    """A ``pg_logical_emit_message`` payload (sent only with the ``messages`` option)."""

    transactional: bool
    lsn: int
    prefix: str
    content: bytes


Message = (
    Begin | Commit | Origin | Relation | Type | Insert | Update | Delete | Truncate | LogicalMessage
)

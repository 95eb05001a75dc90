"""Decode one pgoutput message (protocol version 1) into a frozen dataclass.

Pure and stdlib only, so it is tested on golden bytes captured from a real server, with no database.
Every field is read at exactly the width the protocol gives it, and every message must consume its
whole buffer: a short or long buffer means the stream and this decoder disagree, and guessing would
corrupt the target silently, so both raise :class:`DecodeError`.

Reference: PostgreSQL docs, "Logical Replication Message Formats". Streaming (v2), two-phase (v3)
and parallel streaming (v4) messages are refused: the engine asks for version 1.
"""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from struct import Struct
from struct import error as StructError

from cdc_assets.decoding.messages import (
    UNCHANGED_TOAST,
    Begin,
    BinaryValue,
    Column,
    Commit,
    Delete,
    Insert,
    LogicalMessage,
    Message,
    Origin,
    Relation,
    Row,
    Truncate,
    TupleValue,
    Type,
    Update,
)

PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)

_I8 = Struct("!B")
_I16 = Struct("!h")
_I32 = Struct("!i")
_U32 = Struct("!I")
_U64 = Struct("!Q")
_I64 = Struct("!q")
_BEGIN = Struct("!QqI")
_COMMIT = Struct("!BQQq")
_COLUMN_TAIL = Struct("!Ii")

_NULL = ord("n")
_UNCHANGED = ord("u")
_TEXT = ord("t")
_BINARY = ord("b")


class DecodeError(ValueError):
    """The bytes are not a valid pgoutput v1 message; the text says where and what."""


def pg_timestamp(micros: int) -> datetime:
    """Convert a PostgreSQL timestamp (microseconds since 2000-01-01 UTC) to an aware datetime."""
    try:
        return PG_EPOCH + timedelta(microseconds=micros)
    except OverflowError:
        # +-infinity and out-of-range values cannot be a commit time; keep the stream decodable.
        return datetime.max.replace(tzinfo=UTC) if micros > 0 else datetime.min.replace(tzinfo=UTC)


def _tuple(buf: bytes, pos: int) -> tuple[Row, int]:
    """TupleData at ``pos``: Int16 column count, then per column a kind byte and maybe a value.

    The hot path of the whole engine (one call per changed row): local names only, no method
    calls per column, and one bounds check per value.
    """
    size = len(buf)
    if pos + 2 > size:
        raise DecodeError(f"message {chr(buf[0])!r} truncated reading tuple column count")
    n = (buf[pos] << 8) | buf[pos + 1]
    if n & 0x8000:
        raise DecodeError(f"message {chr(buf[0])!r}: negative column count {n - 0x10000}")
    pos += 2
    unpack = _I32.unpack_from
    values: list[TupleValue] = []
    append = values.append
    try:
        for _ in range(n):
            kind = buf[pos]
            if kind == _TEXT:
                (length,) = unpack(buf, pos + 1)
                pos += 5
                end = pos + length
                if length < 0 or end > size:
                    raise DecodeError(
                        f"message {chr(buf[0])!r}: column value of {length} bytes at byte "
                        f"{pos} runs past the end ({size} bytes)"
                    )
                append(buf[pos:end])
                pos = end
            elif kind == _NULL:
                append(None)
                pos += 1
            elif kind == _UNCHANGED:
                append(UNCHANGED_TOAST)
                pos += 1
            elif kind == _BINARY:
                (length,) = unpack(buf, pos + 1)
                pos += 5
                end = pos + length
                if length < 0 or end > size:
                    raise DecodeError(
                        f"message {chr(buf[0])!r}: column value of {length} bytes at byte "
                        f"{pos} runs past the end ({size} bytes)"
                    )
                append(BinaryValue(buf[pos:end]))
                pos = end
            else:
                raise DecodeError(
                    f"message {chr(buf[0])!r}: unknown tuple value kind {kind!r} at byte {pos}"
                )
    except (IndexError, StructError):
        raise DecodeError(
            f"message {chr(buf[0])!r} truncated inside tuple data at byte {pos}"
        ) from None
    return tuple(values), pos


class _Reader:
    """A cursor over one message's bytes; every read checks the remaining length."""

    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.pos = 1  # byte 0 is the message type

    def _need(self, n: int, what: str) -> None:
        if self.pos + n > len(self.buf):
            raise DecodeError(
                f"message {chr(self.buf[0])!r} truncated reading {what} at byte {self.pos}: "
                f"need {n} bytes, {len(self.buf) - self.pos} left"
            )

    def u8(self, what: str) -> int:
        self._need(1, what)
        v = self.buf[self.pos]
        self.pos += 1
        return v

    def i16(self, what: str) -> int:
        self._need(2, what)
        (v,) = _I16.unpack_from(self.buf, self.pos)
        self.pos += 2
        return int(v)

    def i32(self, what: str) -> int:
        self._need(4, what)
        (v,) = _I32.unpack_from(self.buf, self.pos)
        self.pos += 4
        return int(v)

    def u32(self, what: str) -> int:
        self._need(4, what)
        (v,) = _U32.unpack_from(self.buf, self.pos)
        self.pos += 4
        return int(v)

    def u64(self, what: str) -> int:
        self._need(8, what)
        (v,) = _U64.unpack_from(self.buf, self.pos)
        self.pos += 8
        return int(v)

    def i64(self, what: str) -> int:
        self._need(8, what)
        (v,) = _I64.unpack_from(self.buf, self.pos)
        self.pos += 8
        return int(v)

    def cstring(self, what: str) -> str:
        end = self.buf.find(b"\x00", self.pos)
        if end < 0:
            raise DecodeError(
                f"message {chr(self.buf[0])!r}: unterminated string for {what} at byte {self.pos}"
            )
        raw = self.buf[self.pos : end]
        self.pos = end + 1
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DecodeError(f"message {chr(self.buf[0])!r}: {what} is not UTF-8: {exc}") from None

    def take(self, n: int, what: str) -> bytes:
        if n < 0:
            raise DecodeError(f"message {chr(self.buf[0])!r}: negative length {n} for {what}")
        self._need(n, what)
        v = self.buf[self.pos : self.pos + n]
        self.pos += n
        return v

    def finish(self) -> None:
        if self.pos != len(self.buf):
            raise DecodeError(
                f"message {chr(self.buf[0])!r} has {len(self.buf) - self.pos} unread trailing "
                f"bytes (decoded {self.pos} of {len(self.buf)})"
            )

    def tuple_data(self) -> Row:
        """TupleData at the current position (see :func:`_tuple`)."""
        row, self.pos = _tuple(self.buf, self.pos)
        return row

    def tuple_marker(self, allowed: bytes, what: str) -> str:
        b = self.u8(what)
        if b not in allowed:
            raise DecodeError(
                f"message {chr(self.buf[0])!r}: expected one of {allowed.decode()!r} for {what}, "
                f"got {chr(b)!r}"
            )
        return chr(b)


def _begin(r: _Reader) -> Begin:
    r._need(_BEGIN.size, "begin fields")
    final_lsn, ts, xid = _BEGIN.unpack_from(r.buf, r.pos)
    r.pos += _BEGIN.size
    return Begin(final_lsn=final_lsn, commit_ts=pg_timestamp(ts), xid=xid)


def _commit(r: _Reader) -> Commit:
    r._need(_COMMIT.size, "commit fields")
    flags, commit_lsn, end_lsn, ts = _COMMIT.unpack_from(r.buf, r.pos)
    r.pos += _COMMIT.size
    return Commit(flags=flags, commit_lsn=commit_lsn, end_lsn=end_lsn, commit_ts=pg_timestamp(ts))


def _origin(r: _Reader) -> Origin:
    return Origin(origin_lsn=r.u64("origin lsn"), name=r.cstring("origin name"))


def _relation(r: _Reader) -> Relation:
    relid = r.u32("relation id")
    namespace = r.cstring("namespace")
    name = r.cstring("relation name")
    ident = chr(r.u8("replica identity"))
    if ident not in "dnfi":
        raise DecodeError(f"relation {namespace}.{name}: unknown replica identity {ident!r}")
    ncols = r.i16("column count")
    if ncols < 0:
        raise DecodeError(f"relation {namespace}.{name}: negative column count {ncols}")
    cols = []
    for i in range(ncols):
        flags = r.u8(f"flags of column {i}")
        cname = r.cstring(f"name of column {i}")
        r._need(_COLUMN_TAIL.size, f"type of column {cname}")
        type_oid, typmod = _COLUMN_TAIL.unpack_from(r.buf, r.pos)
        r.pos += _COLUMN_TAIL.size
        cols.append(
            Column(name=cname, type_oid=type_oid, type_modifier=typmod, is_key=bool(flags & 1))
        )
    return Relation(relid, namespace, name, ident, tuple(cols))


def _type(r: _Reader) -> Type:
    return Type(
        type_oid=r.u32("type oid"), namespace=r.cstring("namespace"), name=r.cstring("name")
    )


def _insert(r: _Reader) -> Insert:
    relid = r.u32("relation id")
    r.tuple_marker(b"N", "new tuple marker")
    return Insert(relation_id=relid, new=r.tuple_data())


def _update(r: _Reader) -> Update:
    relid = r.u32("relation id")
    marker = r.tuple_marker(b"KON", "tuple marker")
    old_kind: str | None = None
    old: Row | None = None
    if marker != "N":
        old_kind = marker
        old = r.tuple_data()
        r.tuple_marker(b"N", "new tuple marker")
    return Update(relation_id=relid, old_kind=old_kind, old=old, new=r.tuple_data())


def _delete(r: _Reader) -> Delete:
    relid = r.u32("relation id")
    kind = r.tuple_marker(b"KO", "old tuple marker")
    return Delete(relation_id=relid, old_kind=kind, old=r.tuple_data())


def _truncate(r: _Reader) -> Truncate:
    n = r.i32("relation count")
    if n < 0:
        raise DecodeError(f"truncate: negative relation count {n}")
    options = r.u8("options")
    return Truncate(options=options, relation_ids=tuple(r.u32("relation id") for _ in range(n)))


def _message(r: _Reader) -> LogicalMessage:
    flags = r.u8("flags")
    lsn = r.u64("lsn")
    prefix = r.cstring("prefix")
    length = r.i32("content length")
    return LogicalMessage(
        transactional=bool(flags & 1), lsn=lsn, prefix=prefix, content=r.take(length, "content")
    )


_DECODERS: dict[int, Callable[[_Reader], Message]] = {
    ord("B"): _begin,
    ord("C"): _commit,
    ord("O"): _origin,
    ord("R"): _relation,
    ord("Y"): _type,
    ord("I"): _insert,
    ord("U"): _update,
    ord("D"): _delete,
    ord("T"): _truncate,
    ord("M"): _message,
}

_UNSUPPORTED = {
    ord("S"): "Stream Start (protocol >= 2)",
    ord("E"): "Stream Stop (protocol >= 2)",
    ord("c"): "Stream Commit (protocol >= 2)",
    ord("A"): "Stream Abort (protocol >= 2)",
    ord("b"): "Begin Prepare (protocol >= 3)",
    ord("P"): "Prepare (protocol >= 3)",
    ord("K"): "Commit Prepared (protocol >= 3)",
    ord("r"): "Rollback Prepared (protocol >= 3)",
    ord("p"): "Stream Prepare (protocol >= 3)",
}


_FAST = {ord("I"): b"N", ord("U"): b"N", ord("D"): b"KO"}
_RELID = Struct("!I")


def _decode_fast(buf: bytes, kind: int) -> Message:
    """Insert, Update without old tuple, and Delete: the bulk of any stream, decoded inline."""
    (relid,) = _RELID.unpack_from(buf, 1)
    row, pos = _tuple(buf, 6)
    if pos != len(buf):
        raise DecodeError(
            f"message {chr(kind)!r} has {len(buf) - pos} unread trailing bytes "
            f"(decoded {pos} of {len(buf)})"
        )
    if kind == 73:  # 'I'
        return Insert(relid, row)
    if kind == 85:  # 'U'
        return Update(relid, None, None, row)
    return Delete(relid, chr(buf[5]), row)


BEGIN = ord("B")
COMMIT = ord("C")


def begin_final_lsn(data: bytes) -> int:
    """Only the commit LSN of a Begin message: what a batch needs to decide to skip a transaction.

    Same checks as :func:`decode`, without building the dataclass (one per source transaction).
    """
    if len(data) != 1 + _BEGIN.size or data[0] != BEGIN:
        return decode(data).final_lsn  # type: ignore[union-attr]  # raises DecodeError
    return int(_U64.unpack_from(data, 1)[0])


def commit_end_lsn(data: bytes) -> int:
    """Only the end LSN of a Commit message (the watermark a batch records)."""
    if len(data) != 1 + _COMMIT.size or data[0] != COMMIT:
        return decode(data).end_lsn  # type: ignore[union-attr]  # raises DecodeError
    return int(_U64.unpack_from(data, 10)[0])


INSERT = ord("I")
UPDATE = ord("U")
_NEW = ord("N")


def decode_new_row(data: bytes) -> tuple[int, Row] | None:
    """(relation id, new row) of an Insert, or of an Update that sent no old tuple; else None.

    The bulk of any stream, decoded with the same checks as :func:`decode` but without building
    a dataclass per row; anything else (or anything odd) is left to :func:`decode`.
    """
    if len(data) < 6 or data[5] != _NEW or data[0] not in (INSERT, UPDATE):
        return None
    row, pos = _tuple(data, 6)
    if pos != len(data):
        raise DecodeError(
            f"message {chr(data[0])!r} has {len(data) - pos} unread trailing bytes "
            f"(decoded {pos} of {len(data)})"
        )
    return int(_RELID.unpack_from(data, 1)[0]), row


def decode(data: bytes) -> Message:
    """Decode one whole pgoutput message, or raise :class:`DecodeError` saying what is wrong."""
    if not data:
        raise DecodeError("empty pgoutput message")
    kind = data[0]
    if kind in _FAST and len(data) > 5 and data[5] in _FAST[kind]:
        return _decode_fast(bytes(data), kind)
    fn = _DECODERS.get(kind)
    if fn is None:
        what = _UNSUPPORTED.get(kind)
        if what:
            raise DecodeError(f"unsupported pgoutput message {what}: the engine reads protocol 1")
        raise DecodeError(f"unknown pgoutput message type {chr(kind)!r} (0x{kind:02x})")
    r = _Reader(bytes(data))
    msg = fn(r)
    r.finish()
    return msg

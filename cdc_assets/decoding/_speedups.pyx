# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""Compiled twin of the hot functions of :mod:`cdc_assets.decoding.pgoutput` (optional).

Same names, same results, same :class:`DecodeError` texts as the pure-Python reference, which stays
the specification: anything that is not an Insert, an Update without old tuple, a Delete, a Begin
or a Commit (and any input that is not exactly ``bytes``) is handed to the reference unchanged, so
the two can only differ on the tuple reader and the few fixed-layout messages compiled here. The
unit tests decode every golden frame and random frames through both and compare.

Built by setup.py when a C compiler is there; :mod:`cdc_assets.decoding.codec` picks it.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.ref cimport Py_INCREF
from cpython.tuple cimport PyTuple_New, PyTuple_SET_ITEM
from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t

from cdc_assets.decoding import pgoutput as _pure
from cdc_assets.decoding.messages import UNCHANGED_TOAST, BinaryValue, Delete, Insert, Update
from cdc_assets.decoding.pgoutput import DecodeError

BEGIN = _pure.BEGIN
COMMIT = _pure.COMMIT
INSERT = _pure.INSERT
UPDATE = _pure.UPDATE

cdef object _UNCHANGED = UNCHANGED_TOAST
cdef object _Binary = BinaryValue
cdef object _Insert = Insert
cdef object _Update = Update
cdef object _Delete = Delete
cdef object _Error = DecodeError
cdef object _pure_decode = _pure.decode

cdef enum:
    K_BEGIN = 66     # 'B'
    K_COMMIT = 67    # 'C'
    K_INSERT = 73    # 'I'
    K_UPDATE = 85    # 'U'
    K_DELETE = 68    # 'D'
    K_NEW = 78       # 'N'
    K_KEY = 75       # 'K'
    K_OLD = 79       # 'O'
    V_TEXT = 116     # 't'
    V_BINARY = 98    # 'b'
    V_NULL = 110     # 'n'
    V_UNCHANGED = 117  # 'u'
    BEGIN_SIZE = 21  # 1 + Int64 + Int64 + Int32
    COMMIT_SIZE = 26  # 1 + Int8 + Int64 + Int64 + Int64


cdef inline uint32_t _u32(const unsigned char* p) noexcept nogil:
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]


cdef inline uint64_t _u64(const unsigned char* p) noexcept nogil:
    return (<uint64_t>_u32(p) << 32) | _u32(p + 4)


cdef tuple _row(bytes buf, Py_ssize_t pos, Py_ssize_t* end_out):
    """TupleData at ``pos`` (see ``pgoutput._tuple``); stores the position after it."""
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(buf)
    cdef Py_ssize_t size = PyBytes_GET_SIZE(buf)
    cdef Py_ssize_t n, i, end
    cdef int32_t length
    cdef unsigned char kind
    cdef object value
    cdef tuple row
    if pos + 2 > size:
        raise _Error(f"message {chr(p[0])!r} truncated reading tuple column count")
    n = (p[pos] << 8) | p[pos + 1]
    if n & 0x8000:
        raise _Error(f"message {chr(p[0])!r}: negative column count {n - 0x10000}")
    pos += 2
    row = PyTuple_New(n)
    for i in range(n):
        if pos >= size:
            raise _Error(f"message {chr(p[0])!r} truncated inside tuple data at byte {pos}")
        kind = p[pos]
        if kind == V_TEXT or kind == V_BINARY:
            if pos + 5 > size:
                raise _Error(f"message {chr(p[0])!r} truncated inside tuple data at byte {pos}")
            length = <int32_t>_u32(p + pos + 1)
            pos += 5
            end = pos + length
            if length < 0 or end > size:
                raise _Error(
                    f"message {chr(p[0])!r}: column value of {length} bytes at byte "
                    f"{pos} runs past the end ({size} bytes)"
                )
            value = PyBytes_FromStringAndSize(<const char*>p + pos, length)
            if kind == V_BINARY:
                value = _Binary(value)
            pos = end
        elif kind == V_NULL:
            value = None
            pos += 1
        elif kind == V_UNCHANGED:
            value = _UNCHANGED
            pos += 1
        else:
            raise _Error(
                f"message {chr(p[0])!r}: unknown tuple value kind {kind!r} at byte {pos}"
            )
        Py_INCREF(value)
        PyTuple_SET_ITEM(row, i, value)
    end_out[0] = pos
    return row


cdef inline object _trailing(const unsigned char* p, Py_ssize_t pos, Py_ssize_t size):
    return _Error(
        f"message {chr(p[0])!r} has {size - pos} unread trailing bytes "
        f"(decoded {pos} of {size})"
    )


def decode_new_row(data):
    """(relation id, new row) of an Insert or of an Update without old tuple; else None."""
    if type(data) is not bytes:
        return _pure.decode_new_row(data)
    cdef bytes buf = <bytes>data
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(buf)
    cdef Py_ssize_t size = PyBytes_GET_SIZE(buf)
    cdef Py_ssize_t end = 0
    if size < 6 or p[5] != K_NEW or (p[0] != K_INSERT and p[0] != K_UPDATE):
        return None
    row = _row(buf, 6, &end)
    if end != size:
        raise _trailing(p, end, size)
    return (_u32(p + 1), row)


def decode(data):
    """Decode one whole pgoutput message (see ``pgoutput.decode``)."""
    if type(data) is not bytes:
        return _pure_decode(data)
    cdef bytes buf = <bytes>data
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(buf)
    cdef Py_ssize_t size = PyBytes_GET_SIZE(buf)
    cdef Py_ssize_t end = 0
    cdef unsigned char kind
    cdef unsigned char marker
    if size > 5:
        kind = p[0]
        marker = p[5]
        if ((kind == K_INSERT or kind == K_UPDATE) and marker == K_NEW) or (
            kind == K_DELETE and (marker == K_KEY or marker == K_OLD)
        ):
            row = _row(buf, 6, &end)
            if end != size:
                raise _trailing(p, end, size)
            if kind == K_INSERT:
                return _Insert(_u32(p + 1), row)
            if kind == K_UPDATE:
                return _Update(_u32(p + 1), None, None, row)
            return _Delete(_u32(p + 1), chr(marker), row)
    return _pure_decode(data)


def begin_final_lsn(data):
    """Only the commit LSN of a Begin message (see ``pgoutput.begin_final_lsn``)."""
    if type(data) is not bytes:
        return _pure.begin_final_lsn(data)
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(<bytes>data)
    if PyBytes_GET_SIZE(<bytes>data) != BEGIN_SIZE or p[0] != K_BEGIN:
        return _pure_decode(data).final_lsn
    return _u64(p + 1)


def commit_end_lsn(data):
    """Only the end LSN of a Commit message (see ``pgoutput.commit_end_lsn``)."""
    if type(data) is not bytes:
        return _pure.commit_end_lsn(data)
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(<bytes>data)
    if PyBytes_GET_SIZE(<bytes>data) != COMMIT_SIZE or p[0] != K_COMMIT:
        return _pure_decode(data).end_lsn
    return _u64(p + 10)

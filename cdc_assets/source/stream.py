"""Stream a slot's changes over the replication protocol, never confirming a position.

Why this reader (and not ``pg_logical_slot_peek_binary_changes``, kept in ``changes.py``): measured
by ``bench/cdc.py`` on this machine, reading and decoding 600,000 messages took 2.7 s streamed vs
4.2 s peeked (10.6 s vs 16.2 s under heavy load): the walsender decodes while we decode, where peek
first materialises the whole result on the server. Reading is the largest cost of a batch of many
small transactions, so the faster reader wins; the safety properties are the same:

* the slot moves only through ``pg_replication_slot_advance`` after the target commit: the status
  updates we must send (keepalive replies) carry an invalid flush position (0/0), which the
  walsender ignores;
* a batch is finite: it stops before the first transaction that commits at or after ``upto``
  (the source's flushed position when the batch began), or when a keepalive shows the walsender
  has decoded past ``upto`` outside any transaction;
* memory is bounded: the server spills big transactions to disk and TCP back-pressure holds the
  rest until we read it.

psycopg 3 has no replication API, but a ``replication=database`` connection speaks the protocol
through libpq's COPY BOTH calls (``PGconn.get_copy_data``/``put_copy_data``), so no second driver.
"""

import os
import select
import socket
import struct
import time
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg import pq, sql

from cdc_assets.decoding.pgoutput import BEGIN, COMMIT, begin_final_lsn
from cdc_assets.domain import Lsn
from cdc_assets.errors import SourceError
from cdc_assets.pg.connect import connect, first_line
from cdc_assets.secrets import scrub

_XLOGDATA = ord("w")
_KEEPALIVE = ord("k")
_XLOG_HEADER = 1 + 8 + 8 + 8
_KEEPALIVE_MSG = struct.Struct("!QQB")
_STATUS = struct.Struct("!cQQQqB")
_BEGIN_COMMIT_TS = struct.Struct("!q")  # after the tag byte and the final LSN
PG_EPOCH_US = 946_684_800_000_000
POLL_S = 0.5
DECODING_WORK_MEM = "256MB"
"""``logical_decoding_work_mem`` of our walsender only (default 64MB). Protocol 1 cannot stream a
transaction before its commit, so a bigger one is spilled to disk and read back; measured on a
500,000-row UPDATE: 7.8 s to read at 64MB, 4.7 s with room in memory. The cost is server memory
during a batch, bounded by this value."""
END_TIMEOUT_S = 10.0
RCVLOWAT = 1 << 16
"""``SO_RCVLOWAT`` of the replication socket while streaming: ``select`` wakes the reader once this
many bytes wait (or after :data:`LOWAT_WAIT_S`), not per small message the walsender sends."""
LOWAT_WAIT_S = 0.005
LOWAT = True  # False: wake per message, as before (the baseline of the measurement)


def _set_rcvlowat(fd: int, nbytes: int) -> bool:
    """Set ``SO_RCVLOWAT`` on the connection's socket (a dup shares it); False if refused."""
    try:
        sock = socket.socket(fileno=os.dup(fd))
    except OSError:
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, nbytes)
        return True
    except OSError:
        return False
    finally:
        sock.close()


class ChangeStream:
    """One START_REPLICATION session of a batch; iterate for raw pgoutput messages, then close.

    ``limited`` tells afterwards whether it stopped at ``max_changes`` (then the batch may only
    claim up to its last commit) rather than at ``upto``.
    """

    def __init__(
        self,
        source_url: str,
        *,
        pipeline: str,
        slot: str,
        publication: str,
        upto: Lsn,
        max_changes: int | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.slot = slot
        self.upto = int(upto)
        self.max_changes = max_changes
        self.limited = False
        self.next_commit_us: int | None = None
        """Commit time (microseconds since 2000-01-01, the protocol's clock) of the first
        transaction the stream stopped before, or None when it stopped with nothing left
        decoded: the oldest change not applied, so the batch's ``lag_seconds`` is exact."""
        self._lowat = False
        self.messages = 0
        self._conn: psycopg.Connection[Any] | None = connect(
            source_url,
            pipeline=pipeline,
            role="source",
            autocommit=True,
            replication="database",
        )
        cmd = sql.SQL(
            "START_REPLICATION SLOT {} LOGICAL 0/0 (proto_version '1', publication_names {},"
            " messages 'false')"
        ).format(sql.Identifier(slot), sql.Literal(publication))
        pgconn = self._conn.pgconn
        setting = sql.SQL("SET logical_decoding_work_mem = {}").format(
            sql.Literal(DECODING_WORK_MEM)
        )
        pgconn.exec_(setting.as_bytes(self._conn))  # best effort: a failure keeps the default
        res = pgconn.exec_(cmd.as_bytes(self._conn))
        if res.status != pq.ExecStatus.COPY_BOTH:
            message = first_line(scrub(res.error_message.decode(errors="replace")))
            self.close()
            fix = (
                "another process reads this slot; wait for it or stop it"
                if "is active for PID" in message
                else "check the slot and publication on the source"
            )
            raise SourceError(
                f"cannot stream slot {slot}: {message}",
                pipeline=pipeline,
                fix=fix,
                transient="is active for PID" in message,
            )
        self._lowat = LOWAT and _set_rcvlowat(pgconn.socket, RCVLOWAT)

    def __iter__(self) -> Iterator[bytes]:
        conn = self._conn
        assert conn is not None
        pgconn = conn.pgconn
        in_txn = False
        asked = False
        wait = LOWAT_WAIT_S if self._lowat else POLL_S
        while True:
            nbytes, view = pgconn.get_copy_data(1)
            if nbytes == 0:
                if not asked:
                    self._status(reply=True)  # "where are you?": answered by a keepalive
                    asked = True
                select.select([pgconn.socket], [], [], wait)
                pgconn.consume_input()
                continue
            if nbytes < 0:
                message = first_line(scrub(pgconn.error_message.decode(errors="replace")))
                raise SourceError(
                    f"the replication stream of slot {self.slot} ended: {message}",
                    pipeline=self.pipeline,
                    fix="rerun the batch; nothing was applied",
                    transient=True,
                )
            kind = view[0]
            if kind == _XLOGDATA:
                payload = bytes(view[_XLOG_HEADER:])  # the one copy per message
                first = payload[0]
                if first == BEGIN:
                    if begin_final_lsn(payload) >= self.upto:
                        self.next_commit_us = _BEGIN_COMMIT_TS.unpack_from(payload, 9)[0]
                        return
                    if self.max_changes is not None and self.messages >= self.max_changes:
                        self.limited = True
                        self.next_commit_us = _BEGIN_COMMIT_TS.unpack_from(payload, 9)[0]
                        return
                    in_txn = True
                elif first == COMMIT:
                    in_txn = False
                self.messages += 1
                yield payload
            elif kind == _KEEPALIVE:
                wal_end, _clock, reply = _KEEPALIVE_MSG.unpack_from(view, 1)
                asked = False
                if wal_end >= self.upto and not in_txn:
                    return
                if reply:
                    self._status(reply=False)

    def _status(self, *, reply: bool) -> None:
        """Standby status update with 0/0 positions: keeps the session alive, confirms nothing."""
        assert self._conn is not None
        now = int(time.time() * 1_000_000) - PG_EPOCH_US
        self._conn.pgconn.put_copy_data(_STATUS.pack(b"r", 0, 0, 0, now, 1 if reply else 0))
        self._conn.pgconn.flush()

    def close(self) -> None:
        """End the session (CopyDone), so the slot is free for ``pg_replication_slot_advance``."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            pgconn = conn.pgconn
            if self._lowat:  # the ending exchange is a few small messages: wake per byte again
                self._lowat = not _set_rcvlowat(pgconn.socket, 1)
            if pgconn.status == pq.ConnStatus.OK:
                pgconn.put_copy_end()
                pgconn.flush()
                deadline = time.monotonic() + END_TIMEOUT_S
                while time.monotonic() < deadline:
                    nbytes, _ = pgconn.get_copy_data(1)
                    if nbytes == 0:
                        select.select([pgconn.socket], [], [], POLL_S)
                        pgconn.consume_input()
                    elif nbytes < 0:
                        break
        except psycopg.Error:
            pass  # closing below is all that is left to do
        finally:
            conn.close()

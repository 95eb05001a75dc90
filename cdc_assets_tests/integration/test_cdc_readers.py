"""The streaming reader yields exactly what ``pg_logical_slot_peek_binary_changes`` yields, stops
at the batch's end point, honours the change limit, and never moves the slot."""

import psycopg
import pytest

from cdc_assets.domain import Lsn
from cdc_assets.source.changes import current_flush_lsn, read_changes
from cdc_assets.source.stream import ChangeStream
from cdc_assets_tests.integration.cdc_support import execute, loaded_pipeline

pytestmark = pytest.mark.integration

DDL = [
    "CREATE TABLE public.items (id int PRIMARY KEY, name text)",
    "CREATE TABLE public.other (id int PRIMARY KEY)",
]


def peek(p, upto: Lsn) -> list[bytes]:
    with psycopg.connect(p.source) as conn, conn.transaction():
        return list(read_changes(conn, p.spec.slot_name, p.spec.publication_name, upto=upto))


def stream(p, upto: Lsn, max_changes: int | None = None) -> tuple[list[bytes], bool]:
    s = ChangeStream(
        p.source,
        pipeline="p",
        slot=p.spec.slot_name,
        publication=p.spec.publication_name,
        upto=upto,
        max_changes=max_changes,
    )
    try:
        return list(s), s.limited
    finally:
        s.close()


def flush_lsn(url: str) -> Lsn:
    with psycopg.connect(url, autocommit=True) as conn:
        return current_flush_lsn(conn)


def test_stream_equals_peek_and_stops_at_upto(new_db) -> None:
    p = loaded_pipeline(new_db, DDL, ["public.items"])
    slot_before = p.slot_confirmed()
    execute(
        p.source,
        "INSERT INTO public.items SELECT g, 'x' FROM generate_series(1, 1000) g",
        "INSERT INTO public.other SELECT g FROM generate_series(1, 1000) g",
        *[f"UPDATE public.items SET name = 'v{i}' WHERE id = {i}" for i in range(1, 30)],
    )
    upto = flush_lsn(p.source)
    execute(p.source, "DELETE FROM public.items WHERE id = 1")  # after the end point
    peeked = peek(p, upto)
    streamed, limited = stream(p, upto)
    assert not limited
    assert streamed == peeked
    assert len(streamed) == 1 + 1000 + 2 + 29 * 3  # Relation inside the first transaction
    assert p.slot_confirmed() == slot_before  # reading never confirms anything

    everything, _ = stream(p, flush_lsn(p.source))
    assert len(everything) == len(streamed) + 3


def test_stream_with_nothing_to_read_and_with_a_limit(new_db) -> None:
    p = loaded_pipeline(new_db, DDL, ["public.items"])
    assert stream(p, flush_lsn(p.source)) == ([], False)
    execute(p.source, *[f"INSERT INTO public.items VALUES ({i}, 'a')" for i in range(10)])
    limited_msgs, limited = stream(p, flush_lsn(p.source), max_changes=7)
    assert limited
    assert len(limited_msgs) == 4 + 3  # B R I C, B I C: stops at the next Begin
    assert limited_msgs[-1][:1] == b"C"


def test_stream_wakes_per_64k_not_per_message_and_resets_before_copy_done(new_db) -> None:
    import os
    import socket

    from cdc_assets.source import stream as stream_mod

    p = loaded_pipeline(new_db, DDL, ["public.items"])
    execute(p.source, "INSERT INTO public.items SELECT g, 'x' FROM generate_series(1, 3000) g")
    s = ChangeStream(
        p.source,
        pipeline="p",
        slot=p.spec.slot_name,
        publication=p.spec.publication_name,
        upto=flush_lsn(p.source),
    )
    assert s._conn is not None
    sock = socket.socket(fileno=os.dup(s._conn.pgconn.socket))  # outlives the connection
    try:
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT) == stream_mod.RCVLOWAT
        assert len(list(s)) == 3000 + 3  # small messages still all arrive (the short wait)
        s.close()
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT) == 1
    finally:
        sock.close()
        s.close()

"""The pgoutput decoder on golden bytes captured from a real PostgreSQL (see golden/capture.py)."""

import contextlib
import json
import struct
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdc_assets.decoding.codec import Codec
from cdc_assets.decoding.messages import (
    UNCHANGED_TOAST,
    Begin,
    BinaryValue,
    Commit,
    Delete,
    Insert,
    LogicalMessage,
    Origin,
    Relation,
    Truncate,
    Type,
    Update,
)
from cdc_assets.decoding.pgoutput import DecodeError, decode, pg_timestamp
from cdc_assets_tests.unit import decoders

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module", params=decoders.IDS, autouse=True)
def implementation(request: pytest.FixtureRequest) -> Iterator[Codec]:
    """Every test here runs against the pure-Python reference and against the compiled twin."""
    with decoders.bound(globals(), request.param) as impl:
        yield impl


GOLDEN = Path(__file__).parent / "golden"


def raw_messages(name: str) -> list[bytes]:
    data = (GOLDEN / f"{name}.bin").read_bytes()
    out, i = [], 0
    while i < len(data):
        (n,) = struct.unpack_from("!I", data, i)
        out.append(data[i + 4 : i + 4 + n])
        i += 4 + n
    meta = json.loads((GOLDEN / f"{name}.json").read_text())
    assert [len(m) for m in out] == [m["size"] for m in meta["messages"]]
    return out


def messages(name: str) -> list[object]:
    return [decode(m) for m in raw_messages(name)]


def of(kind: type, msgs: list[object]) -> list:
    return [m for m in msgs if isinstance(m, kind)]


ALL = ["basic", "toast", "identity_full", "truncate", "message_type_origin", "binary", "add_column"]


@pytest.mark.parametrize("name", ALL)
def test_every_golden_message_decodes_and_transactions_are_well_formed(name: str) -> None:
    msgs = messages(name)
    meta = json.loads((GOLDEN / f"{name}.json").read_text())
    letters = {LogicalMessage: "M", Type: "Y"}
    assert [letters.get(type(m), type(m).__name__[0]) for m in msgs] == [
        m["type"] for m in meta["messages"]
    ]
    begin = None
    for m in msgs:
        if isinstance(m, Begin):
            assert begin is None
            begin = m
        elif isinstance(m, Commit):
            assert begin is not None
            assert m.commit_lsn == begin.final_lsn
            assert m.end_lsn > m.commit_lsn
            assert m.commit_ts == begin.commit_ts
            begin = None
    assert begin is None


def test_basic_inserts_nulls_escapes_update_and_delete_by_key() -> None:
    msgs = messages("basic")
    (rel,) = of(Relation, msgs)
    assert (rel.namespace, rel.name, rel.replica_identity) == ("public", "items", "d")
    assert [c.name for c in rel.columns] == ["id", "name", "price", "seen", "payload", "flag"]
    assert rel.key_columns == ("id",)
    assert [c.type_oid for c in rel.columns] == [23, 25, 1700, 1184, 17, 16]
    assert rel.columns[2].type_modifier == (10 << 16 | 2) + 4  # numeric(10,2)
    ins = of(Insert, msgs)
    assert ins[0].new == (b"1", b"one", b"1.50", b"2024-01-02 03:04:05+00", b"\\x00ff", b"t")
    assert ins[1].new == (b"2", None, None, None, None, None)
    assert ins[2].new[1] == "tab\there\nnew 'q' \\ é".encode()
    assert ins[2].new[4] == b"\\x"
    (upd,) = of(Update, msgs)
    assert upd.old_kind is None and upd.old is None
    assert upd.new == (b"2", b"two", b"2.00", None, None, None)
    (dele,) = of(Delete, msgs)
    assert dele.old_kind == "K"
    assert dele.old == (b"1", None, None, None, None, None)
    assert all(m.relation_id == rel.relation_id for m in [*ins, upd, dele])


def test_unchanged_toast_marker_then_real_value() -> None:
    msgs = messages("toast")
    ins, upd1, upd2 = of(Insert, msgs) + of(Update, msgs)
    assert isinstance(ins.new[1], bytes) and len(ins.new[1]) == 200 * 32
    assert upd1.new == (b"1", UNCHANGED_TOAST, b"1")
    assert upd1.new[1] is UNCHANGED_TOAST
    assert upd2.new == (b"1", b"short", b"1")


def test_replica_identity_full_old_tuples_and_key_change() -> None:
    msgs = messages("identity_full")
    nokey, keyed = of(Relation, msgs)
    assert nokey.replica_identity == "f"
    assert nokey.key_columns == ("a", "b")
    upd_full, upd_key = of(Update, msgs)
    assert (upd_full.old_kind, upd_full.old, upd_full.new) == ("O", (b"1", b"x"), (b"1", b"y"))
    assert (upd_key.old_kind, upd_key.old, upd_key.new) == ("K", (b"1", None), (b"10", b"a"))
    del_full, del_key = of(Delete, msgs)
    assert (del_full.old_kind, del_full.old) == ("O", (b"2", None))
    assert (del_key.relation_id, del_key.old_kind, del_key.old) == (
        keyed.relation_id,
        "K",
        (b"10", None),
    )


def test_truncate_of_several_tables_with_options() -> None:
    msgs = messages("truncate")
    t_both, t_one = of(Truncate, msgs)
    rels = {r.name: r.relation_id for r in of(Relation, msgs)}
    assert t_both.relation_ids == (rels["t1"], rels["t2"])
    assert t_both.restart_identity and not t_both.cascade
    assert t_one.relation_ids == (rels["t2"],)
    assert t_one.options == 0


def test_logical_messages_type_and_origin() -> None:
    msgs = messages("message_type_origin")
    tx, nontx = of(LogicalMessage, msgs)
    assert (tx.transactional, tx.prefix, tx.content) == (True, "cdc_test", b"hello transactional")
    assert (nontx.transactional, nontx.content) == (False, b"\x00\x01\x02\x03")
    assert msgs.index(nontx) == 3  # outside any Begin/Commit
    (typ,) = of(Type, msgs)
    assert (typ.namespace, typ.name) == ("public", "mood")
    (rel,) = of(Relation, msgs)
    assert rel.columns[1].type_oid == typ.type_oid
    (origin,) = of(Origin, msgs)
    assert origin.name == "golden_origin"
    assert origin.origin_lsn == 0x12345678


def test_binary_values() -> None:
    first, second = of(Insert, messages("binary"))
    assert first.new == (
        BinaryValue(struct.pack("!i", 1)),
        BinaryValue(struct.pack("!q", 42)),
        BinaryValue(b"txt"),
    )
    assert second.new == (BinaryValue(struct.pack("!i", 2)), None, None)


def test_added_column_shows_as_a_new_relation_message() -> None:
    msgs = messages("add_column")
    before, after = of(Relation, msgs)
    assert before.relation_id == after.relation_id
    assert [c.name for c in after.columns] == ["id", "a", "b"]
    assert of(Insert, msgs)[1].new == (b"2", b"b", b"7")


def test_timestamps_are_aware_utc() -> None:
    assert pg_timestamp(0) == datetime(2000, 1, 1, tzinfo=UTC)
    begin = of(Begin, messages("basic"))[0]
    assert begin.commit_ts.tzinfo is UTC and begin.commit_ts.year >= 2024


@pytest.mark.parametrize("name", ALL)
def test_every_truncated_prefix_and_any_trailing_byte_is_a_decode_error(name: str) -> None:
    for raw in raw_messages(name):
        for cut in range(len(raw)):
            with pytest.raises(DecodeError):
                decode(raw[:cut])
        with pytest.raises(DecodeError, match="trailing"):
            decode(raw + b"\x00")


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "empty"),
        (b"Z\x00", "unknown pgoutput message type"),
        (b"S\x00\x00\x00\x01\x01", "protocol >= 2"),
        (b"I\x00\x00\x00\x01X\x00\x00", "expected one of 'N'"),
        (b"I\x00\x00\x00\x01N\x00\x01q", "unknown tuple value kind"),
        (b"I\x00\x00\x00\x01N\x00\x01t\xff\xff\xff\xff", "runs past the end"),
        (b"I\x00\x00\x00\x01N\xff\xff", "negative column count"),
        (b"R\x00\x00\x00\x01public\x00t\x00z\x00\x00", "replica identity"),
    ],
)
def test_malformed_inputs_name_the_problem(data: bytes, match: str) -> None:
    with pytest.raises(DecodeError, match=match):
        decode(data)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=64), st.sampled_from(list(b"BCORYIUDTMZ")))
def test_random_bytes_raise_only_decode_error(body: bytes, kind: int) -> None:
    with contextlib.suppress(DecodeError):
        decode(bytes([kind]) + body)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.one_of(st.none(), st.just(UNCHANGED_TOAST), st.binary(max_size=40)), max_size=20)
)
def test_insert_round_trips_any_tuple(values: list) -> None:
    body = bytearray(b"I" + struct.pack("!I", 7) + b"N" + struct.pack("!h", len(values)))
    for v in values:
        if v is None:
            body += b"n"
        elif v is UNCHANGED_TOAST:
            body += b"u"
        else:
            body += b"t" + struct.pack("!i", len(v)) + v
    assert decode(bytes(body)) == Insert(relation_id=7, new=tuple(values))

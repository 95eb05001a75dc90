"""pgoutput values to COPY text lines, and the fast Begin/Commit readers, without a database."""

from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdc_assets.decoding.codec import Codec
from cdc_assets.decoding.messages import UNCHANGED_TOAST, Begin, Commit
from cdc_assets.decoding.pgoutput import (
    DecodeError,
    begin_final_lsn,
    commit_end_lsn,
    decode,
    decode_new_row,
)
from cdc_assets.source.changes import _single_array_element
from cdc_assets.target.copytext import NULL, escape, field, line, row_line
from cdc_assets_tests.unit import decoders
from cdc_assets_tests.unit.test_pgoutput import raw_messages

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module", params=decoders.IDS, autouse=True)
def implementation(request: pytest.FixtureRequest) -> Iterator[Codec]:
    """The fast readers here run against the pure-Python reference and the compiled twin."""
    with decoders.bound(globals(), request.param) as impl:
        yield impl


def unescape_copy_line(text: bytes) -> list[bytes | None]:
    """COPY text format parser (the subset we emit) to check round trips."""
    out: list[bytes | None] = []
    for raw in text.rstrip(b"\n").split(b"\t"):
        if raw == NULL:
            out.append(None)
            continue
        buf, i = bytearray(), 0
        while i < len(raw):
            if raw[i : i + 1] == b"\\":
                nxt = raw[i + 1 : i + 2]
                buf += {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"\\": b"\\"}[nxt]
                i += 2
            else:
                buf += raw[i : i + 1]
                i += 1
        out.append(bytes(buf))
    return out


def test_escape_special_bytes() -> None:
    assert escape(b"plain") == b"plain"
    assert escape(b"a\tb\nc\rd\\e") == b"a\\tb\\nc\\rd\\\\e"
    assert field(None) == NULL and field(UNCHANGED_TOAST) == NULL
    assert line([b"1", NULL]) == b"1\t\\N\n"


@given(st.lists(st.one_of(st.none(), st.binary(max_size=30)), min_size=1, max_size=8))
def test_row_line_round_trips(values: list[bytes | None]) -> None:
    encoded = row_line(b"1\t", tuple(values))
    assert encoded.endswith(b"\n") and encoded.count(b"\n") == 1
    decoded = unescape_copy_line(encoded)
    assert decoded[0] == b"1"
    # a literal "\N" value would be escaped to "\\N", so only real NULLs read back as None
    assert decoded[1:] == values


def test_row_line_fast_and_slow_paths_agree() -> None:
    row = (b"1", b"tab\there", None, b"x")
    assert row_line(b"", row) == line(map(field, row))
    assert row_line(b"", (b"1", b"2")) == b"1\t2\n"


def test_fast_begin_and_commit_readers_match_decode() -> None:
    seen = 0
    for raw in raw_messages("basic"):
        msg = decode(raw)
        if isinstance(msg, Begin):
            assert begin_final_lsn(raw) == msg.final_lsn
            seen += 1
        elif isinstance(msg, Commit):
            assert commit_end_lsn(raw) == msg.end_lsn
            seen += 1
    assert seen == 10
    with pytest.raises(DecodeError):
        begin_final_lsn(b"B\x00")
    with pytest.raises(DecodeError):
        commit_end_lsn(b"C" + b"\x00" * 30)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("{1.5}", "1.5"),
        ("{NULL}", None),
        ('{"a b"}', "a b"),
        ('{"say \\"hi\\" \\\\ ok"}', 'say "hi" \\ ok'),
        ('{"NULL"}', "NULL"),
    ],
)
def test_missing_value_array_element(text: str, value: str | None) -> None:
    assert _single_array_element(text) == value


@pytest.mark.parametrize("name", ["basic", "toast", "identity_full", "add_column"])
def test_decode_new_row_agrees_with_decode(name: str) -> None:
    from cdc_assets.decoding.messages import Insert, Update

    fast_seen = 0
    for raw in raw_messages(name):
        msg = decode(raw)
        fast = decode_new_row(raw)
        if isinstance(msg, Insert) or (isinstance(msg, Update) and msg.old is None):
            assert fast == (msg.relation_id, msg.new)
            fast_seen += 1
            with pytest.raises(DecodeError, match="trailing"):
                decode_new_row(raw + b"\x00")
        else:
            assert fast is None  # Begin, Relation, Delete, Update with old tuple: the full path
    assert fast_seen > 0

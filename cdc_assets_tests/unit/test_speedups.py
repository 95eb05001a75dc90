"""The compiled pgoutput decoder: built where required, chosen when asked, same as the reference."""

import os
import struct
import sys
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdc_assets.decoding import codec, pgoutput
from cdc_assets.decoding.messages import UNCHANGED_TOAST, BinaryValue

pytestmark = pytest.mark.unit


def test_compiled_decoder_is_built_when_required_and_chosen_by_default() -> None:
    fast = codec.compiled()
    if os.environ.get(codec.REQUIRE_ENV) == "1":  # make test: a silent fallback must fail here
        assert fast is not None, "the compiled decoder was not built (see setup.py's warning)"
    if fast is None:
        assert codec.load({}) is codec.PURE
        return
    assert fast.compiled
    assert (
        fast.decode is not pgoutput.decode
        and type(fast.decode).__name__ == "cython_function_or_method"
    )
    chosen = codec.load({})
    assert chosen.compiled and chosen.decode_new_row is fast.decode_new_row
    assert codec.load({codec.PURE_ENV: "1"}) is codec.PURE
    assert codec.load({codec.PURE_ENV: "1", codec.REQUIRE_ENV: "1"}) is codec.PURE


def test_missing_extension_falls_back_unless_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cdc_assets.decoding._speedups", None)  # import fails
    assert codec.compiled() is None
    assert codec.load({}) is codec.PURE
    with pytest.raises(ImportError, match=codec.REQUIRE_ENV):
        codec.load({codec.REQUIRE_ENV: "1"})


_value = st.one_of(
    st.none(),
    st.just(UNCHANGED_TOAST),
    st.binary(max_size=12),
    st.binary(max_size=12).map(BinaryValue),
)


def _tuple(values: list[Any]) -> bytes:
    out = bytearray(struct.pack("!h", len(values)))
    for v in values:
        if v is None:
            out += b"n"
        elif v is UNCHANGED_TOAST:
            out += b"u"
        elif isinstance(v, BinaryValue):
            out += b"b" + struct.pack("!i", len(v.data)) + v.data
        else:
            out += b"t" + struct.pack("!i", len(v)) + v
    return bytes(out)


@st.composite
def frames(draw: st.DrawFn) -> bytes:
    """A valid Insert, Update (with and without old tuple), Delete, Begin or Commit frame."""
    relid = struct.pack("!I", draw(st.integers(0, 2**32 - 1)))
    new = _tuple(draw(st.lists(_value, max_size=6)))
    kind = draw(st.sampled_from("IUuDBC"))
    if kind == "I":
        return b"I" + relid + b"N" + new
    if kind == "U":
        return b"U" + relid + b"N" + new
    if kind == "u":
        old = _tuple(draw(st.lists(_value, max_size=6)))
        return b"U" + relid + draw(st.sampled_from([b"K", b"O"])) + old + b"N" + new
    if kind == "D":
        return b"D" + relid + draw(st.sampled_from([b"K", b"O"])) + new
    u64 = st.integers(0, 2**64 - 1)
    if kind == "B":
        return b"B" + struct.pack("!QqI", draw(u64), draw(st.integers(-(2**63), 2**63 - 1)), 7)
    return b"C" + struct.pack("!BQQq", 0, draw(u64), draw(u64), 0)


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    """A valid frame as is, cut short, with bytes appended, or with one byte overwritten."""
    data = draw(frames())
    how = draw(st.sampled_from(["as is", "cut", "append", "flip"]))
    if how == "cut":
        return data[: draw(st.integers(0, len(data)))]
    if how == "append":
        return data + draw(st.binary(min_size=1, max_size=4))
    if how == "flip":
        i = draw(st.integers(0, len(data) - 1))
        return data[:i] + bytes([draw(st.integers(0, 255))]) + data[i + 1 :]
    return data


def _outcome(fn: Callable[[bytes], object], data: bytes) -> tuple[str, object]:
    try:
        return "ok", fn(data)
    except Exception as exc:  # the same exception type and text is part of equivalence
        return type(exc).__name__, str(exc)


@settings(max_examples=1500, deadline=None)
@given(damaged())
def test_compiled_and_reference_agree_on_any_frame(data: bytes) -> None:
    fast = codec.compiled() or codec.PURE
    for name in ("decode", "decode_new_row", "begin_final_lsn", "commit_end_lsn"):
        want = _outcome(getattr(codec.PURE, name), data)
        got = _outcome(getattr(fast, name), data)
        assert got == want, (name, data)
        if want[0] == "ok" and name == "decode":
            row = getattr(want[1], "new", None) or ()
            assert all(  # the marker stays the one singleton the apply path compares by identity
                (a is UNCHANGED_TOAST) == (b is UNCHANGED_TOAST)
                for a, b in zip(row, getattr(got[1], "new", None) or (), strict=True)
            )

"""Micro-benchmark: pgoutput decoding per message, pure-Python reference vs compiled twin.

    .venv/bin/python bench/decode.py              # 200,000 small transactions, best of 5

Two workloads, no database: (1) the CDC read loop's per-message work on a synthetic stream shaped
like bench/cdc.py's small transactions (Begin, one pgbench_accounts-like Update without old tuple,
Commit: dispatch on the first byte, ``begin_final_lsn``, ``decode_new_row``, ``commit_end_lsn``);
(2) ``decode`` of every golden frame (cdc_assets_tests/unit/golden), repeated. Prints ns per
message for each implementation and the ratio; exits non-zero when the extension is not built.
"""

import argparse
import platform
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cdc_assets.decoding import codec  # noqa: E402
from cdc_assets.decoding.codec import Codec  # noqa: E402
from cdc_assets.decoding.pgoutput import BEGIN, COMMIT  # noqa: E402


def small_transactions(n: int) -> list[bytes]:
    out: list[bytes] = []
    for i in range(n):
        lsn = 0x1000000 + i * 200
        out.append(b"B" + struct.pack("!QqI", lsn + 150, 789_000_000_000 + i, 1000 + i))
        vals = [str(i % 500_000 + 1).encode(), b"1", str(i * 7 % 5000 - 2500).encode(), b" " * 84]
        body = bytearray(b"U" + struct.pack("!I", 16384) + b"N" + struct.pack("!h", len(vals)))
        for v in vals:
            body += b"t" + struct.pack("!i", len(v)) + v
        out.append(bytes(body))
        out.append(b"C" + struct.pack("!BQQq", 0, lsn + 150, lsn + 200, 789_000_000_000 + i))
    return out


def golden() -> list[bytes]:
    out: list[bytes] = []
    for path in sorted((ROOT / "cdc_assets_tests" / "unit" / "golden").glob("*.bin")):
        data, i = path.read_bytes(), 0
        while i < len(data):
            (n,) = struct.unpack_from("!I", data, i)
            out.append(data[i + 4 : i + 4 + n])
            i += 4 + n
    return out


def read_loop(impl: Codec, frames: list[bytes]) -> float:
    """The engine's loop body (engine/cdc.py) minus the apply: what the decoder costs per batch."""
    begin_final_lsn, commit_end_lsn = impl.begin_final_lsn, impl.commit_end_lsn
    decode_new_row, decode = impl.decode_new_row, impl.decode
    watermark, skipping, last_end, rows = 0, False, 0, 0
    t = time.perf_counter()
    for data in frames:
        first = data[0]
        if first == BEGIN:
            skipping = begin_final_lsn(data) < watermark
            continue
        if first == COMMIT:
            last_end = commit_end_lsn(data)
            continue
        fast = decode_new_row(data)
        if fast is not None:
            rows += not skipping
            continue
        decode(data)
    assert last_end > 0 and rows > 0
    return time.perf_counter() - t


def decode_all(impl: Codec, frames: list[bytes]) -> float:
    decode = impl.decode
    t = time.perf_counter()
    for data in frames:
        decode(data)
    return time.perf_counter() - t


def best(
    fn: Callable[[Codec, list[bytes]], float], impl: Codec, frames: list[bytes], k: int
) -> float:
    return min(fn(impl, frames) for _ in range(k))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=200_000)
    parser.add_argument("--golden-repeat", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=5, help="best of this many, alternating")
    args = parser.parse_args()
    fast = codec.compiled()
    if fast is None:
        raise SystemExit("the compiled decoder is not built: pip install -e . with a C compiler")
    stream = small_transactions(args.small)
    frames = golden() * args.golden_repeat
    print(f"python {platform.python_version()}, {len(stream):,} stream / {len(frames):,} golden")
    for name, fn, data in (("read loop", read_loop, stream), ("decode golden", decode_all, frames)):
        pure_t = comp_t = float("inf")
        for _ in range(args.repeat):  # alternate, so load from other processes hits both alike
            pure_t = min(pure_t, fn(codec.PURE, data))
            comp_t = min(comp_t, fn(fast, data))
        per = 1e9 / len(data)
        print(
            f"{name:14s} pure {pure_t * per:7.0f} ns/msg   compiled {comp_t * per:7.0f} ns/msg   "
            f"compiled/pure {comp_t / pure_t:.2f}x"
        )


if __name__ == "__main__":
    main()

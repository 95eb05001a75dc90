"""Benchmark: the replication reader alone, ``SO_RCVLOWAT`` on against off, alternating.

    .venv/bin/python bench/stream_lowat.py                  # 40,000 single-row UPDATE txns, 9 each

One embedded PostgreSQL 18 (the settings of bench/cdc.py), a 100,000-row table, ``--small``
single-row UPDATE transactions by ``pgbench``, then ``ChangeStream`` reads + decodes the whole
backlog ``--rounds`` times per setting (``source.stream.LOWAT`` toggled; the slot never moves).
Prints the median wall and CPU seconds of each.
"""

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import cdc as b

from cdc_assets.decoding.pgoutput import decode
from cdc_assets.domain import Lsn
from cdc_assets.embedded import EmbeddedPostgres, free_port
from cdc_assets.source import stream as st


def read_all(src: str, end: Lsn) -> tuple[float, float, int]:
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t = time.perf_counter()
    s = st.ChangeStream(src, pipeline="bench", slot="s", publication="p", upto=end)
    n = 0
    try:
        for data in s:
            decode(data)
            n += 1
    finally:
        s.close()
    wall = time.perf_counter() - t
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    return wall, r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--small", type=int, default=40_000)
    ap.add_argument("--rounds", type=int, default=9)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="cdc_lowat_"))
    settings = (*b.SERVER_SETTINGS, ("wal_level", "logical"))
    srv = EmbeddedPostgres(root / "pg", free_port(), extra_settings=settings)
    try:
        admin = srv.start()
        b.run(admin, "CREATE DATABASE src")
        src = b.with_db(admin, "src")
        b.run(
            src,
            *b.DDL,
            "INSERT INTO public.acc SELECT g, g / 100000, 0, '' FROM generate_series(1, 100000) g",
            "CREATE PUBLICATION p FOR TABLE public.acc",
            "SELECT pg_create_logical_replication_slot('s', 'pgoutput')",
        )
        b.pgbench_small(src, srv.port, args.small, 100_000, 4)
        end = Lsn(str(b.q(src, "SELECT pg_current_wal_flush_lsn()::text")))
        wall: dict[bool, list[float]] = {True: [], False: []}
        cpu: dict[bool, list[float]] = {True: [], False: []}
        n = 0
        for i in range(args.rounds):
            for on in (False, True) if i % 2 == 0 else (True, False):
                st.LOWAT = on
                w, c, n = read_all(src, end)
                wall[on].append(w)
                cpu[on].append(c)
        for on in (False, True):
            print(
                f"SO_RCVLOWAT {'on ' if on else 'off'}: {n} messages,"
                f" wall median {statistics.median(wall[on]):.3f} s,"
                f" CPU median {statistics.median(cpu[on]):.3f} s"
            )
    finally:
        srv.stop()


if __name__ == "__main__":
    main()

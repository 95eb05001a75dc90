"""Probe: does the COPY pump let other Python threads run while it waits for the source?

    .venv/bin/python bench/copy_gil.py --url postgresql://postgres@127.0.0.1:5432/postgres

Runs ``target.copy.pump`` on a source that is the slower side (the server sleeps before each
20 kB row, so it is idle rather than competing for the cores), while a second thread counts
loop iterations.
Prints that thread's iterations per second during the pump and during a ``time.sleep`` of the
same length: the closer the two, the less the pump holds the GIL. The full load's copy workers
are threads of one process, so a pump that holds the GIL while it waits serializes them. Run it
once per code version (``PYTHONPATH=<checkout>``) to compare.
"""

import argparse
import statistics
import threading
import time
from collections.abc import Callable

import psycopg
from psycopg import sql

from cdc_assets.target.copy import pump

# Rows wider than the server's 8 kB send buffer go out one by one, as a slow source sends them.
SLOW_SOURCE = (
    "COPY (SELECT g, repeat('x', 20000) || pg_sleep({})::text FROM generate_series(1, {}) g)"
    " TO STDOUT"
)


def spin_rate(work: Callable[[], object]) -> tuple[float, float]:
    """Iterations per second of a pure-Python loop in another thread while ``work`` runs."""
    stop = threading.Event()
    count = [0]

    def spin() -> None:
        n = 0
        while not stop.is_set():
            n += 1
        count[0] = n

    thread = threading.Thread(target=spin)
    thread.start()
    start = time.perf_counter()
    work()
    seconds = time.perf_counter() - start
    stop.set()
    thread.join()
    return count[0] / seconds, seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--url", required=True, help="any database; a temp table is the sink")
    ap.add_argument("--rows", type=int, default=200)
    ap.add_argument("--sleep-per-row", type=float, default=0.01, help="source delay per row, s")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    copy_out = sql.SQL(SLOW_SOURCE).format(sql.Literal(args.sleep_per_row), sql.Literal(args.rows))
    pumped, slept = [], []
    with psycopg.connect(args.url) as source, psycopg.connect(args.url) as target:
        target.execute("CREATE TEMP TABLE sink (g int, pad text)")
        for run in range(args.runs):
            rate, seconds = spin_rate(
                lambda: pump(source, copy_out, target, sql.SQL("COPY sink FROM STDIN").format())
            )
            source.commit()
            target.execute("TRUNCATE sink")
            sleep_rate, _ = spin_rate(lambda s=seconds: time.sleep(s))
            pumped.append(rate)
            slept.append(sleep_rate)
            print(
                f"run {run + 1}: pump {seconds:.2f}s, other thread {rate / 1e6:.2f}M it/s"
                f" (during a sleep: {sleep_rate / 1e6:.2f}M it/s)",
                flush=True,
            )
    print(
        f"median: other thread {statistics.median(pumped) / 1e6:.2f}M it/s during the pump,"
        f" {statistics.median(slept) / 1e6:.2f}M it/s during a sleep"
        f" ({statistics.median(pumped) / statistics.median(slept):.0%})"
    )


if __name__ == "__main__":
    main()

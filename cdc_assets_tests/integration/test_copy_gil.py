"""The full load's COPY pump must not hold the GIL while it waits for the source (issue 11 #7).

The copy workers are threads of one process: a read that blocks inside a C call holding the GIL
freezes all of them, so parallel copies ran one at a time whenever the source was the slower side.
"""

import threading
import time

import psycopg
import pytest
from psycopg import sql

from cdc_assets.target.copy import pump

pytestmark = pytest.mark.integration

SLEEP_S = 0.8
# Rows wider than the server's 8 KiB send buffer, so each one is flushed on its own and the
# client waits for the next one while the server sleeps; a narrow row would be sent at the end.
SLOW_COPY = sql.SQL(
    "COPY (SELECT i, pg_sleep({})::text, repeat('x', 20000) FROM generate_series(1, 3) i) TO STDOUT"
).format(sql.Literal(SLEEP_S))


def test_pump_lets_other_threads_run_while_the_source_is_slow(new_db) -> None:
    url = new_db("gil")
    stop = threading.Event()
    longest: list[float] = []

    def spin() -> None:
        """Pure-Python work: its longest pause is how long it could not get the GIL."""
        last = time.perf_counter()
        gap = 0.0
        while not stop.is_set():
            now = time.perf_counter()
            gap = max(gap, now - last)
            last = now
        longest.append(gap)

    with psycopg.connect(url) as source, psycopg.connect(url) as target:
        target.execute("CREATE TEMP TABLE sink (i int, s text, pad text)")
        spinner = threading.Thread(target=spin)
        spinner.start()
        try:
            count = pump(source, SLOW_COPY, target, sql.SQL("COPY sink FROM STDIN").format())
        finally:
            stop.set()
            spinner.join(timeout=30)
        source.commit()
    assert count.rows_out == count.rows_in == 3
    # Holding the GIL through the wait stalls the spinner for a whole SLEEP_S; a wait on the
    # socket lets it run (measured: ~0.01 s). Half of SLEEP_S leaves room for a busy machine.
    assert longest[0] < SLEEP_S / 2, f"another thread was frozen for {longest[0]:.2f} s"

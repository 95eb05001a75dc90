"""A small, steady stream of source changes so the demo's CDC has something to show.

Runs as its own process (``python -m cdc_assets.demo.writer URL``) so Ctrl-C in the demo stops it
like everything else; each change is one short transaction, as an application would make.
"""

import random
import signal
import sys
import threading
from typing import Any

import psycopg

_stop = threading.Event()


def _on_signal(signum: int, frame: Any) -> None:
    _stop.set()


def change_once(conn: psycopg.Connection[Any], rng: random.Random) -> str:
    """Make one random change: a new order with items, a status update, or a deletion."""
    kind = rng.choices(["insert", "update", "delete"], weights=[5, 4, 1])[0]
    with conn.transaction():
        if kind == "insert":
            row = conn.execute(
                "INSERT INTO shop.orders (id, customer_id, status, ordered_at)"
                " SELECT coalesce(max(id), 0) + 1, %s, 'new', now() FROM shop.orders RETURNING id",
                (rng.randint(1, 50_000),),
            ).fetchone()
            assert row is not None
            conn.execute(
                "INSERT INTO shop.order_items (order_id, line, product_id, quantity)"
                " VALUES (%s, 1, %s, %s)",
                (row[0], rng.randint(1, 5_000), rng.randint(1, 5)),
            )
        elif kind == "update":
            conn.execute(
                "UPDATE shop.orders SET status = %s WHERE id = %s",
                (rng.choice(["paid", "shipped", "returned"]), rng.randint(1, 150_000)),
            )
        else:
            oid = rng.randint(1, 150_000)
            conn.execute("DELETE FROM shop.order_items WHERE order_id = %s", (oid,))
            conn.execute("DELETE FROM shop.orders WHERE id = %s", (oid,))
    return kind


def run(url: str, interval_s: float = 0.5) -> int:
    """Write changes until SIGINT/SIGTERM."""
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    rng = random.Random(42)
    with psycopg.connect(url, autocommit=True) as conn:
        while not _stop.wait(interval_s):
            try:
                change_once(conn, rng)
            except psycopg.errors.UniqueViolation:
                continue
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 0.5))

"""A small, steady source write workload that keeps running while a fault is injected.

Faults are only interesting under load: a change committed while the run worker dies, or while the
source connection is cut, is exactly the one a broken pipeline would lose or apply twice. The rate
is kept low (about ``rate`` transactions per second, a few rows each) so the suite fits two shared
cores; every transaction is recorded so a test can say how much was written during the fault.
"""

import random
import threading
import time
from typing import Any

import psycopg
from psycopg import sql


class SourceWorkload:
    """Inserts, updates and deletes on ``orders(id bigint pk, note text)`` in a thread.

    Connection errors (the fault may be a terminated backend or a lock) are retried after a short
    pause: the workload models an application that keeps writing through the incident.
    """

    def __init__(
        self, url: str, *, table: str = "orders", seed: int = 7, rate: float = 50.0
    ) -> None:
        self.url = url
        self.table = sql.Identifier("public", table)
        self.rng = random.Random(seed)
        self.interval = 1.0 / rate
        self.committed = 0
        self.retried = 0
        self.next_id = 10_000_000
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="source-workload", daemon=True)

    def __enter__(self) -> "SourceWorkload":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def stop(self) -> int:
        """Stop writing; re-raise a non-connection error of the writer; return commits."""
        self._stop.set()
        self._thread.join(timeout=60)
        assert not self._thread.is_alive(), "workload thread did not stop"
        if self._error is not None:
            raise self._error
        return self.committed

    def wait_commits(self, n: int, timeout: float = 30) -> None:
        """Block until at least ``n`` more transactions committed (the workload is flowing)."""
        goal = self.committed + n
        deadline = time.monotonic() + timeout
        while self.committed < goal:
            assert time.monotonic() < deadline, f"workload stuck at {self.committed} commits"
            assert self._error is None, f"workload failed: {self._error!r}"
            self._stop.wait(0.05)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    with psycopg.connect(
                        self.url, autocommit=True, application_name="fault_workload"
                    ) as conn:
                        while not self._stop.is_set():
                            with conn.transaction():
                                for _ in range(self.rng.choice((1, 1, 2, 5))):
                                    self._one(conn)
                            self.committed += 1
                            self._stop.wait(self.interval)
                except psycopg.OperationalError:
                    self.retried += 1
                    self._stop.wait(0.2)
        except BaseException as exc:  # surfaced by stop()
            self._error = exc

    def _one(self, conn: psycopg.Connection[Any]) -> None:
        r = self.rng.random()
        if r < 0.5:
            self.next_id += 1
            conn.execute(
                sql.SQL("INSERT INTO {} (id, note) VALUES (%s, %s)").format(self.table),
                (self.next_id, f"w{self.next_id}"),
            )
        elif r < 0.85:
            conn.execute(
                sql.SQL("UPDATE {} SET note = note || 'u' WHERE id = %s").format(self.table),
                (self.rng.randint(1, 400),),
            )
        else:
            conn.execute(
                sql.SQL("DELETE FROM {} WHERE id = %s").format(self.table),
                (self.rng.randint(1, 400),),
            )

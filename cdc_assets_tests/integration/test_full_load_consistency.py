"""Consistency under concurrent writes, atomic swap under readers, recovery after SIGKILL."""

import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
from typing import Any

import psycopg
import pytest
from psycopg import sql

import cdc_assets.engine.full_load_workers as workers_mod
from cdc_assets.domain import Mode, TableRef
from cdc_assets.engine.full_load import run_full_load
from cdc_assets_tests.integration.full_load_support import (
    SESSION,
    execute,
    rows_as_text,
    scalar,
    settings,
    spec,
    stage_tables,
)
from cdc_assets_tests.support import wait_until

pytestmark = pytest.mark.integration

ROWS = 60_000
_REFERENCE_LOCK = threading.Lock()


def _seed(url: str, rows: int = ROWS) -> None:
    execute(
        url,
        "CREATE TABLE acct (id int PRIMARY KEY, balance bigint NOT NULL, note text)",
        sql.SQL(
            "INSERT INTO acct SELECT g, 1000, md5(g::text) FROM generate_series(1, {}) g"
        ).format(sql.Literal(rows)),
        "CREATE TABLE moves (id bigserial PRIMARY KEY, src int, amount int)",
        "ANALYZE acct",
    )


class Writers:
    """Threads that transfer money between accounts and log each move, committing constantly."""

    def __init__(self, url: str, threads: int = 2) -> None:
        self.url = url
        self.stop = threading.Event()
        self.commits = 0
        self.errors: list[BaseException] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(threads)]

    def _run(self, seed: int) -> None:
        rnd = random.Random(seed)
        try:
            with psycopg.connect(self.url, autocommit=True) as conn:
                while not self.stop.is_set():
                    a, b = rnd.randint(1, ROWS), rnd.randint(1, ROWS)
                    with conn.transaction():
                        conn.execute("UPDATE acct SET balance = balance - 5 WHERE id = %s", (a,))
                        conn.execute("UPDATE acct SET balance = balance + 5 WHERE id = %s", (b,))
                        conn.execute("INSERT INTO moves (src, amount) VALUES (%s, 5)", (a,))
                    with self.lock:
                        self.commits += 1
        except BaseException as exc:
            self.errors.append(exc)

    def __enter__(self) -> "Writers":
        for t in self.threads:
            t.start()
        wait_until(lambda: self.commits >= 20, timeout=30, describe="writers to commit")
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)
        assert not self.errors, self.errors


@pytest.mark.parametrize("mode", [Mode.FULL_LOAD_AND_CDC, Mode.FULL_LOAD])
def test_target_equals_source_as_of_the_snapshot(new_db, monkeypatch, mode: Mode) -> None:
    src, dst = new_db("src"), new_db("dst")
    _seed(src)
    reference: dict[str, list[str]] = {}
    real_import = workers_mod.import_snapshot

    def import_and_read_reference(conn: psycopg.Connection[Any], snapshot: str) -> None:
        # The first worker to import also reads a reference copy in the very same snapshot.
        real_import(conn, snapshot)
        with _REFERENCE_LOCK:
            if reference:
                return
            reference["snapshot"] = [snapshot]
            with psycopg.connect(src, options=SESSION) as ref:
                real_import(ref, snapshot)
                for table in ("acct", "moves"):
                    q = sql.SQL("SELECT t::text FROM {} t").format(sql.Identifier(table))
                    reference[table] = sorted(r[0] for r in ref.execute(q).fetchall())

    monkeypatch.setattr(workers_mod, "import_snapshot", import_and_read_reference)
    with Writers(src) as writers:
        before = writers.commits
        result = run_full_load(
            spec("consist", src, dst, "acct", "moves", mode=mode),
            source_url=src,
            target_url=dst,
            settings=settings(split_rows_threshold=8_000, verify_checksums=True),
        )
        during = writers.commits - before
        wait_until(
            lambda: writers.commits > before + during + 5,
            timeout=30,
            describe="writes after the load",
        )
    assert during > 0, "writers made no change while the load ran"
    assert result.snapshot == reference["snapshot"][0]
    for table in ("acct", "moves"):
        copied = rows_as_text(dst, TableRef("public", table))
        assert copied == reference[table], f"{table} differs from the snapshot's copy"
        assert copied != rows_as_text(src, TableRef("public", table))  # the source moved on
    # Money is conserved inside one snapshot: a torn read across transactions would break it.
    assert scalar(dst, "SELECT sum(balance) FROM acct") == ROWS * 1000
    assert scalar(dst, "SELECT count(*) FROM moves") == len(reference["moves"])
    if mode is Mode.FULL_LOAD_AND_CDC:
        # Exactly the transactions the target lacks wait in the slot: none lost, none twice.
        assert result.consistent_lsn is not None
        missing = scalar(src, "SELECT count(*) FROM moves") - scalar(
            dst, "SELECT count(*) FROM moves"
        )
        pending = scalar(
            src,
            "SELECT count(*) FROM pg_logical_slot_peek_binary_changes('cdc_assets_consist', "
            "NULL, NULL, 'proto_version', '1', 'publication_names', 'cdc_assets_consist') "
            "WHERE substr(data, 1, 1) = 'C'",
        )
        assert missing > 0 and pending == missing


def test_reader_never_sees_a_partial_table_during_reload(new_db) -> None:
    src, dst = new_db("src"), new_db("dst")
    _seed(src, 30_000)
    p = spec("reload", src, dst, "acct", "moves")
    run_full_load(p, source_url=src, target_url=dst, settings=settings())
    execute(src, "INSERT INTO acct SELECT g, 1, 'new' FROM generate_series(30001, 50000) g")
    counts: list[int] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def read() -> None:
        try:
            with psycopg.connect(dst, autocommit=True) as conn:
                while not stop.is_set():
                    counts.append(conn.execute("SELECT count(*) FROM acct").fetchone()[0])
        except BaseException as exc:
            errors.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        wait_until(lambda: len(counts) >= 5, timeout=30, describe="reader to start")
        run_full_load(
            p, source_url=src, target_url=dst, settings=settings(split_rows_threshold=5_000)
        )
        seen = len(counts)
        wait_until(lambda: len(counts) > seen + 5, timeout=30, describe="reads after swap")
    finally:
        stop.set()
        reader.join(timeout=30)
    assert not errors, errors
    assert set(counts) == {30_000, 50_000}, sorted(set(counts))
    assert counts[-1] == 50_000
    assert counts.index(50_000) > 0


KILLED_LOAD = textwrap.dedent(
    """
    import sys, threading
    import cdc_assets.engine.full_load_workers as w
    from cdc_assets.domain import Mode, PipelineSpec, TableRef
    from cdc_assets.engine.full_load import run_full_load
    from cdc_assets.settings import Settings

    src, dst = sys.argv[1], sys.argv[2]
    real_pump = w.pump
    done = []
    say = threading.Lock()  # two workers may finish a range at once: one whole line each

    def pump_then_hang(*args, **kwargs):
        count = real_pump(*args, **kwargs)
        args[2].commit()  # this range is in the stage for good
        done.append(count)
        with say:
            print("COPIED", flush=True)
        threading.Event().wait()  # hold here until killed
        return count

    w.pump = pump_then_hang
    spec = PipelineSpec("killed", src, dst, (TableRef("public", "acct"),),
                        mode=Mode.FULL_LOAD_AND_CDC)
    run_full_load(spec, source_url=src, target_url=dst,
                  settings=Settings(full_load_workers=2, split_rows_threshold=5_000))
    """
)


@pytest.mark.parametrize("mode", [Mode.FULL_LOAD_AND_CDC])
def test_sigkill_mid_load_then_rerun_leaves_no_leftovers(new_db, mode: Mode) -> None:
    src, dst = new_db("src"), new_db("dst")
    _seed(src, 40_000)
    execute(dst, "CREATE TABLE acct (id int)", "INSERT INTO acct VALUES (42)")  # old live copy
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_LOAD, src, dst],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "COPIED", (line, proc.stderr.read() if proc.poll() else "")
        assert stage_tables(dst) == ["_cdc_stage_killed_0"]
        assert scalar(dst, "SELECT count(*) FROM _cdc_stage_killed_0") > 0
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    # The live table is untouched by the killed attempt.
    assert scalar(dst, "SELECT array_agg(id) FROM acct") == [42]
    result = run_full_load(
        spec("killed", src, dst, "acct", mode=mode),
        source_url=src,
        target_url=dst,
        settings=settings(split_rows_threshold=5_000, verify_checksums=True),
    )
    assert stage_tables(dst) == []
    assert result.rows == 40_000
    assert rows_as_text(dst, TableRef("public", "acct")) == rows_as_text(
        src, TableRef("public", "acct")
    )
    assert (
        scalar(
            src,
            "SELECT count(*) FROM pg_replication_slots WHERE database = current_database()",
        )
        == 1
    )
    assert scalar(
        src,
        "SELECT confirmed_flush_lsn::text FROM pg_replication_slots "
        "WHERE slot_name = 'cdc_assets_killed'",
    ) == str(result.consistent_lsn)

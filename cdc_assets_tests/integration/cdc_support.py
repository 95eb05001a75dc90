"""Helpers for the CDC tests: a loaded pipeline, batches, and order-independent table checksums."""

import json
import os
import random
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from cdc_assets.domain import Mode, PipelineSpec, TableRef
from cdc_assets.engine.cdc import CdcBatchResult, run_cdc_batch
from cdc_assets.engine.full_load import run_full_load
from cdc_assets.settings import Settings
from cdc_assets_tests.integration.cdc_child import KILL_ENV

SESSION = "-c TimeZone=UTC -c DateStyle=ISO,YMD -c IntervalStyle=postgres -c extra_float_digits=3"


def execute(url: str, *statements: str | sql.Composable, params: Any = None) -> None:
    """Run statements in autocommit; synchronous commit so LSN tests see flushed WAL at once."""
    with psycopg.connect(url, autocommit=True, options="-c synchronous_commit=on") as conn:
        for s in statements:
            conn.execute(s, params)  # type: ignore[arg-type]


def scalar(url: str, query: str | sql.Composable, params: Any = None) -> Any:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(query, params).fetchone()  # type: ignore[arg-type]
        return row[0] if row else None


def checksum(url: str, schema: str, name: str) -> tuple[int, str | None]:
    """(row count, order-independent hash of every row's text form)."""
    q = sql.SQL(
        "SELECT count(*), md5(string_agg(md5(t::text), '' ORDER BY md5(t::text))) FROM {} t"
    ).format(sql.Identifier(schema, name))
    with psycopg.connect(url, autocommit=True, options=SESSION) as conn:
        row = conn.execute(q).fetchone()
    assert row is not None
    return int(row[0]), row[1]


@dataclass
class Pipeline:
    """A full_load_and_cdc pipeline between two fresh databases, loaded and ready for batches."""

    spec: PipelineSpec
    source: str
    target: str
    settings: Settings

    def batch(self, progress: Callable[[str], None] | None = None, **kw: Any) -> CdcBatchResult:
        return run_cdc_batch(
            self.spec,
            source_url=self.source,
            target_url=self.target,
            settings=self.settings,
            progress=progress,
            **kw,
        )

    def assert_equal(self) -> None:
        for t in self.spec.tables:
            src = checksum(self.source, t.schema, t.name)
            dst = checksum(self.target, self.spec.target_schema, t.name)
            assert src == dst, f"{t}: source {src} != target {dst}"

    def slot_confirmed(self) -> str | None:
        return scalar(
            self.source,
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s",
            (self.spec.slot_name,),
        )


def loaded_pipeline(
    new_db: Callable[[str], str],
    ddl: list[str],
    tables: list[str],
    *,
    name: str = "p",
    settings: Settings | None = None,
    target_schema: str = "public",
) -> Pipeline:
    """Create source tables with ``ddl``, run the real full load, return the pipeline."""
    source = new_db("src")
    target = new_db("tgt")
    execute(source, *ddl)
    if target_schema != "public":
        execute(target, sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(target_schema)))
    spec = PipelineSpec(
        name=name,
        source_url=source,
        target_url=target,
        tables=tuple(TableRef.parse(t) for t in tables),
        target_schema=target_schema,
        mode=Mode.FULL_LOAD_AND_CDC,
    )
    settings = settings or Settings(full_load_workers=2)
    run_full_load(spec, source_url=source, target_url=target, settings=settings)
    return Pipeline(spec, source, target, settings)


def run_child(
    p: Pipeline, *, kill_at: str | None = None, chunk: int | None = None, timeout: float = 300
) -> tuple[int, dict[str, Any] | None, str]:
    """Run one batch in a child process; (exit code, its JSON result or None, stderr tail)."""
    env = dict(os.environ)
    env.pop(KILL_ENV, None)
    if kill_at:
        env[KILL_ENV] = kill_at
    args = {
        "name": p.spec.name,
        "source": p.source,
        "target": p.target,
        "tables": [t.display for t in p.spec.tables],
        "target_schema": p.spec.target_schema,
        "chunk": chunk,
    }
    proc = subprocess.run(
        [sys.executable, "-m", "cdc_assets_tests.integration.cdc_child", json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=str(Path(__file__).resolve().parents[2]),
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    return proc.returncode, (json.loads(lines[-1]) if lines else None), proc.stderr[-2000:]


class Workload:
    """A seeded random writer on the source, in a thread: inserts, updates (TOAST-sparing ones
    too), deletes, and multi-statement transactions, on keyed and keyless tables."""

    def __init__(self, url: str, seed: int, *, max_ops: int = 100_000) -> None:
        self.url = url
        self.rng = random.Random(seed)
        self.max_ops = max_ops
        self.ops = 0
        self.stop_event = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.next_id = 1_000_000 + seed * 100_000

    def start(self) -> "Workload":
        self.thread.start()
        return self

    def stop(self) -> int:
        self.stop_event.set()
        self.thread.join(timeout=60)
        if self.error:
            raise self.error
        return self.ops

    def _run(self) -> None:
        try:
            with psycopg.connect(self.url, autocommit=True) as conn:
                while not self.stop_event.is_set() and self.ops < self.max_ops:
                    with conn.transaction():
                        for _ in range(self.rng.choice([1, 1, 1, 3, 10])):
                            self._one(conn)
                    self.ops += 1
        except BaseException as exc:
            self.error = exc

    def _one(self, conn: psycopg.Connection[Any]) -> None:
        r = self.rng.random()
        k = self.rng.randint(1, 300)
        if r < 0.3:
            self.next_id += 1
            conn.execute(
                "INSERT INTO public.items (id, name, price) VALUES (%s, %s, %s)",
                (self.next_id, f"w{self.next_id}", self.rng.randint(0, 999)),
            )
        elif r < 0.55:
            conn.execute(
                "UPDATE public.items SET price = price + 1, name = name || 'u' WHERE id = %s", (k,)
            )
        elif r < 0.65:
            conn.execute("DELETE FROM public.items WHERE id = %s", (k,))
        elif r < 0.8:
            conn.execute("UPDATE public.docs SET n = n + 1 WHERE id = %s", (k % 20 + 1,))
        elif r < 0.9:
            conn.execute("INSERT INTO public.nokey VALUES (%s, %s)", (k % 7, f"v{k}"))
        else:
            conn.execute(
                "DELETE FROM public.nokey WHERE ctid = (SELECT ctid FROM public.nokey"
                " WHERE a = %s LIMIT 1)",
                (k % 7,),
            )

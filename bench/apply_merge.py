"""Micro-benchmark: one chunk's set-based apply, MERGE against DELETE + INSERT ON CONFLICT + UPDATE.

    .venv/bin/python bench/apply_merge.py                      # 1M-row target, 1k/10k/50k chunks
    .venv/bin/python bench/apply_merge.py --bin-dir /usr/lib/postgresql/15/bin

Starts one embedded PostgreSQL (18 by default, fsync on), loads a pgbench_accounts-like target of
``--rows`` rows, then per chunk size and per round, alternating the variants, writes one chunk of
collapsed changes through ``TableApply.write`` (80% updates of existing keys, 10% deletes, 10%
inserts of new keys) inside a transaction that is rolled back (the commit costs the same for
all variants and its fsync only adds noise). Variants:
``legacy`` (today's statements, stage ANALYZEd from 1k rows), ``legacy-noanalyze``, ``merge``
(stage ANALYZEd) and ``merge-noanalyze``. Prints the median of ``--rounds`` per variant and the
``EXPLAIN`` of the MERGE for a 1k-row stage without ANALYZE (does it use the key index?).
"""

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cdc_assets.domain import TableRef
from cdc_assets.embedded import EmbeddedPostgres, free_port
from cdc_assets.target import apply
from cdc_assets.target.catalog import describe_table

COLUMNS = ("aid", "bid", "abalance", "filler")
VARIANTS = ("legacy", "merge-nestloop", "legacy-noanalyze", "merge-noanalyze")


def chunk_of(rng: random.Random, rows: int, size: int) -> dict[Any, Any]:
    """Collapsed changes (key -> row or None), as ``TableApply`` keeps them."""
    keys = rng.sample(range(1, rows + 1), size)
    pending: dict[Any, Any] = {}
    for i, k in enumerate(keys):
        if i % 10 == 0:
            pending[str(k).encode()] = None  # delete
        elif i % 10 == 1:
            n = rows + k  # a new key
            pending[str(n).encode()] = (str(n).encode(), b"1", b"7", b"x")
        else:
            pending[str(k).encode()] = (str(k).encode(), b"1", str(i).encode(), b"y")
    return pending


def set_variant(name: str) -> None:
    apply.USE_MERGE = name.startswith("merge")
    apply.NESTLOOP = name.endswith("nestloop")
    apply.ANALYZE_MIN = 1 << 62 if name.endswith("noanalyze") else 1000  # MERGE never ANALYZEs


def one(url: str, rows: int, pending: dict[Any, Any], variant: str) -> float:
    set_variant(variant)
    with psycopg.connect(url) as conn:
        target = describe_table(conn, TableRef("public", "acc"))
        assert target is not None
        ta = apply.TableApply(
            conn,
            pipeline="bench",
            target=target,
            columns=COLUMNS,
            key=("aid",),
            upsert=True,
            stage_name="_cdc_stage_bench_0",
        )
        assert ta.merge == variant.startswith("merge")
        chunk = apply.Chunk(ta, pending, [])
        t0 = time.perf_counter()
        chunk.write()
        elapsed = time.perf_counter() - t0
        conn.rollback()  # the target stays as loaded; the commit's fsync is the same for all
    return elapsed


def explain(url: str, rows: int, size: int, analyze: bool) -> str:
    """EXPLAIN of the chunk's MERGE for a ``size``-row stage, ANALYZEd or not."""
    with psycopg.connect(url) as conn:
        target = describe_table(conn, TableRef("public", "acc"))
        assert target is not None
        ta = apply.TableApply(
            conn,
            pipeline="bench",
            target=target,
            columns=COLUMNS,
            key=("aid",),
            upsert=True,
            stage_name="_cdc_stage_bench_0",
        )
        pending = chunk_of(random.Random(1), rows, size)
        with conn.cursor() as cur:
            ta._prepare_stage(cur)
            with cur.copy(sql.SQL("COPY pg_temp._cdc_stage_bench_0 FROM STDIN")) as copy:
                for k, r in pending.items():
                    row = (
                        (0, k.decode(), None, None, None)
                        if r is None
                        else (1, *(v.decode() for v in r))
                    )
                    copy.write_row(row)
            if analyze:
                cur.execute("ANALYZE pg_temp._cdc_stage_bench_0")
            stmt = ta._merge_sql(1, 1, {})
            assert stmt is not None
            plan = cur.execute(sql.SQL("EXPLAIN ") + stmt).fetchall()
        conn.rollback()
    return "\n".join(r[0] for r in plan)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--chunks", default="1000,10000,50000")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--bin-dir", type=Path, default=None)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="cdc_apply_bench_"))
    srv = EmbeddedPostgres(
        root / "pg",
        free_port(),
        bin_dir=args.bin_dir,
        extra_settings=(("shared_buffers", "256MB"), ("autovacuum", "off")),
    )
    try:
        admin = srv.start()
        with psycopg.connect(admin, autocommit=True) as conn:
            version = conn.info.server_version
            conn.execute(
                "CREATE TABLE public.acc (aid int PRIMARY KEY, bid int, abalance int,"
                " filler char(84))"
            )
            conn.execute(
                "INSERT INTO public.acc SELECT g, g / 100000, 0, '' FROM generate_series(1, %s) g",
                (args.rows,),
            )
            conn.execute("VACUUM ANALYZE public.acc")
        print(f"server_version {version}, target {args.rows} rows")
        if version >= 150000:
            for size in (1000, 50000):
                for analyze in (False, True):
                    print(f"-- EXPLAIN MERGE, stage {size} rows, analyze={analyze}")
                    print(explain(admin, args.rows, size, analyze))
        variants = VARIANTS if version >= 150000 else VARIANTS[::2]
        rng = random.Random(42)
        for size in (int(s) for s in args.chunks.split(",")):
            times: dict[str, list[float]] = {v: [] for v in variants}
            for r in range(args.rounds):
                pending = chunk_of(rng, args.rows, size)
                order = variants if r % 2 == 0 else variants[::-1]
                for v in order:
                    times[v].append(one(admin, args.rows, pending, v))
            line = "  ".join(
                f"{v} {statistics.median(ts) * 1000:.0f} ms" for v, ts in times.items()
            )
            print(f"chunk {size}: {line}", flush=True)
    finally:
        srv.stop()


if __name__ == "__main__":
    main()

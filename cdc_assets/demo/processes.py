"""Child processes the demo owns, each in its own process group so one signal stops its whole tree.

``dagster dev`` must not inherit an ignored SIGINT (it maps SIGTERM onto its SIGINT handler), and
Ctrl-C in the terminal must reach only the demo, which then stops the children in order.
"""

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import psutil


@dataclass
class ManagedProcess:
    """A child process leading its own session; ``stop`` ends the whole group."""

    name: str
    popen: "subprocess.Popen[bytes]"
    log_path: Path
    _log: IO[bytes]

    @classmethod
    def start(
        cls,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        log_path: Path,
        cwd: Path | None = None,
    ) -> "ManagedProcess":
        """Start ``argv`` in a new session with default signal dispositions, output to a log."""
        log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        popen = subprocess.Popen(
            list(argv),
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            restore_signals=True,
        )
        return cls(name, popen, log_path, log)

    def alive(self) -> bool:
        """True while the leader runs."""
        return self.popen.poll() is None

    def _group(self) -> list[psutil.Process]:
        members = []
        for proc in psutil.process_iter(["pid"]):
            with contextlib.suppress(psutil.Error, OSError):
                if os.getpgid(proc.pid) == self.popen.pid:
                    members.append(proc)
        return members

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM the group, wait, then SIGKILL whatever is left; close the log."""
        try:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and (self.alive() or self._group()):
                time.sleep(0.2)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            for proc in self._group():
                with contextlib.suppress(psutil.Error, OSError):
                    proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=5)
        finally:
            self._log.close()

"""The three assertions every fault scenario ends with, and throwaway clusters for some faults.

1. The row equals Dagster's run record: status mapped from the run's status, the phase's run id is
   that run, ``last_error`` set exactly when the run did not succeed.
2. Once CDC catches up, every target table has the source's checksum.
3. Nothing leaked: on the source only the pipeline's own slot and publication (when it should have
   them), on the target no staging table.
"""

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import dagster as dg
import psycopg

from cdc_assets.control.repository import PipelineRepository, PipelineRow
from cdc_assets.domain import CdcStatus, FullLoadStatus, Phase, PipelineSpec
from cdc_assets.embedded import EmbeddedPostgres, free_port
from cdc_assets_tests.integration.cdc_support import checksum
from cdc_assets_tests.support import wait_until

FULL_LOAD_OF_RUN = {
    "SUCCESS": FullLoadStatus.COMPLETED,
    "FAILURE": FullLoadStatus.FAILED,
    "CANCELED": FullLoadStatus.FAILED,
    "STARTED": FullLoadStatus.IN_PROGRESS,
}
#: A catch-up CDC run (``cdc-assets run NAME --phase cdc``, no ``cdc/stream`` tag).
CDC_OF_RUN = {
    "SUCCESS": CdcStatus.ACTIVE,
    "FAILURE": CdcStatus.FAILED,
    "CANCELED": CdcStatus.FAILED,
    "STARTED": CdcStatus.ACTIVE,
}
#: A stream run of ``cdc_stream_supervisor`` (tag ``cdc/stream=true``): ACTIVE while it runs; it
#: ends STOPPED when it stopped itself or was canceled, FAILED when it failed.
CDC_OF_STREAM_RUN = {
    "SUCCESS": CdcStatus.STOPPED,
    "FAILURE": CdcStatus.FAILED,
    "CANCELED": CdcStatus.STOPPED,
    "STARTED": CdcStatus.ACTIVE,
}
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}


def row_equals_run(
    instance: dg.DagsterInstance,
    repo: PipelineRepository,
    name: str,
    run_id: str,
    phase: Phase,
    *,
    timeout: float = 40,
) -> PipelineRow:
    """Wait until the row mirrors the finished run ``run_id`` (one sensor interval + slack)."""
    run = instance.get_run_by_id(run_id)
    assert run is not None, f"run {run_id} not in the instance"
    status = run.status.value
    assert status in TERMINAL, f"run {run_id} is {status}, not finished"

    stream = run.tags.get("cdc/stream") == "true"
    cdc_map = CDC_OF_STREAM_RUN if stream else CDC_OF_RUN

    def matches() -> PipelineRow | None:
        row = repo.get(name)
        if phase is Phase.FULL_LOAD:
            ok = row.full_load_status is FULL_LOAD_OF_RUN[status] and row.full_load_run_id == run_id
        else:
            ok = row.cdc_status is cdc_map[status] and row.cdc_run_id == run_id
        return row if ok else None

    row = wait_until(
        matches, timeout=timeout, describe=f"{name} {phase} to mirror run {run_id} ({status})"
    )
    # A stream run that was canceled stopped as asked: no error (status/reconcile.py).
    if status == "SUCCESS" or (stream and status == "CANCELED"):
        assert row.last_error is None, row.last_error
    else:
        assert row.last_error, f"{name}: run {run_id} {status} but last_error is empty"
        assert "Traceback" not in row.last_error
    return row


def wait_checksums_equal(
    spec: PipelineSpec, source: str, target: str, timeout: float = 120
) -> None:
    """Every table's (count, md5) on the target equals the source's (CDC caught up)."""

    def equal() -> bool:
        for t in spec.tables:
            src = checksum(source, t.schema, t.name)
            try:
                dst = checksum(target, spec.target_schema, t.name)
            except psycopg.errors.UndefinedTable:
                return False
            assert src[0] > 0, f"source {t} is empty: the test would prove nothing"
            if src != dst:
                return False
        return True

    wait_until(
        equal, timeout=timeout, describe=f"{spec.name}: target checksums = source", interval=1
    )


def leaks(source: str, target: str, pipeline: str, *, cdc: bool) -> list[str]:
    """What the pipeline left that it should not have; empty when clean.

    ``cdc`` says whether the pipeline's own slot and publication should exist right now.
    """
    problems: list[str] = []
    own = f"cdc_assets_{pipeline}"
    with psycopg.connect(source, autocommit=True) as conn:
        slots = [
            r[0]
            for r in conn.execute(
                "SELECT slot_name FROM pg_replication_slots WHERE database = current_database()"
            ).fetchall()
        ]
        pubs = [r[0] for r in conn.execute("SELECT pubname FROM pg_publication").fetchall()]
    expected = [own] if cdc else []
    if sorted(slots) != expected:
        problems.append(f"source slots {sorted(slots)} (expected {expected})")
    if sorted(pubs) != expected:
        problems.append(f"source publications {sorted(pubs)} (expected {expected})")
    with psycopg.connect(target, autocommit=True) as conn:
        stages = [
            r[0]
            for r in conn.execute(
                "SELECT relname FROM pg_class WHERE relname LIKE '\\_cdc\\_stage\\_%'"
            ).fetchall()
        ]
    if stages:
        problems.append(f"target staging tables {stages}")
    return problems


def terminate(url: str, pipeline: str) -> int:
    """``pg_terminate_backend`` the pipeline's sessions in ``url``'s database; how many.

    Only that database: the run's pipeline-lock session (same application name) lives in the
    control database of the same test server and must survive a "source/target" fault.
    """
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = %s AND datname = current_database() "
            "AND pid <> pg_backend_pid()",
            (f"cdc_assets:{pipeline}",),
        ).fetchone()
    return int(row[0]) if row else 0


def with_password(url: str, user: str, password: str) -> str:
    """``url`` logging in as ``user`` with ``password``."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{parts.hostname}:{parts.port}"))


@contextlib.contextmanager
def password_cluster() -> Iterator[str]:
    """A throwaway cluster where every role but ``postgres`` must give a SCRAM password.

    The session server trusts every local login, so a wrong password would be accepted there; this
    one proves a real authentication failure (and that its message never carries the password).
    Yields the superuser URL (trust, for set-up).
    """
    root = Path(tempfile.mkdtemp(prefix="cdc_assets_scram_"))
    hba = root / "pg_hba.conf"
    hba.write_text(
        "local all all trust\n"
        "host all postgres 127.0.0.1/32 trust\n"
        "host all all 127.0.0.1/32 scram-sha-256\n"
    )
    os.chmod(hba, 0o644)
    server = EmbeddedPostgres(
        root / "data",
        free_port(),
        fsync=False,
        extra_settings=(("hba_file", str(hba)), ("password_encryption", "scram-sha-256")),
    )
    url = server.start()
    try:
        yield url
    finally:
        server.stop(mode="immediate")

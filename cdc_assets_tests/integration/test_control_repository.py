"""PipelineRepository against a real PostgreSQL: guarded transitions, races, locks, timestamps."""

import multiprocessing
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine

from cdc_assets.control.models import Base
from cdc_assets.control.repository import PipelineExists, PipelineRepository
from cdc_assets.control.schema import VERSION_TABLE
from cdc_assets.domain import (
    CdcStatus,
    FullLoadStatus,
    Lsn,
    Mode,
    Phase,
    PipelineSpec,
    TableRef,
    Writer,
)
from cdc_assets.errors import ConcurrentRunError, ConfigError, PipelineNotFound
from cdc_assets.status.reconcile import Write
from cdc_assets_tests.support import wait_until

pytestmark = pytest.mark.integration

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def _spec(name: str = "orders", **kw: object) -> PipelineSpec:
    base: dict[str, object] = {
        "name": name,
        "source_url": "postgresql://u:s3cretPW@127.0.0.1:1/src",
        "target_url": "env:CDC_CONN_TARGET",
        "tables": (TableRef.parse("public.orders"), TableRef.parse('"Sales"."Order Items"')),
    }
    base.update(kw)
    return PipelineSpec(**base)  # type: ignore[arg-type]


def _psycopg(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


@pytest.fixture
def repo(control_url: str) -> PipelineRepository:
    r = PipelineRepository.from_url(control_url)
    r.add(_spec())
    return r


def _events(repo: PipelineRepository, phase: Phase = Phase.FULL_LOAD) -> list[tuple[str, str]]:
    return [
        (e.old_status or "", e.new_status)
        for e in reversed(repo.events("orders", limit=100))
        if e.phase is phase
    ]


def test_schema_matches_models(control_url: str) -> None:
    # With "public" off the search_path, Alembic reflects it by name, as the models declare it.
    engine = create_engine(control_url, connect_args={"options": "-c search_path=pg_catalog"})
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(
                conn,
                opts={
                    "include_schemas": True,
                    "include_name": lambda name, kind, _p: kind != "schema" or name == "public",
                    "include_object": lambda obj, name, kind, *_: name != VERSION_TABLE,
                    "compare_type": True,
                },
            )
            diffs = compare_metadata(ctx, Base.metadata)
    finally:
        engine.dispose()
    assert diffs == [], "\n".join(map(str, diffs))


def test_add_get_list_and_enum_round_trip(repo: PipelineRepository, control_url: str) -> None:
    row = repo.get("orders")
    assert row.full_load_status is FullLoadStatus.NOT_STARTED
    assert row.cdc_status is CdcStatus.NOT_STARTED
    assert row.mode is Mode.FULL_LOAD_AND_CDC
    assert row.tables == (TableRef("public", "orders"), TableRef("Sales", "Order Items"))
    assert row.created_at.tzinfo is not None and row.updated_at >= row.created_at
    assert row.spec == _spec()
    assert [r.name for r in repo.list()] == ["orders"]

    # Every enum label written through the ORM reads back as the same Python member, and the
    # labels PostgreSQL stores are exactly the member values.
    run = 0
    for fl in (FullLoadStatus.IN_PROGRESS, FullLoadStatus.COMPLETED, FullLoadStatus.FAILED):
        run += 1
        assert repo.transition_full_load(
            "orders",
            fl,
            run_id=f"r{run}",
            run_created_at=T0 + timedelta(seconds=run),
            writer=Writer.SENSOR,
            error="boom",
        )
        assert repo.get("orders").full_load_status is fl
        with psycopg.connect(_psycopg(control_url)) as conn:
            stored = conn.execute("SELECT full_load_status::text FROM pipelines").fetchone()
        assert stored == (fl.value,)
    for cs in (CdcStatus.ACTIVE, CdcStatus.FAILED, CdcStatus.STOPPED):
        run += 1
        assert repo.transition_cdc(
            "orders",
            cs,
            run_id=f"r{run}",
            run_created_at=T0 + timedelta(seconds=run),
            writer=Writer.SENSOR,
        )
        assert repo.get("orders").cdc_status is cs
    # A row written by hand in psql reads back as enums too.
    with psycopg.connect(_psycopg(control_url)) as conn:
        conn.execute("UPDATE pipelines SET full_load_status = 'COMPLETED', cdc_status = 'ACTIVE'")
    row = repo.get("orders")
    assert (row.full_load_status, row.cdc_status) == (
        FullLoadStatus.COMPLETED,
        CdcStatus.ACTIVE,
    )


def test_add_rejects_duplicates_and_bad_specs(repo: PipelineRepository) -> None:
    with pytest.raises(PipelineExists, match="already exists"):
        repo.add(_spec())
    with pytest.raises(ConfigError, match="duplicate table"):
        repo.add(_spec("other", tables=(TableRef.parse("t"), TableRef.parse("public.t"))))
    with pytest.raises(ConfigError, match="source_url"):
        repo.add(_spec("other", source_url="mysql://x/y"))
    with pytest.raises(ConfigError, match="invalid pipeline name"):
        repo.add(_spec("Other"))
    assert [r.name for r in repo.list()] == ["orders"]


def test_unknown_pipeline_raises_not_found(repo: PipelineRepository) -> None:
    with pytest.raises(PipelineNotFound, match="nope"):
        repo.get("nope")
    with pytest.raises(PipelineNotFound):
        repo.transition_full_load(
            "nope", FullLoadStatus.IN_PROGRESS, run_id="r", run_created_at=T0, writer=Writer.OP
        )
    with pytest.raises(PipelineNotFound):
        repo.set_enabled("nope", False)
    with pytest.raises(PipelineNotFound):
        repo.remove("nope")


def test_full_load_lifecycle_persists_fields_and_events(repo: PipelineRepository) -> None:
    assert repo.transition_full_load(
        "orders", FullLoadStatus.IN_PROGRESS, run_id="r1", run_created_at=T0, writer=Writer.OP
    )
    row = repo.get("orders")
    assert row.full_load_started_at is not None and row.full_load_completed_at is None
    assert (row.last_run_id, row.full_load_run_id, row.full_load_authority) == (
        "r1",
        "r1",
        Writer.OP,
    )
    assert repo.transition_full_load(
        "orders",
        FullLoadStatus.FAILED,
        run_id="r1",
        run_created_at=T0,
        writer=Writer.HOOK,
        error="copy failed at postgresql://u:s3cretPW@h/db",
    )
    row = repo.get("orders")
    assert row.last_error is not None and "s3cretPW" not in row.last_error
    assert "copy failed" in row.last_error
    # A new run starts and completes; COMPLETED clears last_error and stores rows.
    t1 = T0 + timedelta(minutes=1)
    assert repo.transition_full_load(
        "orders", FullLoadStatus.IN_PROGRESS, run_id="r2", run_created_at=t1, writer=Writer.SENSOR
    )
    assert repo.transition_full_load(
        "orders",
        FullLoadStatus.COMPLETED,
        run_id="r2",
        run_created_at=t1,
        writer=Writer.OP,
        rows=1234,
    )
    row = repo.get("orders")
    assert row.full_load_status is FullLoadStatus.COMPLETED
    assert row.full_load_rows == 1234 and row.last_error is None
    assert row.full_load_completed_at is not None
    assert row.full_load_completed_at >= row.full_load_started_at  # type: ignore[operator]
    assert _events(repo) == [
        ("NOT_STARTED", "IN_PROGRESS"),
        ("IN_PROGRESS", "FAILED"),
        ("FAILED", "IN_PROGRESS"),
        ("IN_PROGRESS", "COMPLETED"),
    ]
    writers = [e.writer for e in reversed(repo.events("orders"))]
    assert writers == [Writer.OP, Writer.HOOK, Writer.SENSOR, Writer.OP]


def test_apply_takes_one_write_object_from_the_writers(repo: PipelineRepository) -> None:
    """The writers' frozen ``Write`` reaches the row as it is: status, run, rows, message."""
    done = Write(
        pipeline="orders",
        phase=Phase.FULL_LOAD,
        status=FullLoadStatus.COMPLETED,
        run_id="r1",
        run_created_at=T0,
        message="op completed",
        rows=42,
    )
    assert repo.apply(done, Writer.OP)
    row = repo.get("orders")
    assert (row.full_load_status, row.full_load_rows, row.full_load_run_id) == (
        FullLoadStatus.COMPLETED,
        42,
        "r1",
    )
    assert repo.events("orders", limit=1)[0].message == "op completed"
    # A status of the other phase, or a naive creation time, is refused before any write.
    with pytest.raises(ValueError):
        repo.apply(replace(done, phase=Phase.CDC, run_id="r2"), Writer.OP)
    with pytest.raises(ValueError):
        repo.apply(replace(done, run_created_at=T0.replace(tzinfo=None)), Writer.OP)
    assert repo.get("orders").full_load_run_id == "r1"


def test_forbidden_writes_change_nothing(repo: PipelineRepository) -> None:
    kw = {"run_id": "r1", "run_created_at": T0}
    assert repo.transition_full_load("orders", FullLoadStatus.COMPLETED, writer=Writer.SENSOR, **kw)  # type: ignore[arg-type]
    before = repo.get("orders")
    # late STARTED after SUCCESS, hook contradicting the sensor, duplicate, stale run, NOT_STARTED
    assert not repo.transition_full_load(
        "orders", FullLoadStatus.IN_PROGRESS, writer=Writer.SENSOR, **kw
    )  # type: ignore[arg-type]
    assert not repo.transition_full_load(
        "orders", FullLoadStatus.FAILED, writer=Writer.HOOK, error="x", **kw
    )  # type: ignore[arg-type]
    assert not repo.transition_full_load(
        "orders", FullLoadStatus.COMPLETED, writer=Writer.SENSOR, **kw
    )  # type: ignore[arg-type]
    assert not repo.transition_full_load(
        "orders",
        FullLoadStatus.FAILED,
        run_id="r0",
        run_created_at=T0 - timedelta(seconds=1),
        writer=Writer.RECONCILER,
        error="old",
    )
    assert not repo.transition_full_load(
        "orders", FullLoadStatus.NOT_STARTED, writer=Writer.SENSOR, **kw
    )  # type: ignore[arg-type]
    after = repo.get("orders")
    assert after == before
    assert len(repo.events("orders")) == 1


def test_sensor_overrides_hook_terminal_and_takes_authority(repo: PipelineRepository) -> None:
    kw = {"run_id": "r1", "run_created_at": T0}
    assert repo.transition_full_load("orders", FullLoadStatus.COMPLETED, writer=Writer.HOOK, **kw)  # type: ignore[arg-type]
    assert repo.transition_full_load(
        "orders",
        FullLoadStatus.FAILED,
        writer=Writer.SENSOR,
        error="Dagster says FAILURE",
        **kw,  # type: ignore[arg-type]
    )
    row = repo.get("orders")
    assert (row.full_load_status, row.full_load_authority) == (FullLoadStatus.FAILED, Writer.SENSOR)
    assert row.last_error == "Dagster says FAILURE"
    # Confirming the same status only takes over authority: no event.
    assert repo.transition_cdc("orders", CdcStatus.ACTIVE, writer=Writer.OP, **kw)  # type: ignore[arg-type]
    assert not repo.transition_cdc("orders", CdcStatus.ACTIVE, writer=Writer.RECONCILER, **kw)  # type: ignore[arg-type]
    row = repo.get("orders")
    assert row.cdc_authority is Writer.RECONCILER and row.last_error is None
    assert len(_events(repo, Phase.CDC)) == 1


def test_reset_fences_old_runs(repo: PipelineRepository) -> None:
    assert repo.transition_full_load(
        "orders",
        FullLoadStatus.IN_PROGRESS,
        run_id="r1",
        run_created_at=datetime.now(UTC) - timedelta(seconds=5),
        writer=Writer.OP,
    )
    repo.record_cdc_progress("orders", run_id="r1", lsn=Lsn("0/16B3748"), lag_bytes=10)
    row = repo.reset("orders")
    assert (row.full_load_status, row.cdc_status) == (
        FullLoadStatus.NOT_STARTED,
        CdcStatus.NOT_STARTED,
    )
    assert row.cdc_lsn is None and row.full_load_started_at is None and row.last_error is None
    # The old run's late COMPLETED must not undo the reset; a run created after it is accepted.
    assert not repo.transition_full_load(
        "orders",
        FullLoadStatus.COMPLETED,
        run_id="r1",
        run_created_at=datetime.now(UTC) - timedelta(seconds=5),
        writer=Writer.SENSOR,
    )
    assert repo.get("orders").full_load_status is FullLoadStatus.NOT_STARTED
    assert repo.transition_full_load(
        "orders",
        FullLoadStatus.IN_PROGRESS,
        run_id="r2",
        run_created_at=datetime.now(UTC) + timedelta(seconds=1),
        writer=Writer.SENSOR,
    )
    # One reset event: the full load's IN_PROGRESS -> NOT_STARTED (CDC was NOT_STARTED already).
    assert [(e.phase, e.writer) for e in repo.events("orders")][1:3] == [
        (Phase.FULL_LOAD, Writer.CLI),
        (Phase.FULL_LOAD, Writer.OP),
    ]


def test_record_cdc_progress_never_moves_back(repo: PipelineRepository) -> None:
    repo.record_cdc_progress("orders", run_id="c1", lsn=Lsn("1/10"), lag_bytes=100)
    repo.record_cdc_progress("orders", run_id="c2", lsn=Lsn("0/FF"), lag_bytes=5)
    row = repo.get("orders")
    assert row.cdc_lsn == Lsn("1/10") and row.cdc_lag_bytes == 5 and row.last_run_id == "c2"
    assert row.cdc_progress_at is not None


def test_set_enabled_and_remove_keep_history(repo: PipelineRepository, control_url: str) -> None:
    repo.set_enabled("orders", False)
    assert repo.get("orders").enabled is False
    repo.transition_cdc("orders", CdcStatus.ACTIVE, run_id="r", run_created_at=T0, writer=Writer.OP)
    repo.remove("orders")
    with pytest.raises(PipelineNotFound):
        repo.get("orders")
    with psycopg.connect(_psycopg(control_url)) as conn:
        kept = conn.execute("SELECT pipeline, pipeline_id FROM pipeline_events").fetchall()
    assert kept == [("orders", None)]
    repo.add(_spec())  # the name is free again, and its history starts empty
    assert repo.events("orders") == []


def test_updated_at_moves_on_hand_made_update(repo: PipelineRepository, control_url: str) -> None:
    before = repo.get("orders").updated_at
    with psycopg.connect(_psycopg(control_url)) as conn:
        conn.execute("UPDATE pipelines SET last_error = 'by hand' WHERE name = 'orders'")
    moved = repo.get("orders").updated_at
    assert moved > before
    with psycopg.connect(_psycopg(control_url)) as conn:
        conn.execute("UPDATE pipelines SET last_error = 'by hand' WHERE name = 'orders'")
    assert repo.get("orders").updated_at == moved  # a no-op update leaves it alone
    repo.set_enabled("orders", False)
    assert repo.get("orders").updated_at > moved


def _race_once(url: str, barrier: "threading.Barrier | None" = None) -> bool:
    repo = PipelineRepository.from_url(url)
    if barrier is not None:
        barrier.wait(timeout=30)
    return repo.transition_full_load(
        "orders",
        FullLoadStatus.COMPLETED,
        run_id="r1",
        run_created_at=T0,
        writer=Writer.SENSOR,
        rows=7,
    )


def test_racing_threads_make_one_change(repo: PipelineRepository, control_url: str) -> None:
    barrier = threading.Barrier(8)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: _race_once(control_url, barrier), range(8)))
    assert results.count(True) == 1
    assert _events(repo) == [("NOT_STARTED", "COMPLETED")]


def _process_racer(
    url: str, barrier: "multiprocessing.synchronize.Barrier", out: "multiprocessing.Queue[bool]"
) -> None:
    repo = PipelineRepository.from_url(url)
    repo.list()  # connect before the start line so the race is about the transition only
    barrier.wait(timeout=60)
    out.put(
        repo.transition_full_load(
            "orders",
            FullLoadStatus.IN_PROGRESS,
            run_id="p1",
            run_created_at=T0,
            writer=Writer.OP,
        )
    )


def test_racing_processes_make_one_change(repo: PipelineRepository, control_url: str) -> None:
    repo.list()  # the parent's cached engine must not leak into the forked children
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(4)
    out: multiprocessing.Queue[bool] = ctx.Queue()
    procs = [ctx.Process(target=_process_racer, args=(control_url, barrier, out)) for _ in range(4)]
    for p in procs:
        p.start()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    assert results.count(True) == 1
    assert _events(repo) == [("NOT_STARTED", "IN_PROGRESS")]
    repo.list()  # and the parent's engine still works after the children used theirs


def test_pipeline_lock_conflict_names_the_pipeline(repo: PipelineRepository) -> None:
    with (
        repo.pipeline_lock("orders"),
        pytest.raises(ConcurrentRunError, match=r"'orders'.*backend pid"),
        repo.pipeline_lock("orders"),
    ):
        pass
    with repo.pipeline_lock("orders"):  # released on exit
        pass


def _hold_lock(url: str, ready: "multiprocessing.synchronize.Event") -> None:
    with PipelineRepository.from_url(url).pipeline_lock("orders"):
        ready.set()
        threading.Event().wait(120)


def test_pipeline_lock_released_when_holder_dies(
    repo: PipelineRepository, control_url: str
) -> None:
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(control_url, ready))
    holder.start()
    try:
        assert ready.wait(30)
        with pytest.raises(ConcurrentRunError), repo.pipeline_lock("orders"):
            pass
    finally:
        holder.kill()
        holder.join(30)

    def acquired() -> bool:
        try:
            with repo.pipeline_lock("orders"):
                return True
        except ConcurrentRunError:
            return False

    wait_until(acquired, timeout=20, describe="the dead holder's lock to be released")


def test_same_status_of_a_newer_run_moves_the_row_without_an_event(
    repo: PipelineRepository,
) -> None:
    """Issue 11 item 4: ACTIVE -> ACTIVE and FAILED -> FAILED are no status changes."""
    for i, writer in enumerate((Writer.OP, Writer.SENSOR, Writer.OP)):
        assert repo.transition_cdc(
            "orders",
            CdcStatus.ACTIVE,
            run_id=f"ok{i}",
            run_created_at=T0 + timedelta(seconds=i),
            writer=writer,
        )
        row = repo.get("orders")
        assert (row.cdc_run_id, row.last_run_id, row.cdc_authority) == (f"ok{i}", f"ok{i}", writer)
    for i in range(2):
        assert repo.transition_cdc(
            "orders",
            CdcStatus.FAILED,
            run_id=f"bad{i}",
            run_created_at=T0 + timedelta(seconds=10 + i),
            writer=Writer.OP,
            error=f"failure {i}",
        )
    row = repo.get("orders")
    assert (row.cdc_status, row.cdc_run_id, row.last_error) == (
        CdcStatus.FAILED,
        "bad1",
        "failure 1",
    )
    assert _events(repo, Phase.CDC) == [("NOT_STARTED", "ACTIVE"), ("ACTIVE", "FAILED")]
    # A reset writes an event for the phase whose status changed, none for NOT_STARTED.
    repo.reset("orders")
    assert _events(repo, Phase.CDC)[-1] == ("FAILED", "NOT_STARTED")
    assert _events(repo, Phase.FULL_LOAD) == []

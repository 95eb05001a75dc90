"""Source-side faults through real Dagster runs (in-process, as ``cdc-assets run`` executes them):
the slot dropped underneath, wal_level not logical, a table without a key, a dropped column.

Each: the faulted run fails with a clear, secret-free reason that the row mirrors (row == run
record), the documented recovery (``pipeline reset`` then a full load) brings the target back to
the source's checksum under a running workload, and nothing is leaked.
"""

from collections.abc import Iterator

import dagster as dg
import pytest
from dagster import instance_for_test

from cdc_assets.control.repository import PipelineRepository
from cdc_assets.definitions import build_defs
from cdc_assets.defs.reconciler import reconcile
from cdc_assets.domain import CdcStatus, FullLoadStatus, Mode, Phase
from cdc_assets.ops_cli import execute_pipeline
from cdc_assets.settings import Settings
from cdc_assets_tests.e2e.pipelines import make_source, spec
from cdc_assets_tests.faults.checks import leaks, row_equals_run, wait_checksums_equal
from cdc_assets_tests.faults.scenarios import cli_ok
from cdc_assets_tests.faults.workload import SourceWorkload
from cdc_assets_tests.integration.cdc_support import execute

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with instance_for_test() as inst:
        yield inst


@pytest.fixture
def repo(control_url: str, monkeypatch: pytest.MonkeyPatch) -> PipelineRepository:
    monkeypatch.setenv("CDC_CONTROL_DB_URL", control_url)
    return PipelineRepository.from_url(control_url)


def run(instance: dg.DagsterInstance, repo: PipelineRepository, name: str, phase: Phase) -> str:
    """One run as ``cdc-assets run`` does it (run, then reconcile); its run id."""
    result = execute_pipeline(instance, name, phase, defs=build_defs(Settings()))
    reconcile(instance, repo, [name])
    return result.dagster_run.run_id


FAULTS = {
    # (SQL on the source that breaks CDC, words of the row's error)
    "slot_dropped": (
        "SELECT pg_drop_replication_slot('cdc_assets_{name}')",
        "replication slot cdc_assets_{name} is missing",
    ),
    "column_dropped": ("ALTER TABLE public.orders DROP COLUMN note", "note"),
    "primary_key_dropped": (
        "ALTER TABLE public.orders DROP CONSTRAINT orders_pkey",
        "primary key or REPLICA IDENTITY FULL",
    ),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_cdc_breaks_then_reset_recovers(
    instance, repo, control_url, new_db, pg_wal_logical, fault: str
) -> None:
    src, dst = new_db("src"), new_db("dst")
    make_source(src, rows=300)
    name = fault
    repo.add(spec(name, src, dst, mode=Mode.FULL_LOAD_AND_CDC))
    breaking_sql, words = FAULTS[fault]
    with SourceWorkload(src) as workload:
        workload.wait_commits(5)
        assert repo.get(name).full_load_status is FullLoadStatus.NOT_STARTED
        loaded = run(instance, repo, name, Phase.FULL_LOAD)
        row_equals_run(instance, repo, name, loaded, Phase.FULL_LOAD, timeout=5)
        row_equals_run(instance, repo, name, run(instance, repo, name, Phase.CDC), Phase.CDC)
        workload.wait_commits(5)
        if fault == "column_dropped":
            workload.stop()  # it writes that column
        execute(src, breaking_sql.format(name=name))
        if fault == "column_dropped":
            execute(src, "INSERT INTO public.orders (id) VALUES (999999)")
        broken = run(instance, repo, name, Phase.CDC)
        row = row_equals_run(instance, repo, name, broken, Phase.CDC, timeout=5)
        assert row.cdc_status is CdcStatus.FAILED
        assert words.format(name=name) in (row.last_error or ""), row.last_error
        assert "(fix: " in (row.last_error or "")

        # Recovery (docs/reliability.md): fix the source if needed, reset, full load, CDC.
        if fault == "primary_key_dropped":
            execute(src, "ALTER TABLE public.orders REPLICA IDENTITY FULL")
        cli_ok(control_url, "pipeline", "reset", name)
        assert leaks(src, dst, name, cdc=False) == []
        row_equals_run(instance, repo, name, run(instance, repo, name, Phase.FULL_LOAD),
                       Phase.FULL_LOAD, timeout=5)  # fmt: skip
        if fault != "column_dropped":
            workload.wait_commits(5)
    for _ in range(2):
        last = run(instance, repo, name, Phase.CDC)
    row_equals_run(instance, repo, name, last, Phase.CDC, timeout=5)
    wait_checksums_equal(repo.get(name).spec, src, dst, timeout=10)
    assert leaks(src, dst, name, cdc=True) == []
    cli_ok(control_url, "pipeline", "remove", name)
    assert leaks(src, dst, name, cdc=False) == []


def test_wal_level_replica_fails_the_run_clearly(
    instance, repo, control_url, new_db, wal_replica_server
) -> None:
    make_source(wal_replica_server, rows=50)
    dst = new_db("dst")
    repo.add(spec("walrep", wal_replica_server, dst, mode=Mode.FULL_LOAD_AND_CDC))
    failed = run(instance, repo, "walrep", Phase.FULL_LOAD)
    row = row_equals_run(instance, repo, "walrep", failed, Phase.FULL_LOAD, timeout=5)
    assert "wal_level" in (row.last_error or "") and "logical" in (row.last_error or "")
    assert leaks(wal_replica_server, dst, "walrep", cdc=False) == []

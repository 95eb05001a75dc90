"""The control database goes away while a run wants to write its status.

Injected by refusing new connections to the control database (``ALLOW_CONNECTIONS false``) and
terminating the pooled sessions, while the full load waits on a source lock; the pipeline-lock
session survives (a restarted control DB would drop it too, which only loses the duplicate-run
guard the run coordinator also provides). Then:

* short outage (2 s): the op's final write retries with backoff and lands; nothing else needed.
* long outage (past the op's and the hook's retries): both give up without failing the run (the
  load is committed); once the database is back the reconciler (``cdc-assets reconcile`` / the
  reconciler and run-status sensors) writes COMPLETED from the run record.

Both end with the row equal to the run record, target checksums equal, nothing leaked.
"""

import threading
from collections.abc import Iterator

import dagster as dg
import psycopg
import pytest
from dagster import instance_for_test
from psycopg import sql

from cdc_assets.control.repository import PipelineRepository
from cdc_assets.definitions import build_defs
from cdc_assets.defs.reconciler import reconcile
from cdc_assets.domain import Mode, Phase
from cdc_assets.ops_cli import execute_pipeline
from cdc_assets.settings import Settings
from cdc_assets_tests.e2e.pipelines import make_source, spec
from cdc_assets_tests.faults.checks import leaks, row_equals_run, wait_checksums_equal
from cdc_assets_tests.faults.scenarios import engine_waiting, locked
from cdc_assets_tests.faults.workload import SourceWorkload
from cdc_assets_tests.support import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with instance_for_test() as inst:
        yield inst


def set_reachable(admin_url: str, database: str, reachable: bool) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS {}").format(
                sql.Identifier(database), sql.SQL("true" if reachable else "false")
            )
        )
        if not reachable:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND application_name = 'cdc_assets:control'",
                (database,),
            )


@pytest.mark.parametrize("outage_s", [2.0, 22.0], ids=["short_retried", "long_reconciled"])
def test_control_db_unreachable_at_the_final_write(
    instance, control_url, pg_admin_url, new_db, monkeypatch, outage_s: float
) -> None:
    monkeypatch.setenv("CDC_CONTROL_DB_URL", control_url)
    repo = PipelineRepository.from_url(control_url)
    control_db = control_url.rsplit("/", 1)[1]
    src, dst = new_db("src"), new_db("dst")
    make_source(src, rows=300)
    repo.add(spec("outage", src, dst, mode=Mode.FULL_LOAD_AND_CDC))
    result: dict[str, dg.ExecuteInProcessResult] = {}
    defs = build_defs(Settings())
    try:
        with SourceWorkload(src) as workload:
            workload.wait_commits(5)
            with locked(src):
                runner = threading.Thread(
                    target=lambda: result.update(
                        r=execute_pipeline(instance, "outage", Phase.FULL_LOAD, defs=defs)
                    )
                )
                runner.start()
                wait_until(lambda: engine_waiting(src, "outage"), timeout=60, describe="load")
                set_reachable(pg_admin_url, control_db, False)
                back = threading.Timer(outage_s, set_reachable, (pg_admin_url, control_db, True))
                back.start()
            runner.join(timeout=120)
            back.join()
            run = result["r"]
            run_id = run.dagster_run.run_id
            # The load committed, so the run succeeds either way: a bookkeeping failure must not
            # throw away a committed load.
            assert run.success
            completed = [
                e.writer.value
                for e in repo.events("outage")
                if e.run_id == run_id and e.new_status == "COMPLETED"
            ]
            if outage_s < 5:
                assert completed == ["op"], "a 2 s outage is covered by the writer's retries"
            else:
                assert completed == [], "op and hook gave up; nothing may be written yet"
                # `cdc-assets reconcile` / the sensors: the row from the run record.
                reconcile(instance, repo, ["outage"])
            row_equals_run(instance, repo, "outage", run_id, Phase.FULL_LOAD, timeout=10)
            # CDC from the load's snapshot, while the workload keeps writing.
            assert execute_pipeline(instance, "outage", Phase.CDC, defs=defs).success
        assert execute_pipeline(instance, "outage", Phase.CDC, defs=defs).success
        wait_checksums_equal(repo.get("outage").spec, src, dst, timeout=30)
        assert leaks(src, dst, "outage", cdc=True) == []
    finally:
        set_reachable(pg_admin_url, control_db, True)

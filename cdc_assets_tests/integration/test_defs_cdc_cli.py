"""``cdc-assets run NAME --phase cdc`` on a DAGSTER_HOME instance: exit codes, one-line reasons."""

import psycopg
import pytest

from cdc_assets.cli import main
from cdc_assets.control.repository import PipelineRepository
from cdc_assets.domain import CdcStatus, FullLoadStatus, Lsn, Mode, Writer
from cdc_assets_tests.e2e.pipelines import count, make_source, spec

pytestmark = pytest.mark.integration


@pytest.fixture
def repo(control_url, tmp_path, monkeypatch) -> PipelineRepository:
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    # The CLI exports the URL into os.environ; set it through monkeypatch so it is restored.
    monkeypatch.setenv("CDC_CONTROL_DB_URL", control_url)
    return PipelineRepository.from_url(control_url)


def cli(repo: PipelineRepository, *args: str) -> int:
    return main(["--control-db-url", repo.url, "run", *args])


def test_run_phase_cdc_applies_changes_then_fails_clearly_without_slot(
    repo, new_db, capsys
) -> None:
    import dagster as dg

    src, dst = new_db("src"), new_db("dst")
    make_source(src, rows=5)
    repo.add(spec("cli_cdc", src, dst, mode=Mode.FULL_LOAD_AND_CDC))
    assert cli(repo, "cli_cdc") == 0
    load = repo.get("cli_cdc")
    assert load.full_load_status is FullLoadStatus.COMPLETED
    with psycopg.connect(src, autocommit=True) as conn:
        conn.execute("INSERT INTO public.orders VALUES (99, 'streamed')")
        conn.execute("DELETE FROM public.orders WHERE id = 1")
    capsys.readouterr()

    assert cli(repo, "cli_cdc", "--phase", "cdc") == 0

    assert count(dst) == 5
    with psycopg.connect(dst, autocommit=True) as conn:
        assert conn.execute("SELECT note FROM public.orders WHERE id = 99").fetchone() == (
            "streamed",
        )
    row = repo.get("cli_cdc")
    # The op wrote ACTIVE; the reconciler confirmed it from the run record before the exit.
    assert (row.cdc_status, row.cdc_authority) == (CdcStatus.ACTIVE, Writer.RECONCILER)
    with psycopg.connect(src, autocommit=True) as conn:
        slot = conn.execute(
            "SELECT slot_name, confirmed_flush_lsn::text FROM pg_replication_slots"
            " WHERE slot_name = %s",
            (row.spec.slot_name,),
        ).fetchone()
    assert slot is not None and row.cdc_lsn == Lsn(slot[1])
    run = dg.DagsterInstance.get().get_run_by_id(row.last_run_id)
    assert run is not None and run.job_name == "cdc_stream_job"
    assert run.tags["cdc/phase"] == "cdc" and run.tags["cdc/pipeline"] == "cli_cdc"
    assert "succeeded" in capsys.readouterr().out
    assert (row.full_load_status, row.full_load_run_id) == (
        load.full_load_status,
        load.full_load_run_id,
    )

    with psycopg.connect(src, autocommit=True) as conn:
        conn.execute("SELECT pg_drop_replication_slot(%s)", (row.spec.slot_name,))

    assert cli(repo, "cli_cdc", "--phase", "cdc") == 1

    # Dagster's run log goes to stderr first; the command's verdict is its own last line.
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("cdc-assets run cli_cdc: run ")
    assert row.spec.slot_name in last and "is missing" in last
    assert "reset the pipeline and run a new full load" in last
    assert "Traceback" not in last
    failed = repo.get("cli_cdc")
    assert failed.cdc_status is CdcStatus.FAILED
    assert failed.last_error is not None and row.spec.slot_name in failed.last_error
    assert failed.full_load_status is FullLoadStatus.COMPLETED

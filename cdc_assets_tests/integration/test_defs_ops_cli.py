"""``cdc-assets run`` / ``reconcile`` backends against a DAGSTER_HOME instance."""

import pytest

from cdc_assets.control.repository import PipelineRepository
from cdc_assets.domain import FullLoadStatus, Writer
from cdc_assets.ops_cli import reconcile_once, run_pipeline
from cdc_assets_tests.e2e.pipelines import count, make_source, spec

pytestmark = pytest.mark.integration


@pytest.fixture
def repo(control_url, tmp_path, monkeypatch) -> PipelineRepository:
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.setenv("CDC_CONTROL_DB_URL", control_url)
    return PipelineRepository.from_url(control_url)


def test_run_success_is_confirmed_by_the_reconciler(repo, new_db, capsys) -> None:
    src, dst = new_db("src"), new_db("dst")
    make_source(src, rows=7)
    repo.add(spec("cli_ok", src, dst))

    assert run_pipeline("cli_ok", "full_load") == 0

    row = repo.get("cli_ok")
    assert row.full_load_status is FullLoadStatus.COMPLETED
    assert row.full_load_authority is Writer.RECONCILER
    assert count(dst) == 7
    assert "succeeded" in capsys.readouterr().out
    assert reconcile_once() == 0


def test_run_failure_exits_1_with_one_line_reason(repo, new_db, capsys) -> None:
    src, dst = new_db("src"), new_db("dst")
    make_source(src, rows=1)
    repo.add(spec("cli_bad", src, dst, tables=("public.ghost_table",)))

    assert run_pipeline("cli_bad", "full_load") == 1

    # Dagster's run log goes to stderr first; the command's own verdict is its last line.
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("cdc-assets run cli_bad: run ") and "ghost_table" in last
    assert repo.get("cli_bad").full_load_status is FullLoadStatus.FAILED


def test_unknown_pipeline_or_phase_exit_1(repo, capsys) -> None:
    assert run_pipeline("nobody", "full_load") == 1
    assert run_pipeline("nobody", "sideways") == 1
    assert "nobody" in capsys.readouterr().err

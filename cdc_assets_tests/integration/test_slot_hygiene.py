"""Replication slots never leak: 20 load/reset cycles leave at most one slot and one publication,
and ``pipeline remove`` leaves none (nor staging tables on the target)."""

import psycopg
import pytest

from cdc_assets.cli import main
from cdc_assets.control.repository import PipelineRepository
from cdc_assets.engine.full_load import run_full_load
from cdc_assets.settings import Settings

pytestmark = pytest.mark.integration

NAME = "hygiene"


def _artifacts(source: str, target: str) -> tuple[int, int, int]:
    with psycopg.connect(source) as conn:
        slots = conn.execute(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s",
            ("cdc_assets_" + NAME,),
        ).fetchone()
        pubs = conn.execute(
            "SELECT count(*) FROM pg_publication WHERE pubname = %s", ("cdc_assets_" + NAME,)
        ).fetchone()
    with psycopg.connect(target) as conn:
        stages = conn.execute(
            "SELECT count(*) FROM pg_class WHERE relname LIKE '\\_cdc\\_stage%%'"
        ).fetchone()
    assert slots and pubs and stages
    return int(slots[0]), int(pubs[0]), int(stages[0])


def test_twenty_reset_load_cycles_then_remove_leave_nothing(new_db, control_url: str) -> None:
    source, target = new_db("src"), new_db("tgt")
    with psycopg.connect(source) as conn:
        conn.execute("CREATE TABLE public.items (id int PRIMARY KEY, v text)")
        conn.execute("INSERT INTO public.items SELECT g, 'v' || g FROM generate_series(1, 200) g")
    ctl = ["--control-db-url", control_url]
    add = ["pipeline", "add", NAME, "--source", source, "--target", target]
    assert main([*add, "--table", "public.items", *ctl]) == 0
    repo = PipelineRepository.from_url(control_url)
    settings = Settings()
    for cycle in range(20):
        result = run_full_load(
            repo.get(NAME).spec, source_url=source, target_url=target, settings=settings
        )
        assert result.rows == 200 and result.consistent_lsn is not None
        assert _artifacts(source, target) == (1, 1, 0), f"after load {cycle}"
        assert main(["pipeline", "reset", NAME, *ctl]) == 0
        assert _artifacts(source, target) == (0, 0, 0), f"after reset {cycle}"

    run_full_load(repo.get(NAME).spec, source_url=source, target_url=target, settings=settings)
    assert _artifacts(source, target) == (1, 1, 0)
    assert main(["pipeline", "remove", NAME, *ctl]) == 0
    assert _artifacts(source, target) == (0, 0, 0)

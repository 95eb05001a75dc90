"""Exactly-once, proven on checksums: writes before, during and after the full load, several
batches, schema and truncate events mid-stream, and batches killed with SIGKILL at every point."""

import signal

import pytest

from cdc_assets.domain import Mode, PipelineSpec, TableRef
from cdc_assets.engine.cdc import KILL_POINTS
from cdc_assets.engine.full_load import run_full_load
from cdc_assets.settings import Settings
from cdc_assets_tests.integration.cdc_support import (
    Pipeline,
    Workload,
    checksum,
    execute,
    loaded_pipeline,
    run_child,
    scalar,
)
from cdc_assets_tests.support import wait_until

pytestmark = pytest.mark.integration

DDL = [
    "CREATE TABLE public.items (id int PRIMARY KEY, name text, price numeric)",
    "INSERT INTO public.items SELECT g, 'n' || g, g FROM generate_series(1, 300) g",
    "CREATE TABLE public.docs (id int PRIMARY KEY, body text, n int)",
    "ALTER TABLE public.docs ALTER COLUMN body SET STORAGE EXTERNAL",
    "INSERT INTO public.docs SELECT g, (SELECT string_agg(md5(g::text || x::text), '')"
    " FROM generate_series(1, 200) x), 0 FROM generate_series(1, 20) g",
    "CREATE TABLE public.nokey (a int, b text)",
    "ALTER TABLE public.nokey REPLICA IDENTITY FULL",
    "INSERT INTO public.nokey SELECT g % 7, 'seed' FROM generate_series(1, 50) g",
]
TABLES = ["public.items", "public.docs", "public.nokey"]


def test_workload_before_during_and_after_the_full_load(new_db) -> None:
    source, target = new_db("src"), new_db("tgt")
    execute(source, *DDL)
    spec = PipelineSpec(
        name="eo",
        source_url=source,
        target_url=target,
        tables=tuple(TableRef.parse(t) for t in TABLES),
        mode=Mode.FULL_LOAD_AND_CDC,
    )
    settings = Settings(full_load_workers=2)
    p = Pipeline(spec, source, target, settings)
    before = Workload(source, seed=1).start()
    wait_until(lambda: before.ops >= 50, timeout=30, describe="writes before the full load")
    run_full_load(spec, source_url=source, target_url=target, settings=settings)  # during
    wait_until(lambda: before.ops >= 150, timeout=30, describe="writes after the full load")
    applied = 0
    for i in range(4):
        r = p.batch(chunk_changes=200)  # small chunks: many flushes inside one transaction
        applied += r.transactions
        if i == 1:
            execute(source, "ALTER TABLE public.items ADD COLUMN note text DEFAULT 'old row'")
        if i == 2:
            execute(source, "TRUNCATE public.nokey")
        wait_until(
            lambda n=before.ops: before.ops > n + 20, timeout=30, describe="more concurrent writes"
        )
    before.stop()
    after = Workload(source, seed=2, max_ops=200).start()
    wait_until(lambda: after.ops >= 200, timeout=60, describe="writes after the batches")
    after.stop()
    final = p.batch()
    applied += final.transactions
    assert applied > 100
    p.assert_equal()
    assert p.batch().transactions == 0
    assert checksum(target, "public", "docs")[0] == 20


def sample_changes(source: str, tag: str) -> None:
    execute(
        source,
        f"INSERT INTO public.nokey VALUES (100, '{tag}'), (101, '{tag}')",
        f"UPDATE public.items SET name = name || '{tag}' WHERE id % 10 = 0",
        "DELETE FROM public.items WHERE id IN (SELECT id FROM public.items ORDER BY id LIMIT 3)",
        "UPDATE public.docs SET n = n + 1",
        f"INSERT INTO public.items SELECT g, '{tag}', 0 FROM generate_series(1, 50) g"
        " WHERE NOT EXISTS (SELECT 1 FROM public.items i WHERE i.id = g)",
    )


@pytest.mark.parametrize("point", KILL_POINTS)
def test_sigkill_at_each_point_then_a_normal_batch(new_db, point: str) -> None:
    p = loaded_pipeline(new_db, DDL, TABLES, name="crash")
    assert p.batch().transactions == 0
    sample_changes(p.source, "a")
    target_before = [checksum(p.target, "public", t) for t in ("items", "docs", "nokey")]
    slot_before = p.slot_confirmed()
    wm_before = scalar(p.target, "SELECT lsn::text FROM public._cdc_assets_watermark")

    code, result, err = run_child(p, kill_at=point, chunk=100)
    assert code == -signal.SIGKILL, err
    assert result is None
    wm_after = scalar(p.target, "SELECT lsn::text FROM public._cdc_assets_watermark")
    if point == "after_commit":
        p.assert_equal()  # the target committed ...
        assert p.slot_confirmed() == slot_before  # ... but the slot never moved
        assert wm_after != wm_before
    else:
        after = [checksum(p.target, "public", t) for t in ("items", "docs", "nokey")]
        assert after == target_before  # nothing half-applied
        assert wm_after == wm_before
        assert p.slot_confirmed() == slot_before

    sample_changes(p.source, "b")  # more work arrives before the recovery batch
    code, result, err = run_child(p)
    assert code == 0, err
    assert result is not None
    # The recovery batch applies the second round, and the first round unless it was committed.
    assert result["transactions"] == (5 if point == "after_commit" else 10)  # 5 per round
    p.assert_equal()
    assert p.slot_confirmed() == result["end_lsn"]

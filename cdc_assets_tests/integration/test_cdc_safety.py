"""A batch refuses, with a clear message and without touching the target, whenever continuing
could lose changes: slot dropped or recreated underneath, no full load, no usable key."""

import psycopg
import pytest

from cdc_assets.engine.cdc import pending_bytes
from cdc_assets.errors import ConsistencyError, SourceError
from cdc_assets.target.watermark import delete_watermark
from cdc_assets_tests.integration.cdc_support import checksum, execute, loaded_pipeline, scalar

pytestmark = pytest.mark.integration

DDL = [
    "CREATE TABLE public.items (id int PRIMARY KEY, name text)",
    "INSERT INTO public.items SELECT g, 'n' || g FROM generate_series(1, 50) g",
    "CREATE TABLE public.other (id int PRIMARY KEY, v text)",
]


def drop_slot(p) -> None:
    execute(p.source, "SELECT pg_drop_replication_slot(%s)", params=(p.spec.slot_name,))


def test_slot_dropped_underneath(new_db) -> None:
    p = loaded_pipeline(new_db, DDL, ["public.items"])
    execute(p.source, "UPDATE public.items SET name = 'x' WHERE id = 1")
    drop_slot(p)
    with pytest.raises(ConsistencyError) as err:
        p.batch()
    msg = err.value.for_row()
    assert "cdc_assets_p" in msg and "is missing" in msg and "new full load" in msg
    with pytest.raises(ConsistencyError, match="missing"):
        pending_bytes(p.spec, source_url=p.source)


def test_slot_recreated_underneath(new_db) -> None:
    p = loaded_pipeline(new_db, DDL, ["public.items"])
    before = checksum(p.target, "public", "items")
    drop_slot(p)
    execute(p.source, "UPDATE public.items SET name = 'lost' WHERE id = 1")
    execute(
        p.source,
        "SELECT pg_create_logical_replication_slot(%s, 'pgoutput')",
        params=(p.spec.slot_name,),
    )
    execute(p.source, "UPDATE public.items SET name = 'seen' WHERE id = 2")
    with pytest.raises(ConsistencyError) as err:
        p.batch()
    assert "past the target's watermark" in str(err.value)
    assert checksum(p.target, "public", "items") == before


def test_slot_advanced_underneath(new_db) -> None:
    p = loaded_pipeline(new_db, DDL, ["public.items"])
    execute(p.source, "UPDATE public.items SET name = 'skipped' WHERE id = 1")
    execute(
        p.source,
        "SELECT pg_replication_slot_advance(%s, pg_current_wal_lsn())",
        params=(p.spec.slot_name,),
    )
    with pytest.raises(ConsistencyError, match="recreated or advanced"):
        p.batch()


def test_no_watermark_means_no_full_load(new_db) -> None:
    p = loaded_pipeline(new_db, DDL, ["public.items"])
    with psycopg.connect(p.target, autocommit=True) as conn:
        delete_watermark(conn, "public", "p")
    with pytest.raises(ConsistencyError, match="no CDC watermark"):
        p.batch()


def test_table_without_key_or_full_identity_is_refused(new_db) -> None:
    p = loaded_pipeline(new_db, DDL, ["public.items"])
    execute(
        p.source,
        "ALTER TABLE public.items DROP CONSTRAINT items_pkey",
        "INSERT INTO public.items VALUES (100, 'no key now')",
    )
    with pytest.raises(SourceError, match="REPLICA IDENTITY FULL"):
        p.batch()


def test_idle_slot_advances_when_only_other_tables_change(new_db) -> None:
    p = loaded_pipeline(new_db, DDL, ["public.items"])
    first = p.batch()
    execute(
        p.source,
        "INSERT INTO public.other SELECT g, repeat('x', 100) FROM generate_series(1, 20000) g",
    )
    assert pending_bytes(p.spec, source_url=p.source) > 300_000
    r = p.batch()
    assert r.changes == 0 and r.transactions == 0
    assert r.end_lsn > first.end_lsn
    assert p.slot_confirmed() == str(r.end_lsn)
    assert r.lag_bytes < 100_000
    assert pending_bytes(p.spec, source_url=p.source) < 100_000
    assert scalar(p.target, "SELECT lsn::text FROM public._cdc_assets_watermark") == str(r.end_lsn)

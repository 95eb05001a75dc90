"""``REPLICA IDENTITY USING INDEX`` on a table without a primary key (issue 12 item 7).

PostgreSQL publishes the identity index's columns as the key of every update and delete, so CDC
can match rows on them exactly as on a primary key. The full load gives the target a unique index
on those columns (also when the source index has INCLUDE columns, which the target's plain index
rebuild would skip), and CDC applies inserts, updates (key changes too) and deletes by them.
"""

import pytest

from cdc_assets.errors import SourceError
from cdc_assets_tests.integration.cdc_support import execute, loaded_pipeline, scalar

pytestmark = pytest.mark.integration

DDL = [
    "CREATE TABLE public.ridx (code text NOT NULL, region int NOT NULL, v int, note text)",
    "CREATE UNIQUE INDEX ridx_key ON public.ridx (code, region)",
    "ALTER TABLE public.ridx REPLICA IDENTITY USING INDEX ridx_key",
    "INSERT INTO public.ridx SELECT 'c' || g, g % 3, g, 'n' FROM generate_series(1, 200) g",
    "CREATE TABLE public.rinc (code text NOT NULL, v int NOT NULL, note text)",
    "CREATE UNIQUE INDEX rinc_key ON public.rinc (code) INCLUDE (v)",
    "ALTER TABLE public.rinc REPLICA IDENTITY USING INDEX rinc_key",
    "INSERT INTO public.rinc SELECT 'k' || g, g, 'n' FROM generate_series(1, 100) g",
]

UNIQUE_INDEX_COLUMNS = """
SELECT array(SELECT a.attname::text FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
             ORDER BY k.ord)
FROM pg_index i WHERE i.indrelid = %s::regclass AND i.indisunique AND NOT i.indisprimary
ORDER BY 1
"""


def test_identity_index_without_primary_key_full_load_and_cdc(new_db) -> None:
    p = loaded_pipeline(new_db, DDL, ["public.ridx", "public.rinc"])
    # The identity index's columns are the target's key: a unique index on them, no primary key.
    assert scalar(p.target, UNIQUE_INDEX_COLUMNS, ("public.ridx",)) == ["code", "region"]
    assert scalar(p.target, UNIQUE_INDEX_COLUMNS, ("public.rinc",)) == ["code"]
    p.assert_equal()
    execute(
        p.source,
        "INSERT INTO public.ridx VALUES ('new', 1, 1, 'i'), ('new', 2, 2, 'i')",
        "UPDATE public.ridx SET v = v * 10, note = 'u' WHERE region = 1",
        "UPDATE public.ridx SET region = 7 WHERE code = 'c3'",  # key change
        "UPDATE public.ridx SET code = 'moved' || code WHERE code IN ('c4', 'c5')",
        "DELETE FROM public.ridx WHERE code IN ('c6', 'c7', 'new')",
        "INSERT INTO public.ridx VALUES ('new', 2, 3, 'again')",  # a deleted key comes back
        "UPDATE public.rinc SET v = v + 1000, note = 'u' WHERE v <= 20",
        "UPDATE public.rinc SET code = 'z' || code WHERE v = 30",
        "DELETE FROM public.rinc WHERE v BETWEEN 40 AND 49",
        "INSERT INTO public.rinc VALUES ('k40', 40, 'back')",
    )
    r = p.batch()
    assert r.transactions == 10 and r.deletes > 0 and r.updates > 0
    p.assert_equal()
    execute(
        p.source,
        "UPDATE public.ridx SET note = 'second' WHERE v % 7 = 0",
        "DELETE FROM public.rinc WHERE v > 90",
    )
    p.batch()
    p.assert_equal()
    # With its identity index dropped the table publishes no key (as NOTHING): refused, clearly.
    execute(p.source, "DROP INDEX public.rinc_key")
    with pytest.raises(SourceError, match="primary key or REPLICA IDENTITY FULL") as err:
        p.batch()
    assert err.value.table == "public.rinc" and "USING INDEX" in (err.value.fix or "")

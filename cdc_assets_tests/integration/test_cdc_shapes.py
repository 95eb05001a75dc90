"""Table shapes beyond the basics: composite keys (with key changes), REPLICA IDENTITY USING
INDEX (a unique index other than the primary key), enum columns, partitioned tables (changes
published via the root), and a target schema other than public."""

import pytest

from cdc_assets_tests.integration.cdc_support import checksum, execute, loaded_pipeline

pytestmark = pytest.mark.integration

DDL = [
    "CREATE TYPE public.mood AS ENUM ('sad', 'ok', 'happy')",
    "CREATE TABLE public.pairs (a int, b text, v text, m public.mood, PRIMARY KEY (a, b))",
    "INSERT INTO public.pairs SELECT g % 10, 'k' || g, 'v', 'ok' FROM generate_series(1, 100) g",
    "CREATE TABLE public.uidx (id int PRIMARY KEY, code text NOT NULL, v int)",
    "CREATE UNIQUE INDEX uidx_code ON public.uidx (code)",
    "ALTER TABLE public.uidx REPLICA IDENTITY USING INDEX uidx_code",
    "INSERT INTO public.uidx SELECT g, 'c' || g, g FROM generate_series(1, 50) g",
    "CREATE TABLE public.events (id int, day date, note text, PRIMARY KEY (id, day))"
    " PARTITION BY RANGE (day)",
    "CREATE TABLE public.events_2024 PARTITION OF public.events"
    " FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')",
    "CREATE TABLE public.events_2025 PARTITION OF public.events"
    " FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')",
    "INSERT INTO public.events SELECT g, DATE '2024-06-01' + g, 'e' FROM generate_series(1, 100) g",
]
TABLES = ["public.pairs", "public.uidx", "public.events"]


def test_composite_keys_index_identity_enums_partitions_other_schema(new_db) -> None:
    p = loaded_pipeline(new_db, DDL, TABLES, target_schema="copy")
    execute(
        p.source,
        "UPDATE public.pairs SET v = 'changed', m = 'happy' WHERE a = 1",
        "UPDATE public.pairs SET b = b || '-moved' WHERE a = 2",  # key change
        "DELETE FROM public.pairs WHERE a = 3",
        "INSERT INTO public.pairs VALUES (3, 'k3', 'again', 'sad')",
        "UPDATE public.uidx SET v = v * 10 WHERE id <= 10",
        "UPDATE public.uidx SET code = code || 'x' WHERE id = 11",  # identity key change
        "DELETE FROM public.uidx WHERE id = 12",
        "INSERT INTO public.uidx VALUES (99, 'new', 1)",
        # moves a row across partitions: delete in one leaf, insert in the other
        "UPDATE public.events SET day = DATE '2025-03-01' WHERE id = 5",
        "UPDATE public.events SET note = 'n' WHERE id <= 20",
        "DELETE FROM public.events WHERE id = 7",
        "INSERT INTO public.events VALUES (500, '2025-05-05', 'late')",
    )
    r = p.batch()
    assert r.transactions == 12
    p.assert_equal()
    assert checksum(p.target, "copy", "events")[0] == 100
    assert sorted(t.name for t in r.tables_changed) == ["events", "pairs", "uidx"]

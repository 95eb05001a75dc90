"""One source transaction of 1,000,000 rows is applied with bounded memory (streamed in chunks
into one target transaction), measured as the batch process's peak RSS."""

import pytest

from cdc_assets_tests.integration.cdc_support import checksum, execute, loaded_pipeline, run_child

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROWS = 1_000_000
MAX_RSS_MB = 300


def test_million_row_transaction_bounded_memory(new_db) -> None:
    p = loaded_pipeline(
        new_db,
        [
            "CREATE TABLE public.big (id int PRIMARY KEY, v text, n bigint)",
            "INSERT INTO public.big VALUES (0, 'seed', 0)",
        ],
        ["public.big"],
        name="big",
    )
    execute(
        p.source,
        f"INSERT INTO public.big SELECT g, md5(g::text), g * 7 FROM generate_series(1, {ROWS}) g",
    )
    code, result, err = run_child(p, timeout=900)
    assert code == 0, err
    assert result is not None
    print(f"1M-row transaction: {result}")
    assert result["transactions"] == 1
    assert result["changes"] == ROWS
    assert result["peak_rss_mb"] < MAX_RSS_MB
    assert checksum(p.target, "public", "big") == checksum(p.source, "public", "big")

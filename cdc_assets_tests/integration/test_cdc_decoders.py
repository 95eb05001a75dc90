"""The CDC batch on each pgoutput decoder: the compiled twin (when built) and the pure reference.

``make test`` runs every CDC integration test on the compiled decoder and again with
``CDC_ASSETS_PURE_PYTHON=1``; this test runs both legs in one session, on a stream with every kind
of tuple value and message the fast paths see, and checks the batch says which decoder it used.
"""

import pytest

from cdc_assets.decoding import codec
from cdc_assets_tests.integration.cdc_support import execute, loaded_pipeline
from cdc_assets_tests.integration.test_cdc_apply import DDL, TABLES

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("pure", [False, True], ids=["compiled", "pure"])
def test_each_decoder_applies_the_stream_exactly_once(
    new_db, monkeypatch: pytest.MonkeyPatch, pure: bool
) -> None:
    if pure:
        monkeypatch.setenv(codec.PURE_ENV, "1")
    else:
        monkeypatch.delenv(codec.PURE_ENV, raising=False)
    p = loaded_pipeline(new_db, DDL, TABLES)
    execute(
        p.source,
        "INSERT INTO public.items VALUES (1001, E'tab\\there\\nnl \\\\ back', NULL, NULL,"
        " '\\x00ff', ARRAY['x', NULL], '{\"é\": [1, null]}')",
        "INSERT INTO public.items (id) SELECT g FROM generate_series(2000, 2300) g",
        "UPDATE public.items SET price = price + 1 WHERE id <= 150",
        "UPDATE public.items SET id = 5000 WHERE id = 5",
        "DELETE FROM public.items WHERE id BETWEEN 100 AND 120",
        "UPDATE public.docs SET n = n + 1",  # unchanged TOAST values in the new tuples
        "UPDATE public.nokey SET b = 'y' WHERE a = 1",  # old tuples (REPLICA IDENTITY FULL)
        "DELETE FROM public.nokey WHERE a = 2",
        "INSERT INTO public.\"Mixed Case\" VALUES (1, 'one')",
    )
    lines: list[str] = []
    r = p.batch(progress=lines.append)
    built = codec.compiled() is not None
    want = "decoder: compiled" if built and not pure else "decoder: pure Python"
    assert want in lines, lines
    assert (r.inserts, r.deletes) == (303, 22) and r.updates >= 170
    p.assert_equal()
    again = p.batch()
    assert again.changes == 0 and again.transactions == 0
    p.assert_equal()

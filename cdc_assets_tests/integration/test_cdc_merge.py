"""The set-based apply writes a chunk with one ``MERGE`` on PostgreSQL 15+ targets.

Deletes, full-row upserts and partial updates (unchanged TOAST) of one chunk go into one statement
that probes the key index, without a per-chunk ``ANALYZE`` of the stage; generated columns are
never written and a partial update of a key the target lacks does nothing, as before.
"""

from typing import Any

import psycopg
import pytest
from psycopg import sql

from cdc_assets.decoding.messages import UNCHANGED_TOAST
from cdc_assets.domain import TableRef
from cdc_assets.target.apply import TableApply
from cdc_assets.target.catalog import describe_table
from cdc_assets_tests.integration.cdc_support import execute

pytestmark = pytest.mark.integration

STATEMENTS: list[str] = []


class RecordingCursor(psycopg.Cursor[Any]):
    """A real cursor that also keeps the text of each statement it runs."""

    def execute(self, query: Any, params: Any = None, **kw: Any) -> Any:  # type: ignore[override]
        text = query.as_string(self.connection) if isinstance(query, sql.Composable) else query
        STATEMENTS.append(str(text))
        return super().execute(query, params, **kw)


def test_chunk_is_one_merge_with_the_old_semantics(new_db) -> None:
    url = new_db("tgt")
    execute(
        url,
        "CREATE TABLE public.t (id int PRIMARY KEY, body text, n int,"
        " g int GENERATED ALWAYS AS (n * 2) STORED)",
        "INSERT INTO public.t (id, body, n)"
        " SELECT g, 'body ' || g, 0 FROM generate_series(1, 2000) g",
    )
    STATEMENTS.clear()
    with psycopg.connect(url, cursor_factory=RecordingCursor) as conn:
        target = describe_table(conn, TableRef("public", "t"))
        assert target is not None
        ta = TableApply(
            conn,
            pipeline="p",
            target=target,
            columns=("id", "body", "n", "g"),
            key=("id",),
            upsert=True,
            stage_name="_cdc_stage_p_0",
            generated=frozenset({"g"}),
        )
        merge = conn.info.server_version >= 150000
        assert ta.merge is merge
        ta.delete((b"1", None, None, None))
        ta.insert((b"3000", b"new", b"5", b"999"))  # the source's g is staged, never written
        ta.update(None, None, (b"2", b"changed", b"7", b"999"))
        ta.update(None, None, (b"3", UNCHANGED_TOAST, b"9", b"999"))  # body stays the target's
        ta.update(None, None, (b"4000", UNCHANGED_TOAST, b"9", b"999"))  # no such row: nothing
        for i in range(10, 1100):  # a chunk past the old ANALYZE threshold (1,000 keys)
            ta.update(None, None, (str(i).encode(), b"bulk", b"1", b"999"))
        ta.flush()
        conn.commit()
    rows = dict.fromkeys(("MERGE", "ON CONFLICT", "ANALYZE", "UPDATE"), 0)
    for s in STATEMENTS:
        for word in rows:
            rows[word] += s.lstrip().startswith(word) or (word == "ON CONFLICT" and word in s)
    if merge:
        assert rows == {"MERGE": 1, "ON CONFLICT": 0, "ANALYZE": 0, "UPDATE": 0}, STATEMENTS
    with psycopg.connect(url) as conn:
        got = conn.execute(
            "SELECT id, body, n, g FROM public.t WHERE id IN (1, 2, 3, 10, 1099, 1100, 3000, 4000)"
            " ORDER BY id"
        ).fetchall()
    assert got == [
        (2, "changed", 7, 14),
        (3, "body 3", 9, 18),
        (10, "bulk", 1, 2),
        (1099, "bulk", 1, 2),
        (1100, "body 1100", 0, 0),
        (3000, "new", 5, 10),
    ]

"""Test data for the Dagster-shell tests: a small source table, a pipeline row, row/event reads."""

from typing import Any

import psycopg

from cdc_assets.domain import Mode, PipelineSpec, TableRef


def make_source(url: str, rows: int = 100, table: str = "orders") -> None:
    """A source table with ``rows`` rows (primary key, so CDC can use it too)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            psycopg.sql.SQL(
                "CREATE TABLE public.{} (id bigint PRIMARY KEY, note text NOT NULL)"
            ).format(psycopg.sql.Identifier(table))
        )
        conn.execute(
            psycopg.sql.SQL(
                "INSERT INTO public.{} SELECT g, repeat('x', 50) || g FROM generate_series(1, %s) g"
            ).format(psycopg.sql.Identifier(table)),
            (rows,),
        )


def spec(
    name: str,
    source: str,
    target: str,
    *,
    tables: tuple[str, ...] = ("public.orders",),
    mode: Mode = Mode.FULL_LOAD,
    enabled: bool = True,
) -> PipelineSpec:
    return PipelineSpec(
        name=name,
        source_url=source,
        target_url=target,
        tables=tuple(TableRef.parse(t) for t in tables),
        mode=mode,
        enabled=enabled,
    )


def count(url: str, table: str = "public.orders") -> int | None:
    """Rows in ``table`` on ``url``; None when the table does not exist."""
    ref = TableRef.parse(table)
    with psycopg.connect(url, autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass(%s)", (ref.display,)).fetchone()
        if not exists or exists[0] is None:
            return None
        row = conn.execute(
            psycopg.sql.SQL("SELECT count(*) FROM {}").format(
                psycopg.sql.Identifier(ref.schema, ref.name)
            )
        ).fetchone()
        return int(row[0]) if row else None


def events(repo: Any, name: str) -> list[tuple[str, str | None, str, str]]:
    """The pipeline's events oldest first as (phase, old, new, writer)."""
    return [
        (e.phase.value, e.old_status, e.new_status, e.writer.value)
        for e in reversed(repo.events(name, limit=100))
    ]

"""Helpers for the full-load tests: specs, settings, and comparing tables across databases."""

from typing import Any

import psycopg
from psycopg import sql

from cdc_assets.domain import Mode, PipelineSpec, TableRef
from cdc_assets.settings import Settings

SESSION = "-c TimeZone=UTC -c DateStyle=ISO,YMD -c IntervalStyle=postgres -c extra_float_digits=3"


def spec(
    name: str,
    source: str,
    target: str,
    *tables: str,
    mode: Mode = Mode.FULL_LOAD,
    target_schema: str = "public",
) -> PipelineSpec:
    return PipelineSpec(
        name=name,
        source_url=source,
        target_url=target,
        tables=tuple(TableRef.parse(t) for t in tables),
        target_schema=target_schema,
        mode=mode,
    )


def settings(**kw: Any) -> Settings:
    kw.setdefault("full_load_workers", 2)
    return Settings(**kw)


def execute(url: str, *statements: str | sql.Composable, params: Any = None) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for s in statements:
            conn.execute(s, params)  # type: ignore[arg-type]


def scalar(url: str, query: str | sql.Composable, params: Any = None) -> Any:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(query, params).fetchone()  # type: ignore[arg-type]
        return row[0] if row else None


def rows_as_text(url: str, table: TableRef, schema: str | None = None) -> list[str]:
    """Every row's text form, sorted: equal lists mean equal table contents."""
    ident = sql.Identifier(schema or table.schema, table.name)
    with psycopg.connect(url, autocommit=True, options=SESSION) as conn:
        rows = conn.execute(sql.SQL("SELECT t::text FROM {} t").format(ident)).fetchall()
    return sorted(r[0] for r in rows)


def stage_tables(url: str) -> list[str]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT relname FROM pg_class WHERE relname LIKE '\\_cdc\\_stage\\_%' ORDER BY 1"
        ).fetchall()
    return [r[0] for r in rows]

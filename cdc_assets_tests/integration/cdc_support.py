"""Helpers for the CDC tests: a loaded pipeline, batches, and order-independent table checksums."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from cdc_assets.domain import Mode, PipelineSpec, TableRef
from cdc_assets.engine.cdc import CdcBatchResult, run_cdc_batch
from cdc_assets.engine.full_load import run_full_load
from cdc_assets.settings import Settings

SESSION = "-c TimeZone=UTC -c DateStyle=ISO,YMD -c IntervalStyle=postgres -c extra_float_digits=3"


def execute(url: str, *statements: str | sql.Composable, params: Any = None) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for s in statements:
            conn.execute(s, params)  # type: ignore[arg-type]


def scalar(url: str, query: str | sql.Composable, params: Any = None) -> Any:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(query, params).fetchone()  # type: ignore[arg-type]
        return row[0] if row else None


def checksum(url: str, schema: str, name: str) -> tuple[int, str | None]:
    """(row count, order-independent hash of every row's text form)."""
    q = sql.SQL(
        "SELECT count(*), md5(string_agg(md5(t::text), '' ORDER BY md5(t::text))) FROM {} t"
    ).format(sql.Identifier(schema, name))
    with psycopg.connect(url, autocommit=True, options=SESSION) as conn:
        row = conn.execute(q).fetchone()
    assert row is not None
    return int(row[0]), row[1]


@dataclass
class Pipeline:
    """A full_load_and_cdc pipeline between two fresh databases, loaded and ready for batches."""

    spec: PipelineSpec
    source: str
    target: str
    settings: Settings

    def batch(self, progress: Callable[[str], None] | None = None, **kw: Any) -> CdcBatchResult:
        return run_cdc_batch(
            self.spec,
            source_url=self.source,
            target_url=self.target,
            settings=self.settings,
            progress=progress,
            **kw,
        )

    def assert_equal(self) -> None:
        for t in self.spec.tables:
            src = checksum(self.source, t.schema, t.name)
            dst = checksum(self.target, self.spec.target_schema, t.name)
            assert src == dst, f"{t}: source {src} != target {dst}"

    def slot_confirmed(self) -> str | None:
        return scalar(
            self.source,
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s",
            (self.spec.slot_name,),
        )


def loaded_pipeline(
    new_db: Callable[[str], str],
    ddl: list[str],
    tables: list[str],
    *,
    name: str = "p",
    settings: Settings | None = None,
    target_schema: str = "public",
) -> Pipeline:
    """Create source tables with ``ddl``, run the real full load, return the pipeline."""
    source = new_db("src")
    target = new_db("tgt")
    execute(source, *ddl)
    if target_schema != "public":
        execute(target, sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(target_schema)))
    spec = PipelineSpec(
        name=name,
        source_url=source,
        target_url=target,
        tables=tuple(TableRef.parse(t) for t in tables),
        target_schema=target_schema,
        mode=Mode.FULL_LOAD_AND_CDC,
    )
    settings = settings or Settings(full_load_workers=2)
    run_full_load(spec, source_url=source, target_url=target, settings=settings)
    return Pipeline(spec, source, target, settings)

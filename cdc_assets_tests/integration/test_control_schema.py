"""The control schema: migrations create every contract column, enum and the trigger; idempotent."""

import psycopg
import pytest

from cdc_assets.control.schema import VERSION_TABLE, head_revision, init_schema
from cdc_assets_tests.support import sqlalchemy_url

pytestmark = pytest.mark.integration

PIPELINE_COLUMNS = {
    # column: (data_type / udt_name, nullable)
    "id": ("bigint", "NO"),
    "name": ("text", "NO"),
    "source_url": ("text", "NO"),
    "target_url": ("text", "NO"),
    "tables": ("_text", "NO"),
    "target_schema": ("text", "NO"),
    "mode": ("text", "NO"),
    "enabled": ("boolean", "NO"),
    "full_load_status": ("full_load_status", "NO"),
    "full_load_started_at": ("timestamp with time zone", "YES"),
    "full_load_completed_at": ("timestamp with time zone", "YES"),
    "full_load_rows": ("bigint", "YES"),
    "cdc_status": ("cdc_status", "NO"),
    "cdc_lsn": ("text", "YES"),
    "cdc_lag_bytes": ("bigint", "YES"),
    "last_run_id": ("text", "YES"),
    "last_error": ("text", "YES"),
    "created_at": ("timestamp with time zone", "NO"),
    "updated_at": ("timestamp with time zone", "NO"),
    "full_load_run_id": ("text", "YES"),
    "full_load_run_created_at": ("timestamp with time zone", "YES"),
    "full_load_authority": ("text", "YES"),
    "cdc_run_id": ("text", "YES"),
    "cdc_run_created_at": ("timestamp with time zone", "YES"),
    "cdc_authority": ("text", "YES"),
    "cdc_progress_at": ("timestamp with time zone", "YES"),
    "cdc_lag_seconds": ("double precision", "YES"),
    "cdc_heartbeat_at": ("timestamp with time zone", "YES"),
    "asset_key_prefix": ("_text", "YES"),
}
EVENT_COLUMNS = {
    "id",
    "pipeline_id",
    "pipeline",
    "run_id",
    "phase",
    "old_status",
    "new_status",
    "writer",
    "message",
    "created_at",
}


def _columns(conn: psycopg.Connection, table: str) -> dict[str, tuple[str, str]]:
    rows = conn.execute(
        "SELECT column_name, CASE WHEN data_type IN ('USER-DEFINED', 'ARRAY') THEN udt_name "
        "ELSE data_type END, is_nullable FROM information_schema.columns "
        "WHERE table_schema = 'public' AND table_name = %s",
        (table,),
    ).fetchall()
    return {name: (kind, nullable) for name, kind, nullable in rows}


def _schema_fingerprint(conn: psycopg.Connection) -> list[tuple[object, ...]]:
    return conn.execute(
        "SELECT c.relname, c.relkind, a.attname, format_type(a.atttypid, a.atttypmod) "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 "
        "WHERE n.nspname = 'public' ORDER BY 1, 3"
    ).fetchall()


def test_init_schema_creates_contract_and_is_idempotent(new_db) -> None:
    url = new_db("schema")
    applied = init_schema(sqlalchemy_url(url))
    assert applied and applied[-1].startswith(f"applied migration {head_revision()}")

    with psycopg.connect(url) as conn:
        assert _columns(conn, "pipelines") == PIPELINE_COLUMNS
        assert set(_columns(conn, "pipeline_events")) == EVENT_COLUMNS
        labels = dict(
            conn.execute(
                "SELECT t.typname, array_agg(e.enumlabel::text ORDER BY e.enumsortorder) "
                "FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid "
                "WHERE t.typname IN ('full_load_status', 'cdc_status') GROUP BY t.typname"
            ).fetchall()
        )
        assert labels == {
            "full_load_status": ["NOT_STARTED", "IN_PROGRESS", "COMPLETED", "FAILED"],
            "cdc_status": ["NOT_STARTED", "ACTIVE", "FAILED", "STOPPED"],
        }
        triggers = conn.execute(
            "SELECT tgname FROM pg_trigger WHERE tgrelid = 'public.pipelines'::regclass "
            "AND NOT tgisinternal"
        ).fetchall()
        assert triggers == [("pipelines_set_updated_at",)]
        version = conn.execute(f"SELECT version_num FROM public.{VERSION_TABLE}").fetchall()
        assert version == [(head_revision(),)]
        before = _schema_fingerprint(conn)

    assert init_schema(sqlalchemy_url(url)) == []
    assert init_schema(url) == []  # plain postgresql:// is accepted too
    with psycopg.connect(url) as conn:
        assert _schema_fingerprint(conn) == before


@pytest.mark.parametrize(
    ("column_values", "constraint"),
    [
        ("'Bad', 'postgresql://h/d', 'postgresql://h/d', ARRAY['public.t']", "name_pattern"),
        ("'ok', 'postgresql://h/d', 'postgresql://h/d', ARRAY[]::text[]", "tables_not_empty"),
    ],
)
def test_check_constraints_reject_bad_rows(control_url, column_values, constraint) -> None:
    url = control_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url) as conn, pytest.raises(psycopg.errors.CheckViolation) as info:
        conn.execute(
            "INSERT INTO public.pipelines (name, source_url, target_url, tables) VALUES ("
            + column_values
            + ")"
        )
    assert constraint in str(info.value)


def test_mode_check_rejects_unknown_mode(control_url) -> None:
    url = control_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url) as conn, pytest.raises(psycopg.errors.CheckViolation):
        conn.execute(
            "INSERT INTO public.pipelines (name, source_url, target_url, tables, mode) "
            "VALUES ('p', 'x', 'y', ARRAY['public.t'], 'cdc_only')"
        )


def test_concurrent_init_schema_applies_once(new_db) -> None:
    from concurrent.futures import ThreadPoolExecutor

    url = sqlalchemy_url(new_db("schema"))
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: init_schema(url), range(4)))
    applied = [r for r in results if r]  # one call applied every revision, the others none
    assert len(applied) == 1 and applied[0][-1].startswith(f"applied migration {head_revision()}")

"""Clear failures: each names the pipeline, the table (where there is one) and the fix, never a
password, and leaves no slot, publication or stage behind."""

from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest

from cdc_assets.domain import Mode
from cdc_assets.embedded import free_port
from cdc_assets.engine.full_load import cleanup_full_load, run_full_load
from cdc_assets.errors import CdcError, ConfigError, ConnectError, SourceError, TargetError
from cdc_assets_tests.integration.full_load_support import (
    execute,
    scalar,
    settings,
    spec,
    stage_tables,
)

pytestmark = pytest.mark.integration

PASSWORD = "Sekr3t-pw-9931"


def with_login(url: str, user: str) -> str:
    parts = urlsplit(url)
    netloc = f"{user}:{PASSWORD}@{parts.hostname}:{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


@pytest.fixture
def loader(new_db) -> Iterator[tuple[str, str]]:
    """A source and a target database, reached as a non-superuser ``loader`` with a password."""
    src, dst = new_db("src"), new_db("dst")
    execute(
        src,
        "DO $$BEGIN CREATE ROLE loader LOGIN PASSWORD 'Sekr3t-pw-9931'; "
        "EXCEPTION WHEN duplicate_object THEN NULL; END$$",
    )
    execute(
        src,
        "CREATE TABLE ok_t (id int PRIMARY KEY, v text)",
        "INSERT INTO ok_t VALUES (1, 'a')",
        "CREATE TABLE secret_t (id int PRIMARY KEY)",
        "CREATE TABLE nokey (a int, b text)",
        "GRANT SELECT ON ok_t, nokey TO loader",
    )
    execute(dst, "GRANT CREATE ON SCHEMA public TO loader")
    yield with_login(src, "loader"), with_login(dst, "loader")


def assert_clear(exc: CdcError, *, pipeline: str, table: str | None, fix_words: str) -> None:
    text = str(exc)
    assert PASSWORD not in text and PASSWORD not in exc.for_row()
    assert f"pipeline {pipeline!r}" in text
    if table is not None:
        assert table in text
    assert "(fix: " in text and fix_words in text


def test_unknown_table(loader) -> None:
    src, dst = loader
    with pytest.raises(SourceError) as err:
        run_full_load(
            spec("unk", src, dst, "ok_t", '"No Such"'),
            source_url=src,
            target_url=dst,
            settings=settings(),
        )
    assert_clear(err.value, pipeline="unk", table='public."No Such"', fix_words="create the table")


def test_missing_select_privilege(loader) -> None:
    src, dst = loader
    with pytest.raises(SourceError) as err:
        run_full_load(
            spec("priv", src, dst, "secret_t"), source_url=src, target_url=dst, settings=settings()
        )
    assert_clear(err.value, pipeline="priv", table="public.secret_t", fix_words="GRANT SELECT")


def test_missing_replication_privilege_for_cdc(loader) -> None:
    src, dst = loader
    with pytest.raises(SourceError) as err:
        run_full_load(
            spec("norepl", src, dst, "ok_t", mode=Mode.FULL_LOAD_AND_CDC),
            source_url=src,
            target_url=dst,
            settings=settings(),
        )
    assert_clear(err.value, pipeline="norepl", table=None, fix_words="REPLICATION")
    assert "loader" in str(err.value)


def test_table_without_primary_key_in_cdc_pipeline(new_db) -> None:
    src, dst = new_db("src"), new_db("dst")
    execute(src, "CREATE TABLE nokey (a int, b text)", "INSERT INTO nokey VALUES (1, 'x')")
    p = spec("nopk", src, dst, "nokey", mode=Mode.FULL_LOAD_AND_CDC)
    with pytest.raises(SourceError) as err:
        run_full_load(p, source_url=src, target_url=dst, settings=settings())
    assert_clear(
        err.value, pipeline="nopk", table="public.nokey", fix_words="REPLICA IDENTITY FULL"
    )
    assert (
        scalar(src, "SELECT count(*) FROM pg_replication_slots WHERE database = current_database()")
        == 0
    )
    assert scalar(src, "SELECT count(*) FROM pg_publication") == 0
    # Allowed once its replica identity is FULL; and in full_load mode regardless.
    execute(src, "ALTER TABLE nokey REPLICA IDENTITY FULL")
    assert run_full_load(p, source_url=src, target_url=dst, settings=settings()).rows == 1
    execute(src, "ALTER TABLE nokey REPLICA IDENTITY DEFAULT")
    result = run_full_load(
        spec("nopk2", src, dst, "nokey"), source_url=src, target_url=dst, settings=settings()
    )
    assert result.rows == 1


def test_target_schema_missing(loader) -> None:
    src, dst = loader
    with pytest.raises(TargetError) as err:
        run_full_load(
            spec("noschema", src, dst, "ok_t", target_schema="Nowhere"),
            source_url=src,
            target_url=dst,
            settings=settings(),
        )
    assert_clear(err.value, pipeline="noschema", table=None, fix_words='CREATE SCHEMA "Nowhere"')


def test_connection_refused(loader) -> None:
    src, _ = loader
    dead = f"postgresql://loader:{PASSWORD}@127.0.0.1:{free_port()}/nothing"
    with pytest.raises(ConnectError) as err:
        run_full_load(
            spec("refused", src, dead, "ok_t"), source_url=src, target_url=dead, settings=settings()
        )
    assert_clear(err.value, pipeline="refused", table=None, fix_words="check the target host")


def test_cleanup_drops_only_this_pipelines_stages(new_db) -> None:
    dst = new_db("dst")
    execute(
        dst,
        "CREATE TABLE _cdc_stage_a_0 (x int)",
        "CREATE TABLE _cdc_stage_a_12 (x int)",
        "CREATE TABLE _cdc_stage_a_b_0 (x int)",  # pipeline a_b's, not a's
        "CREATE TABLE _cdc_stage_ab_0 (x int)",
    )
    dropped = cleanup_full_load(spec("a", dst, dst, "t"), source_url=dst, target_url=dst)
    assert dropped == ["public._cdc_stage_a_0", "public._cdc_stage_a_12"]
    assert stage_tables(dst) == ["_cdc_stage_a_b_0", "_cdc_stage_ab_0"]


def test_cdc_needs_wal_level_logical(wal_replica_server: str) -> None:
    url = wal_replica_server
    execute(url, "CREATE TABLE IF NOT EXISTS t (id int PRIMARY KEY)")
    execute(url, "CREATE SCHEMA IF NOT EXISTS copy")
    with pytest.raises(SourceError) as err:
        run_full_load(
            spec("walrep", url, url, "t", mode=Mode.FULL_LOAD_AND_CDC, target_schema="copy"),
            source_url=url,
            target_url=url,
            settings=settings(),
        )
    assert_clear(err.value, pipeline="walrep", table=None, fix_words="wal_level = logical")
    assert "wal_level=replica" in str(err.value)
    # The same server still does plain full loads.
    result = run_full_load(
        spec("walrep", url, url, "t", target_schema="copy"),
        source_url=url,
        target_url=url,
        settings=settings(),
    )
    assert result.rows == 0 and result.consistent_lsn is None


def test_refuses_to_load_a_table_over_itself(new_db) -> None:
    db = new_db("same")
    execute(db, "CREATE TABLE keep_me (id int PRIMARY KEY)", "INSERT INTO keep_me VALUES (1)")
    with pytest.raises(ConfigError) as err:
        run_full_load(
            spec("self", db, db, "keep_me"), source_url=db, target_url=db, settings=settings()
        )
    assert_clear(err.value, pipeline="self", table="public.keep_me", fix_words="target_schema")
    assert scalar(db, "SELECT count(*) FROM keep_me") == 1


def test_refuses_a_table_listed_twice(new_db) -> None:
    src, dst = new_db("src"), new_db("dst")
    execute(src, "CREATE TABLE twice (id int PRIMARY KEY)")
    with pytest.raises(ConfigError) as err:
        run_full_load(
            spec("twice", src, dst, "twice", "public.twice"),
            source_url=src,
            target_url=dst,
            settings=settings(),
        )
    assert_clear(err.value, pipeline="twice", table="public.twice", fix_words="once")


@pytest.mark.parametrize("mode", [Mode.FULL_LOAD, Mode.FULL_LOAD_AND_CDC])
@pytest.mark.parametrize(
    "ddl",
    [
        "ALTER TABLE public.b ALTER COLUMN n TYPE bigint",
        "ALTER TABLE public.b ADD COLUMN token uuid DEFAULT gen_random_uuid()",
        "TRUNCATE public.b",
    ],
)
def test_table_rewritten_after_the_snapshot_fails_instead_of_copying_nothing(
    new_db, mode: Mode, ddl: str
) -> None:
    """A rewrite committed after the snapshot makes the table look empty to it (PostgreSQL's
    MVCC caveat for rewriting DDL): the copy would be silently short. It must fail instead."""
    import threading

    import psycopg

    from cdc_assets_tests.support import wait_until

    src, dst = new_db("src"), new_db("dst")
    execute(
        src,
        "CREATE TABLE public.a (id int PRIMARY KEY)",
        "INSERT INTO public.a SELECT generate_series(1, 5000)",
        "CREATE TABLE public.b (id int PRIMARY KEY, n int)",
        "INSERT INTO public.b SELECT g, g FROM generate_series(1, 100) g",
        "ANALYZE",
    )
    p = spec("rewrite", src, dst, "public.a", "public.b", mode=mode)
    outcome: dict[str, BaseException | None] = {}

    def load() -> None:
        try:
            run_full_load(p, source_url=src, target_url=dst, settings=settings(full_load_workers=1))
            outcome["error"] = None
        except BaseException as exc:
            outcome["error"] = exc

    # One worker copies the bigger table first: holding it keeps the snapshot taken and b unread.
    with psycopg.connect(src) as holder:
        holder.execute("LOCK TABLE public.a IN ACCESS EXCLUSIVE MODE")
        thread = threading.Thread(target=load)
        thread.start()
        wait_until(
            lambda: scalar(
                src,
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND application_name = 'cdc_assets:rewrite'",
            ),
            timeout=30,
            describe="the worker to wait for table a inside the snapshot",
        )
        execute(src, "SET lock_timeout = '10s'", ddl)  # b is not locked by the load yet
        holder.rollback()
    thread.join(timeout=60)
    error = outcome["error"]
    assert isinstance(error, SourceError), error
    text = error.for_row()
    assert "'rewrite'" in text and "public.b" in text and "rewritten or truncated" in text
    assert "re-run the full load" in text
    assert stage_tables(dst) == []
    assert scalar(dst, "SELECT to_regclass('public.b') IS NULL")  # nothing swapped in
    # The slot this attempt created is dropped with it: left behind, it would hold WAL.
    slots = scalar(
        src, "SELECT count(*) FROM pg_replication_slots WHERE database = current_database()"
    )
    assert slots == 0

"""Hostile and bad inputs, table-driven: each ends in a clear, secret-free error on the row or the
CLI (never a traceback), and one bad row breaks neither ``pipeline list``, the sensors nor other
pipelines.

* Identifiers full of quotes, semicolons, SQL and unicode are real source tables that load and
  stream: they reach SQL only as quoted identifiers (the sentinel table ``y`` survives).
* Connection references that are wrong in every way fail the run at resource set-up; the failure
  sensor's path (the reconciler here) writes FAILED with a reason that names the problem.
* Rows inserted by hand with values ``pipeline add`` would refuse: the CHECKs block some; the rest
  load as rows with a ``config_error`` and fail their own run only.
"""

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime

import dagster as dg
import psycopg
import pytest
from dagster import instance_for_test
from psycopg import sql

from cdc_assets.cli import main
from cdc_assets.control.repository import PipelineRepository
from cdc_assets.definitions import build_defs
from cdc_assets.defs.catalog import catalog_from_rows
from cdc_assets.defs.reconciler import reconcile
from cdc_assets.defs.sensors import launch_full_load_requests
from cdc_assets.defs.supervisor import supervise
from cdc_assets.domain import CdcStatus, FullLoadStatus, Mode, Phase, PipelineSpec, TableRef
from cdc_assets.embedded import free_port
from cdc_assets.engine.cdc import run_cdc_batch
from cdc_assets.engine.full_load import run_full_load
from cdc_assets.errors import ConfigError
from cdc_assets.ops_cli import execute_pipeline
from cdc_assets.settings import Settings
from cdc_assets_tests.e2e.pipelines import make_source
from cdc_assets_tests.faults.checks import password_cluster, with_password
from cdc_assets_tests.integration.cdc_support import checksum, execute
from cdc_assets_tests.support import sqlalchemy_url, with_database

pytestmark = pytest.mark.integration

PASSWORD = "Hostile-pw-7781"
RIGHT_PASSWORD = "Right-pw-4412"


def _plain(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def assert_clean(text: str) -> None:
    assert PASSWORD not in text and RIGHT_PASSWORD not in text, text
    assert "Traceback" not in text and 'File "' not in text, text


# -- 1. hostile identifiers are real tables that load and stream ---------------------------------

HOSTILE_IDENTIFIERS = [
    ("public", 'x"; DROP TABLE y; --'),
    ("public", "'; DROP TABLE y; --"),
    ("public", "Robert'); DROP TABLE y;--"),
    ("public", "select"),
    ("public", "Order Items"),
    ("public", "MiXeD"),
    ("public", "ünïcødé_表"),
    ("public", "🐘 elephant"),
    ("public", "a$b\\c"),
    ("public", "l" * 63),
    ("s; DROP SCHEMA public CASCADE; --", "t"),
    ('we"ird', 'ta"ble'),
]


@pytest.mark.parametrize("schema,name", HOSTILE_IDENTIFIERS, ids=range(len(HOSTILE_IDENTIFIERS)))
def test_hostile_identifier_loads_and_streams(
    capsys, control_url, new_db, pg_wal_logical, schema: str, name: str
) -> None:
    src, dst = new_db("src"), new_db("dst")
    ident = sql.Identifier(schema, name)
    for url in (src, dst):
        execute(url, "CREATE TABLE public.y (id int)", "INSERT INTO public.y VALUES (1)")
    if schema != "public":
        execute(src, sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    execute(
        src,
        sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, {} text)").format(
            ident, sql.Identifier(name[:40] + "'col")
        ),
        sql.SQL("INSERT INTO {} SELECT g, 'v' || g FROM generate_series(1, 50) g").format(ident),
    )
    table_text = TableRef(schema, name).display
    code = main(
        [
            "--control-db-url", control_url, "pipeline", "add", "hostile",
            "--source", src, "--target", dst, "--table", table_text, "--disabled",
        ]
    )  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    row = PipelineRepository.from_url(control_url).get("hostile")
    assert row.tables == (TableRef(schema, name),) and row.config_error is None

    spec = row.spec
    run_full_load(spec, source_url=src, target_url=dst, settings=Settings(full_load_workers=2))
    execute(src, sql.SQL("UPDATE {} SET id = id + 1000 WHERE id <= 5").format(ident))
    run_cdc_batch(spec, source_url=src, target_url=dst, settings=Settings())

    assert checksum(src, schema, name) == checksum(dst, "public", name)
    for url in (src, dst):
        with psycopg.connect(url, autocommit=True) as conn:
            assert conn.execute("SELECT count(*) FROM public.y").fetchone() == (1,)
    with psycopg.connect(src, autocommit=True) as conn:
        assert conn.execute("SELECT to_regnamespace('public') IS NOT NULL").fetchone() == (True,)

    code = main(["--control-db-url", control_url, "pipeline", "list"])
    out, _ = capsys.readouterr()
    assert code == 0 and "hostile" in out


# -- shared Dagster fixtures for the run-path cases ------------------------------------------------


@pytest.fixture(scope="module")
def instance() -> Iterator[dg.DagsterInstance]:
    with instance_for_test() as inst:
        yield inst


@pytest.fixture(scope="module")
def module_control(pg_admin_url: str) -> Iterator[str]:
    from cdc_assets.control.schema import init_schema
    from cdc_assets_tests.support import temp_database

    with temp_database(pg_admin_url, "ctlh") as url:
        init_schema(sqlalchemy_url(url))
        yield sqlalchemy_url(url)


@pytest.fixture(scope="module")
def shop(pg_admin_url: str) -> Iterator[tuple[str, str]]:
    """A good source (orders) and target shared by the run-path cases."""
    from cdc_assets_tests.support import temp_database

    with temp_database(pg_admin_url, "hsrc") as src, temp_database(pg_admin_url, "hdst") as dst:
        make_source(src, rows=20)
        yield src, dst


@pytest.fixture(scope="module")
def scram() -> Iterator[str]:
    """A cluster that checks passwords; role ``app`` has RIGHT_PASSWORD."""
    with password_cluster() as admin:
        execute(admin, f"CREATE ROLE app LOGIN PASSWORD '{RIGHT_PASSWORD}'")
        yield admin


@pytest.fixture
def repo(module_control: str, monkeypatch: pytest.MonkeyPatch) -> PipelineRepository:
    monkeypatch.setenv("CDC_CONTROL_DB_URL", module_control)
    return PipelineRepository.from_url(module_control)


def insert_row(control_url: str, name: str, **values: object) -> None:
    """A row written with plain SQL, as design.md allows: nothing validates it on the way in."""
    cols = {"name": name, "tables": ["public.orders"], "mode": "full_load", "enabled": False}
    cols.update(values)
    with psycopg.connect(_plain(control_url), autocommit=True) as conn:
        conn.execute(
            sql.SQL("INSERT INTO public.pipelines ({}) VALUES ({})").format(
                sql.SQL(", ").join(map(sql.Identifier, cols)),
                sql.SQL(", ").join(sql.Placeholder() * len(cols)),
            ),
            list(cols.values()),
        )


def run_and_reconcile(instance: dg.DagsterInstance, repo: PipelineRepository, name: str) -> str:
    """One full-load run as ``cdc-assets run`` does it; the row's ``last_error`` afterwards."""
    result = execute_pipeline(instance, name, Phase.FULL_LOAD, defs=build_defs(Settings()))
    reconcile(instance, repo, [name])
    row = repo.get(name)
    assert not result.success
    assert row.full_load_status is FullLoadStatus.FAILED
    assert row.full_load_run_id == result.dagster_run.run_id
    assert row.last_error
    return row.last_error


# -- 2. connection references wrong in every way ---------------------------------------------------

DEAD_PORT = free_port()
BAD_REFERENCES = [
    # (id, source, target, words the row's error must contain); "{src}"/"{dst}" = good URLs
    ("bad_host", f"postgresql://u:{PASSWORD}@no-such-host.invalid:5432/db", "{dst}",
     "cannot connect to source"),
    ("closed_port", f"postgresql://u:{PASSWORD}@127.0.0.1:{DEAD_PORT}/db", "{dst}",
     "cannot connect to source"),
    ("port_out_of_range", f"postgresql://u:{PASSWORD}@127.0.0.1:99999/db", "{dst}",
     "invalid port"),
    ("missing_database", "{src_nodb}", "{dst}", "does not exist"),
    ("unknown_role", "{src_norole}", "{dst}", "does not exist"),
    ("wrong_password", "{scram_wrong}", "{dst}", "password authentication failed"),
    ("target_unreachable", "{src}", f"postgresql://u:{PASSWORD}@127.0.0.1:{DEAD_PORT}/db",
     "cannot connect to target"),
    ("missing_env_var", "env:CDC_CONN_NOT_SET_ANYWHERE", "{dst}",
     "CDC_CONN_NOT_SET_ANYWHERE is not set"),
    ("env_var_garbage", "env:CDC_CONN_HOSTILE_GARBAGE", "{dst}", "CDC_CONN_HOSTILE_GARBAGE"),
    ("env_var_chain", "env:CDC_CONN_HOSTILE_CHAIN", "{dst}", "another env: reference"),
    ("scheme_mysql", f"mysql://u:{PASSWORD}@h/db", "{dst}", "postgresql://"),
    ("whitespace", f"postgresql://u:{PASSWORD}@h/d b", "{dst}", "whitespace"),
    ("bad_env_name", "env:1BAD", "{dst}", "invalid environment variable name"),
]  # fmt: skip


@pytest.mark.parametrize(
    "source,target,words", [c[1:] for c in BAD_REFERENCES], ids=[c[0] for c in BAD_REFERENCES]
)
def test_bad_reference_fails_the_run_with_a_clear_row_error(
    instance, repo, module_control, shop, scram, monkeypatch, capsys, source, target, words
) -> None:
    src, dst = shop
    monkeypatch.setenv("CDC_CONN_HOSTILE_GARBAGE", f"not a url {PASSWORD}")
    monkeypatch.setenv("CDC_CONN_HOSTILE_CHAIN", "env:CDC_CONN_OTHER")
    fill = {
        "src": src,
        "dst": dst,
        "src_nodb": with_database(src, "no_such_database_x"),
        "src_norole": src.replace("postgres@", "no_such_role@"),
        "scram_wrong": with_password(with_database(scram, "postgres"), "app", PASSWORD),
    }
    name = "ref_" + str(abs(hash((source, target))) % 10**8)
    insert_row(
        module_control,
        name,
        source_url=source.format(**fill),
        target_url=target.format(**fill),
    )
    error = run_and_reconcile(instance, repo, name)
    assert words in error, error
    assert f"pipeline {name!r}" in error or name in error
    assert_clean(error)
    for event in repo.events(name):
        assert_clean(event.message or "")
    capsys.readouterr()  # Dagster's own run log (stderr) is not the CLI's output
    assert main(["--control-db-url", module_control, "pipeline", "show", name]) == 0
    out, err = capsys.readouterr()
    assert "FAILED" in out and err == ""
    assert_clean(out + err)


# -- 3. rows inserted by hand ----------------------------------------------------------------------

BAD_ROWS = [
    # (id, column values, words in the row's error after its run)
    ("three_part_table", {"tables": ["a.b.c"]}, "use schema.table"),
    ("unterminated_quote", {"tables": ['"unterminated']}, "unterminated quoted identifier"),
    ("sql_in_table", {"tables": ["x; DROP TABLE y"]}, "invalid table name 'x; DROP TABLE y'"),
    ("empty_table_text", {"tables": [""]}, "invalid table name"),
    ("lone_quote", {"tables": ['"']}, "invalid table name"),
    ("trailing_dot", {"tables": ["public."]}, "empty identifier"),
    ("long_identifier", {"tables": ["t" * 64]}, "longer than 63 bytes"),
    ("one_bad_of_two", {"tables": ["public.orders", "a b"]}, "invalid table name"),
    ("duplicate_table", {"tables": ["public.orders", "ORDERS"]}, "listed twice"),
    (
        "two_tables_one_target",
        {"tables": ["public.orders", "other.ORDERS"]},
        "tables public.orders and other.orders would both land on the same target table",
    ),
    ("unknown_table", {"tables": ["public.no_such_table"]}, "no_such_table"),
    ("empty_target_schema", {"target_schema": ""}, "target_schema is empty"),
    ("hostile_target_schema", {"target_schema": 'x"; DROP TABLE y; --'}, "does not exist"),
]


@pytest.mark.parametrize("values,words", [c[1:] for c in BAD_ROWS], ids=[c[0] for c in BAD_ROWS])
def test_hand_written_bad_row_fails_only_its_own_run(
    instance, repo, module_control, shop, capsys, values, words
) -> None:
    src, dst = shop
    name = "row_" + str(abs(hash(repr(values))) % 10**8)
    insert_row(module_control, name, source_url=src, target_url=dst, **values)

    # Reading every row still works: list, show, the sensors' queries.
    assert main(["--control-db-url", module_control, "pipeline", "list"]) == 0
    assert main(["--control-db-url", module_control, "pipeline", "show", name]) == 0
    out, err = capsys.readouterr()
    assert name in out and err == ""
    assert_clean(out)

    if repo.get(name).config_error is None:  # a row of the right shape: its run says why
        error = run_and_reconcile(instance, repo, name)
    else:  # no assets can be built for it: `cdc-assets run` and the launch sensor refuse it
        error = refused_row_error(instance, repo, name)
    assert words in error, error
    assert_clean(error)


def refused_row_error(instance: dg.DagsterInstance, repo: PipelineRepository, name: str) -> str:
    """A row no assets can be built for: no run at all, ``FAILED`` with the reason and the fix."""
    with pytest.raises(ConfigError) as raised:
        execute_pipeline(instance, name, Phase.FULL_LOAD, defs=build_defs(Settings()))
    assert name in str(raised.value.for_row())
    repo.set_enabled(name, True)  # the launch sensor only acts on enabled rows
    rows = repo.list()
    result = launch_full_load_requests(
        instance, rows, Settings(), catalog_from_rows(rows), repo=repo
    )
    assert name not in {r.tags["cdc/pipeline"] for r in result.run_requests or []}
    row = repo.get(name)
    assert (row.full_load_status, row.full_load_run_id) == (FullLoadStatus.FAILED, None)
    assert row.last_error and f"pipeline reset {name}" in row.last_error
    return row.last_error


CHECKED_ROWS = [
    ("bad_mode", {"mode": "cdc_only"}, "ck_pipelines_mode"),
    ("bad_name_sql", {"name": 'x"; DROP TABLE y; --'}, "ck_pipelines_name_pattern"),
    ("bad_name_unicode", {"name": "ünï"}, "ck_pipelines_name_pattern"),
    ("bad_name_long", {"name": "n" * 49}, "ck_pipelines_name_pattern"),
    ("no_tables", {"tables": []}, "ck_pipelines_tables_not_empty"),
    ("bad_authority", {"full_load_authority": "me"}, "ck_pipelines_full_load_authority"),
]


@pytest.mark.parametrize(
    "values,constraint", [c[1:] for c in CHECKED_ROWS], ids=[c[0] for c in CHECKED_ROWS]
)
def test_check_constraints_block_what_no_run_could_survive(
    module_control, values, constraint
) -> None:
    values = {"name": "checked", "source_url": "env:A", "target_url": "env:B", **values}
    name = values.pop("name")
    with pytest.raises(psycopg.errors.CheckViolation) as err:
        insert_row(module_control, name, **values)
    assert constraint in str(err.value)


def test_one_bad_row_breaks_no_sensor_and_no_other_pipeline(
    instance, repo, module_control, shop, capsys
) -> None:
    src, dst = shop
    insert_row(module_control, "zz_bad", source_url=src, target_url=dst, tables=["a.b.c"],
               mode="full_load_and_cdc", enabled=True)  # fmt: skip
    insert_row(module_control, "zz_bad_url", source_url="mysql://x/y", target_url=dst,
               enabled=True)  # fmt: skip
    repo.add(
        PipelineSpec(
            name="zz_good",
            source_url=src,
            target_url=dst,
            tables=(TableRef.parse("public.orders"),),
            target_schema="public",
            mode=Mode.FULL_LOAD,
        )
    )
    rows = repo.list()
    assert {"zz_bad", "zz_bad_url", "zz_good"} <= {r.name for r in rows}
    bad = next(r for r in rows if r.name == "zz_bad")
    assert bad.config_error and "schema.table" in bad.config_error

    # The launch sensor launches every enabled NOT_STARTED row with assets; a row no assets can
    # be built for (a bad table name) is set FAILED with the reason instead of waiting silently.
    result = launch_full_load_requests(
        instance, rows, Settings(), catalog_from_rows(rows), repo=repo
    )
    launched = {r.tags["cdc/pipeline"] for r in result.run_requests or []}
    assert {"zz_bad_url", "zz_good"} <= launched and "zz_bad" not in launched
    refused = repo.get("zz_bad")
    assert refused.full_load_status is FullLoadStatus.FAILED and refused.last_error
    assert "schema.table" in refused.last_error and "pipeline reset zz_bad" in refused.last_error
    # The stream supervisor reads no spec: a bad streaming row still gets its stream run, whose
    # op fails with the row's reason (below, execute_pipeline raises the same ConfigError), and
    # the good rows beside it are supervised as usual.
    streaming = dataclasses.replace(
        bad, full_load_status=FullLoadStatus.COMPLETED, cdc_status=CdcStatus.ACTIVE
    )
    log = _ListLog()
    tick = supervise(
        instance, repo, [streaming], Settings(), now=datetime.now(UTC), check_heartbeats=True,
        log=log,
    )  # fmt: skip
    assert [r.tags["cdc/pipeline"] for r in tick.requests] == ["zz_bad"]
    assert tick.requests[0].tags["cdc/stream"] == "true"

    good = execute_pipeline(instance, "zz_good", Phase.FULL_LOAD, defs=build_defs(Settings()))
    assert good.success
    assert repo.get("zz_good").full_load_status is FullLoadStatus.COMPLETED
    with pytest.raises(ConfigError, match=r"schema\.table"):
        execute_pipeline(instance, "zz_bad", Phase.FULL_LOAD, defs=build_defs(Settings()))
    assert "postgresql://" in run_and_reconcile(instance, repo, "zz_bad_url")

    capsys.readouterr()  # Dagster's own run log (stderr) is not the CLI's output
    assert main(["--control-db-url", module_control, "pipeline", "list"]) == 0
    out, err = capsys.readouterr()
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert "COMPLETED" in lines["zz_good"]
    assert "FAILED" in lines["zz_bad"] and "FAILED" in lines["zz_bad_url"]
    assert err == ""


class _ListLog:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def __getattr__(self, _name: str):  # type: ignore[no-untyped-def]
        return lambda msg, *a, **k: self.lines.append(str(msg))


# -- 4. CLI: hostile arguments are refused before anything is written ------------------------------

HOSTILE_ADD = [
    (['x"; DROP TABLE y; --', "--table", "t"], "NAME"),
    (["ünï", "--table", "t"], "NAME"),
    (["p;select", "--table", "t"], "NAME"),
    (["p", "--table", "x; DROP TABLE y"], "--table"),
    (["p", "--table", "public.t; --"], "--table"),
    (["p", "--table", "'quoted'"], "--table"),
    (["p", "--table", "t", "--target-schema", 'x"; DROP TABLE y; --'], "--target-schema"),
]


@pytest.mark.parametrize("argv,field", HOSTILE_ADD, ids=range(len(HOSTILE_ADD)))
def test_cli_refuses_hostile_arguments(capsys, module_control, argv, field) -> None:
    before = len(PipelineRepository.from_url(module_control).list())
    code = main(
        [
            "--control-db-url", module_control, "pipeline", "add", argv[0],
            "--source", f"postgresql://u:{PASSWORD}@h/db", "--target", "env:T", *argv[1:],
        ]
    )  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert field in err and err.count("\n") == 1
    assert_clean(out + err)
    assert len(PipelineRepository.from_url(module_control).list()) == before

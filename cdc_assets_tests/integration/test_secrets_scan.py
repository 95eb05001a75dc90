"""Secrets scan: known passwords go through succeeding and failing runs, then every place an
operator or a log shipper can read is searched for them.

Passwords: the source/target role's (a SCRAM cluster that checks it), a wrong one tried against
it, and one in the control DB URL (the session server trusts local logins, so the password is
accepted and ignored there, which is exactly the case where it would leak unnoticed).

Scanned: every file under DAGSTER_HOME (run and event storage, compute logs), every event of every
run (messages, serialized events: metadata, errors, tags), run tags, Python log records and
captured stdout/stderr, ``public.pipelines`` (but its URL columns, which hold what the user typed)
and ``public.pipeline_events``, the CLI's output, and the text of every exception raised.
"""

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from dagster import instance_for_test
from dagster._serdes import serialize_value

from cdc_assets.cli import main
from cdc_assets.control.repository import PipelineRepository
from cdc_assets.control.schema import init_schema
from cdc_assets.definitions import build_defs
from cdc_assets.defs.reconciler import reconcile
from cdc_assets.domain import CdcStatus, FullLoadStatus, Mode, Phase, PipelineSpec, TableRef
from cdc_assets.engine.full_load import run_full_load
from cdc_assets.errors import CdcError
from cdc_assets.ops_cli import execute_pipeline
from cdc_assets.settings import Settings
from cdc_assets_tests.faults.checks import password_cluster, with_password
from cdc_assets_tests.integration.cdc_support import execute
from cdc_assets_tests.support import create_database, sqlalchemy_url

pytestmark = pytest.mark.integration

ROLE_PW = "Kn0wn-Role-pw-5521"
WRONG_PW = "Wr0ng-Guess-pw-8830"
CONTROL_PW = "Ctl-Db-pw-1937"
SECRETS = (ROLE_PW, WRONG_PW, CONTROL_PW)


def found(text: str | bytes) -> list[str]:
    data = text if isinstance(text, bytes) else text.encode(errors="replace")
    return [s for s in SECRETS if s.encode() in data]


@pytest.fixture(scope="module")
def scram_dbs() -> Iterator[tuple[str, str]]:
    """Source and target databases on a password-checking cluster, as role ``app``."""
    with password_cluster() as admin:
        execute(admin, f"CREATE ROLE app LOGIN REPLICATION PASSWORD '{ROLE_PW}'")
        urls = []
        for prefix in ("src", "dst"):
            url = create_database(admin, prefix)
            execute(url, "GRANT CREATE ON SCHEMA public TO app", "GRANT CREATE ON DATABASE "
                    + url.rsplit("/", 1)[1] + " TO app")  # fmt: skip
            urls.append(url)
        src, dst = urls
        execute(
            src,
            "CREATE TABLE public.orders (id bigint PRIMARY KEY, note text)",
            "INSERT INTO public.orders SELECT g, 'n' || g FROM generate_series(1, 200) g",
            # CREATE PUBLICATION ... FOR TABLE needs ownership (docs/security.md).
            "ALTER TABLE public.orders OWNER TO app",
        )
        yield with_password(src, "app", ROLE_PW), with_password(dst, "app", ROLE_PW)


def test_no_password_anywhere(
    scram_dbs, pg_admin_url, caplog, capfd, monkeypatch, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG)
    src, dst = scram_dbs
    ctl_plain = create_database(pg_admin_url, "ctls")
    control_url = sqlalchemy_url(with_password(ctl_plain, "postgres", CONTROL_PW))
    init_schema(control_url)
    monkeypatch.setenv("CDC_CONTROL_DB_URL", control_url)
    monkeypatch.setenv("CDC_CONN_SECRET_SRC", src)
    repo = PipelineRepository.from_url(control_url)
    errors: list[str] = []
    assert found(src) == [ROLE_PW] and found(control_url) == [CONTROL_PW]  # the scanner sees them

    def add(name: str, source: str, target: str, *tables: str, mode: Mode = Mode.FULL_LOAD) -> None:
        repo.add(
            PipelineSpec(
                name=name,
                source_url=source,
                target_url=target,
                tables=tuple(TableRef.parse(t) for t in tables),
                mode=mode,
            )
        )

    add("ok_direct", src, dst, "public.orders", mode=Mode.FULL_LOAD_AND_CDC)
    add("ok_env", "env:CDC_CONN_SECRET_SRC", dst, "public.orders")
    add("op_fails", src, dst, "public.orders", "public.no_such_table")
    add("wrong_pw", with_password(src.replace(ROLE_PW, "x"), "app", WRONG_PW), dst, "public.orders")
    add("bad_target", src, with_password(dst, "app", WRONG_PW), "public.orders")

    try:
        with instance_for_test() as instance:
            defs = build_defs(Settings())
            outcome = {}
            for name in ("ok_direct", "ok_env", "op_fails", "wrong_pw", "bad_target"):
                result = execute_pipeline(instance, name, Phase.FULL_LOAD, defs=defs)
                outcome[name] = result.success
            # CDC: one good batch, then a failing one (a dropped source column).
            execute(src, "INSERT INTO public.orders VALUES (1000, 'new')")
            assert execute_pipeline(instance, "ok_direct", Phase.CDC, defs=defs).success
            reconcile(instance, repo)
            assert outcome == {
                "ok_direct": True,
                "ok_env": True,
                "op_fails": False,
                "wrong_pw": False,
                "bad_target": False,
            }
            rows = {r.name: r for r in repo.list()}
            assert rows["ok_direct"].cdc_status is CdcStatus.ACTIVE
            assert rows["wrong_pw"].full_load_status is FullLoadStatus.FAILED
            assert "password authentication failed" in (rows["wrong_pw"].last_error or "")

            # The CLI, including `cdc-assets run` of a failing pipeline.
            capfd.readouterr()
            for argv in (
                ["pipeline", "list"],
                *(["pipeline", "show", n] for n in rows),
                ["run", "wrong_pw"],
                ["run", "op_fails"],
                ["reconcile"],
                ["pipeline", "add", "cli_bad", "--source", src, "--target", dst,
                 "--table", "x;y"],
            ):  # fmt: skip
                main(argv)
            cli_out, cli_err = capfd.readouterr()
            assert "password authentication failed" in cli_err
            assert found(cli_out + cli_err) == [], "CLI output"

            # Dagster: every event of every run, serialized (metadata, errors, tags), run tags.
            run_records = instance.get_run_records()
            assert len(run_records) >= 8
            for record in run_records:
                run = record.dagster_run
                assert found(serialize_value(run.tags)) == [], f"tags of {run.run_id}"
                for entry in instance.all_logs(run.run_id):
                    assert found(serialize_value(entry)) == [], f"event {entry.message!r}"
            # ... and every byte Dagster stored on disk (sqlite storage, compute logs).
            home = Path(instance.root_directory)
            scanned = 0
            for path in home.rglob("*"):
                if path.is_file():
                    scanned += 1
                    assert found(path.read_bytes()) == [], f"stored in {path}"
            assert scanned > 3
    except CdcError as exc:  # pragma: no cover - an unexpected raise is scanned, then re-raised
        errors.append(str(exc))
        raise
    finally:
        # Exceptions: the typed errors the engine raises for the same failures.
        for source, target in ((src.replace(ROLE_PW, WRONG_PW), dst), (src, dst)):
            try:
                run_full_load(
                    PipelineSpec("exc_scan", source, target, (TableRef("public", "nope"),)),
                    source_url=source,
                    target_url=target,
                    settings=Settings(full_load_workers=2),
                )
            except CdcError as exc:
                errors.append(str(exc))
                errors.append(exc.for_row())
                errors.append(repr(exc))
        assert len(errors) >= 6
        for text in errors:
            assert found(text) == [], text

    # The control tables: last_error, events, guard columns (URL columns hold the user's input).
    with psycopg.connect(ctl_plain, autocommit=True) as conn:
        cells = conn.execute(
            "SELECT row_to_json(p)::text FROM (SELECT name, tables, target_schema, mode, "
            "full_load_status, full_load_run_id, cdc_status, cdc_lsn, last_run_id, last_error "
            "FROM public.pipelines) p UNION ALL "
            "SELECT row_to_json(e)::text FROM public.pipeline_events e"
        ).fetchall()
    assert len(cells) > 10
    for (cell,) in cells:
        assert found(cell) == [], cell

    # Python logging, and whatever reached the process's stdout/stderr.
    for rec in caplog.records:
        assert found(rec.getMessage()) == [], rec.getMessage()
        if rec.exc_info:
            assert found(logging.Formatter().formatException(rec.exc_info)) == []
    out, err = capfd.readouterr()
    assert found(out + err) == []
    os.environ.pop("CDC_CONN_SECRET_SRC", None)

"""The `cdc-assets` CLI against a real control DB: validation, secrets, the happy path."""

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from cdc_assets.cli import main
from cdc_assets.domain import publication_name, slot_name

pytestmark = pytest.mark.integration

SECRET = "s3cretPW"
SECRET_URL = f"postgresql://u:{SECRET}@h/db"
DEAD_URL = f"postgresql://u:{SECRET}@127.0.0.1:1/db"
GOOD = ["--source", "env:CDC_CONN_SRC", "--target", "postgresql://etl@127.0.0.1/dw"]


def _psycopg(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _count(control_url: str) -> int:
    with psycopg.connect(_psycopg(control_url)) as conn:
        row = conn.execute("SELECT count(*) FROM public.pipelines").fetchone()
    assert row is not None
    return int(row[0])


def run_cli(capsys, control_url: str, *argv: str) -> tuple[int, str, str]:
    code = main(["--control-db-url", control_url, *argv])
    out, err = capsys.readouterr()
    return code, out, err


BAD_ADD = [
    # (argv after `pipeline add`, field named in the message)
    (["Orders", *GOOD, "--table", "t"], "NAME"),
    (["1orders", *GOOD, "--table", "t"], "NAME"),
    (["or-ders", *GOOD, "--table", "t"], "NAME"),
    (["o" * 49, *GOOD, "--table", "t"], "NAME"),
    (["_orders", *GOOD, "--table", "t"], "NAME"),
    (["ord ers", *GOOD, "--table", "t"], "NAME"),
    (["", *GOOD, "--table", "t"], "NAME"),
    (["dup", *GOOD, "--table", "t"], "NAME"),  # taken by the fixture's pipeline
    (["p", *GOOD, "--table", "a.b.c"], '--table "a.b.c"'),
    (["p", *GOOD, "--table", '"unterminated'], "--table"),
    (["p", *GOOD, "--table", ""], "--table"),
    (["p", *GOOD, "--table", "a..b"], "--table"),
    (["p", *GOOD, "--table", "sales.order items"], "--table"),
    (["p", *GOOD, "--table", "x" * 64], "--table"),
    (["p", *GOOD, "--table", "public.t", "--table", "T"], "--table"),
    (["p", *GOOD, "--table", "t;drop table x"], "--table"),
    (["p", "--source", "mysql://u@h/db", "--target", "env:T", "--table", "t"], "--source"),
    (["p", "--source", "", "--target", "env:T", "--table", "t"], "--source"),
    (["p", "--source", "env:1BAD", "--target", "env:T", "--table", "t"], "--source"),
    (["p", "--source", "env:T", "--target", "http://h/db", "--table", "t"], "--target"),
    (["p", "--source", "env:T", "--target", "postgresql://h:99999/db", "--table", "t"], "--target"),
    (["p", "--source", "env:T", "--target", "env:", "--table", "t"], "--target"),
    (["p", *GOOD, "--table", "t", "--mode", "cdc_only"], "--mode"),
    (["p", *GOOD, "--table", "t", "--mode", ""], "--mode"),
    (["p", *GOOD, "--table", "t", "--target-schema", "two words"], "--target-schema"),
    (["p", *GOOD, "--table", "t", "--target-schema", "a.b"], "--target-schema"),
    (["p", *GOOD, "--table", "t", "--target-schema", ""], "--target-schema"),
    (["p", *GOOD, "--table", "t", "--target-schema", "pg_temp"], "--target-schema"),
    (["p", *GOOD, "--table", "t", "--target-schema", "s" * 64], "--target-schema"),
    (["p", *GOOD], "--table"),  # missing entirely
    (["p", "--target", "env:T", "--table", "t"], "--source"),  # missing entirely
]


@pytest.mark.parametrize(
    ("argv", "field"), BAD_ADD, ids=[f"{i}:{f}" for i, (_, f) in enumerate(BAD_ADD)]
)
def test_bad_add_input_exits_2_names_the_field_and_writes_nothing(
    capsys, control_url, argv, field
) -> None:
    assert run_cli(capsys, control_url, "pipeline", "add", "dup", *GOOD, "--table", "t")[0] == 0
    before = _count(control_url)
    code, out, err = run_cli(capsys, control_url, "pipeline", "add", *argv)
    assert code == 2, (out, err)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert field in lines[0], lines[0]
    assert "Traceback" not in err and out == ""
    assert _count(control_url) == before


def test_add_refuses_two_tables_landing_on_one_target_table(capsys, control_url) -> None:
    """``s1.a`` and ``s3.a`` would both become ``<schema>.a``: refused at add, not at load."""
    before = _count(control_url)
    code, out, err = run_cli(
        capsys, control_url, "pipeline", "add", "p", *GOOD, "--table", "s1.a", "--table", "S3.A"
    )
    assert code == 2, (out, err)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: --table"), err
    assert "s1.a" in lines[0] and "s3.a" in lines[0], lines[0]
    assert out == "" and _count(control_url) == before
    # Different names as PostgreSQL sees them ("A" keeps its case) do not collide.
    code, out, err = run_cli(
        capsys, control_url, "pipeline", "add", "q", *GOOD, "--table", "s1.a", "--table", 's3."A"'
    )
    assert code == 0, (out, err)


def test_secret_never_printed(capsys, control_url) -> None:
    outputs: list[str] = []

    def cli(*argv: str) -> int:
        code, out, err = run_cli(capsys, control_url, *argv)
        outputs.append(out + err)
        return code

    assert (
        cli(
            "pipeline", "add", "leaky", "--source", SECRET_URL, "--target", DEAD_URL, "--table", "t"
        )
        == 0
    )
    assert cli("pipeline", "list") == 0
    assert cli("pipeline", "show", "leaky") == 0
    assert cli("pipeline", "reset", "leaky") == 1  # source unreachable: refused, said why
    assert (
        cli("pipeline", "add", "Bad", "--source", SECRET_URL, "--target", DEAD_URL, "--table", "t")
        == 2
    )
    assert (
        cli(
            "pipeline",
            "add",
            "bad",
            "--source",
            SECRET_URL + " x",
            "--target",
            "mysql://u:" + SECRET + "@h/db",
            "--table",
            "t",
        )
        == 2
    )
    assert cli("pipeline", "remove", "leaky") == 1
    assert (
        main(
            [
                "--control-db-url",
                DEAD_URL.replace("postgresql", "postgresql+psycopg"),
                "pipeline",
                "list",
            ]
        )
        == 1
    )
    out, err = capsys.readouterr()
    outputs.append(out + err)
    joined = "\n".join(outputs)
    assert SECRET not in joined
    assert "u:***@h/db" in joined  # the redacted form is what operators see
    assert "cannot reach the control DB" in joined and "Traceback" not in joined


def test_reset_refuses_when_source_unreachable_unless_forced(capsys, control_url) -> None:
    assert (
        run_cli(
            capsys,
            control_url,
            "pipeline",
            "add",
            "p",
            "--source",
            DEAD_URL,
            "--target",
            DEAD_URL,
            "--table",
            "t",
        )[0]
        == 0
    )
    with psycopg.connect(_psycopg(control_url)) as conn:
        conn.execute("UPDATE pipelines SET full_load_status = 'FAILED', last_error = 'x'")
    code, _out, err = run_cli(capsys, control_url, "pipeline", "reset", "p")
    assert code == 1 and "nothing was reset" in err and slot_name("p") in err
    code, out, err = run_cli(capsys, control_url, "pipeline", "show", "p")
    assert "FAILED" in out
    code, out, err = run_cli(capsys, control_url, "pipeline", "reset", "p", "--force")
    assert code == 0 and "warning" in err and "NOT_STARTED" in out


def test_init_twice(capsys, new_db) -> None:
    url = new_db("cli").replace("postgresql://", "postgresql+psycopg://")
    code, out, _ = run_cli(capsys, url, "init")
    assert code == 0 and "applied migration" in out
    code, out, _ = run_cli(capsys, url, "init")
    assert code == 0 and "already up to date" in out and "applied" not in out


def test_uninitialised_control_db_says_run_init(capsys, new_db) -> None:
    url = new_db("cli")
    code, _out, err = run_cli(capsys, url, "pipeline", "list")
    assert code == 1 and "cdc-assets init" in err and "Traceback" not in err


def test_missing_control_url_is_one_line(capsys, monkeypatch) -> None:
    monkeypatch.delenv("CDC_CONTROL_DB_URL", raising=False)
    assert main(["pipeline", "list"]) == 1
    _out, err = capsys.readouterr()
    assert err.strip().startswith("error: CDC_CONTROL_DB_URL is not set")


def test_happy_path(capsys, control_url, pg_wal_logical, new_db, monkeypatch) -> None:
    source = new_db("src")
    monkeypatch.setenv("CDC_CONN_HAPPY_SRC", source)
    with psycopg.connect(source, autocommit=True) as conn:
        conn.execute('CREATE SCHEMA "Sales"')
        conn.execute('CREATE TABLE "Sales"."Order Items" (id int PRIMARY KEY)')
        conn.execute('CREATE PUBLICATION cdc_assets_shop FOR TABLE "Sales"."Order Items"')
        conn.execute("SELECT pg_create_logical_replication_slot('cdc_assets_shop', 'pgoutput')")

    code, out, err = run_cli(
        capsys,
        control_url,
        "pipeline",
        "add",
        "shop",
        "--source",
        "env:CDC_CONN_HAPPY_SRC",
        "--target",
        "postgresql://etl@127.0.0.1:1/dw",
        "--table",
        '"Sales"."Order Items"',
        "--table",
        "Public.Orders",
        "--target-schema",
        "Shop",
    )
    assert code == 0, err
    assert '"Sales"."Order Items", public.orders' in out

    code, out, _ = run_cli(capsys, control_url, "pipeline", "list")
    header, line = out.splitlines()
    assert header.split()[:6] == ["NAME", "MODE", "ENABLED", "FULL_LOAD", "CDC", "UPDATED_AT"]
    assert line.split()[:5] == ["shop", "full_load_and_cdc", "yes", "NOT_STARTED", "NOT_STARTED"]
    assert header.index("MODE") == line.index("full_load_and_cdc")  # aligned columns

    code, out, _ = run_cli(capsys, control_url, "pipeline", "show", "shop")
    fields = dict(ln.split(None, 1) for ln in out.splitlines() if ln and not ln.startswith(" "))
    assert fields["target_schema"] == "shop"
    assert fields["source_url"] == "env:CDC_CONN_HAPPY_SRC"
    assert "no status changes yet" in out

    assert run_cli(capsys, control_url, "pipeline", "disable", "shop")[0] == 0
    assert run_cli(capsys, control_url, "pipeline", "list")[1].splitlines()[1].split()[2] == "no"
    assert run_cli(capsys, control_url, "pipeline", "enable", "shop")[0] == 0

    code, out, err = run_cli(capsys, control_url, "pipeline", "reset", "shop")
    assert code == 0, err
    assert f"dropped replication slot {slot_name('shop')}" in out
    assert f"dropped publication {publication_name('shop')}" in out
    code, out, _ = run_cli(capsys, control_url, "pipeline", "show", "shop")
    assert "no status changes yet" in out  # a never-started pipeline's reset changes no status

    # reset is refused while a run holds the pipeline lock
    from cdc_assets.control.repository import PipelineRepository

    with PipelineRepository.from_url(control_url).pipeline_lock("shop"):
        code, _out, err = run_cli(capsys, control_url, "pipeline", "remove", "shop")
    assert code == 1 and "another run holds the pipeline lock" in err

    code, out, err = run_cli(capsys, control_url, "pipeline", "remove", "shop")
    assert code == 0, err
    assert _count(control_url) == 0
    code, _out, err = run_cli(capsys, control_url, "pipeline", "show", "shop")
    assert code == 1 and "no such pipeline" in err


def test_console_script(control_url) -> None:
    exe = Path(sys.executable).with_name("cdc-assets")
    assert exe.exists(), f"console script missing: {exe} (pip install -e .)"
    env = {**os.environ, "CDC_CONTROL_DB_URL": control_url}
    add = subprocess.run(
        [
            str(exe),
            "pipeline",
            "add",
            "cli_proc",
            "--source",
            SECRET_URL,
            "--target",
            "env:X",
            "--table",
            "t",
            "--mode",
            "full_load",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert add.returncode == 0, add.stderr
    listed = subprocess.run(
        [str(exe), "pipeline", "list"], env=env, capture_output=True, text=True, timeout=120
    )
    assert listed.returncode == 0 and "cli_proc" in listed.stdout
    bad = subprocess.run(
        [
            str(exe),
            "pipeline",
            "add",
            "cli_proc",
            "--source",
            SECRET_URL,
            "--target",
            "env:X",
            "--table",
            "a.b.c",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and '--table "a.b.c"' in bad.stderr
    assert SECRET not in add.stdout + add.stderr + listed.stdout + bad.stderr

"""The README's walkthrough, run as written: every ``cdc-assets`` line of its bash block and its SQL
block, against throwaway databases named by the same environment variables the README exports.
If the README drifts from the product, this fails.
"""

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from cdc_assets_tests.support import sqlalchemy_url

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
CLI = Path(sys.executable).with_name("cdc-assets")


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README.read_text(), flags=re.S)


def _walkthrough() -> list[str]:
    block = next(b for b in _blocks("bash") if "cdc-assets pipeline add" in b)
    return [line.strip() for line in block.splitlines() if line.strip()]


def _slot_query() -> str:
    (query,) = re.findall(r"`(SELECT slot_name[^`]*)`", README.read_text())
    return query


def _count(url: str, table: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()  # test-owned literal names
    assert row is not None
    return int(row[0])


def test_readme_walkthrough_runs_as_written(new_db, tmp_path: Path) -> None:
    lines = _walkthrough()
    exported = {ln.split()[1].split("=")[0] for ln in lines if ln.startswith("export ")}
    assert exported == {"CDC_CONTROL_DB_URL", "CDC_CONN_SHOP", "CDC_CONN_DW"}

    source, target, control, dagster_db = new_db("src"), new_db("dw"), new_db("ctl"), new_db("dg")
    with psycopg.connect(source) as conn:
        conn.execute("CREATE TABLE public.orders (id bigint PRIMARY KEY, note text)")
        conn.execute("INSERT INTO public.orders SELECT g, 'n' || g FROM generate_series(1, 250) g")
        conn.execute('CREATE SCHEMA "Sales"')
        conn.execute('CREATE TABLE "Sales"."Order Items" (id int PRIMARY KEY, "Qty" int)')
        conn.execute('INSERT INTO "Sales"."Order Items" SELECT g, g FROM generate_series(1, 40) g')
    with psycopg.connect(target) as conn:
        conn.execute("CREATE SCHEMA shop")
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(REPO / "dagster.yaml", home / "dagster.yaml")
    env = dict(os.environ)
    env.update(
        CDC_CONTROL_DB_URL=sqlalchemy_url(control),
        CDC_CONN_SHOP=source,
        CDC_CONN_DW=target,
        DAGSTER_HOME=str(home),
        DAGSTER_PG_URL=dagster_db,
    )

    for line in lines:
        if line.startswith("export "):
            continue
        argv = shlex.split(line)
        assert argv[0] == "cdc-assets", line
        if argv[1:3] == ["run", "orders"] and "cdc" in argv:
            with psycopg.connect(source) as conn:
                conn.execute("INSERT INTO public.orders VALUES (1001, 'after the snapshot')")
                conn.execute('UPDATE "Sales"."Order Items" SET "Qty" = 0 WHERE id = 1')
        result = subprocess.run(
            [str(CLI), *argv[1:]], env=env, capture_output=True, text=True, timeout=300, check=False
        )
        assert result.returncode == 0, f"{line}\n{result.stdout}\n{result.stderr}"
        assert "Traceback" not in result.stderr, result.stderr
        assert "secret" not in result.stdout + result.stderr
        if argv[1:3] == ["run", "orders"] and "full_load" in argv:
            assert _count(target, "shop.orders") == 250
            with psycopg.connect(source) as conn:  # the README's "Slots and lag" query
                slots = conn.execute(_slot_query()).fetchall()
            assert [s[0] for s in slots] == ["cdc_assets_orders"]
            assert _count(target, 'shop."Order Items"') == 40
        if argv[1:3] == ["run", "orders"] and "cdc" in argv:
            assert _count(target, "shop.orders") == 251
            with psycopg.connect(target) as conn:
                qty = conn.execute('SELECT "Qty" FROM shop."Order Items" WHERE id = 1').fetchone()
            assert qty == (0,)
        if argv[1:3] == ["pipeline", "show"]:
            assert "COMPLETED" in result.stdout and "ACTIVE" in result.stdout

    (sql_block,) = [b for b in _blocks("sql") if "INSERT INTO public.pipelines" in b]
    with psycopg.connect(control) as conn:
        conn.execute(sql_block)
    shown = subprocess.run(
        [str(CLI), "pipeline", "show", "invoices"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    assert "NOT_STARTED" in shown.stdout

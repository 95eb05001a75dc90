"""``--asset-key-prefix`` and the clash checks against a real control DB (issue 13)."""

import psycopg
import pytest

from cdc_assets.cli import main
from cdc_assets.control.conflicts import key_conflicts
from cdc_assets.control.repository import PipelineRepository
from cdc_assets.control.schema import head_revision, init_schema
from cdc_assets_tests.support import sqlalchemy_url, wait_until

pytestmark = pytest.mark.integration

DW = "postgresql://etl@127.0.0.1/dw"
SRC = ["--source", "env:CDC_CONN_SRC"]


def _plain(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def run_cli(capsys, control_url: str, *argv: str) -> tuple[int, str, str]:
    code = main(["--control-db-url", control_url, *argv])
    out, err = capsys.readouterr()
    return code, out, err


def add(capsys, control_url: str, name: str, *argv: str, target: str = DW) -> tuple[int, str, str]:
    return run_cli(capsys, control_url, "pipeline", "add", name, *SRC, "--target", target, *argv)


def show(capsys, control_url: str, name: str) -> dict[str, str]:
    code, out, err = run_cli(capsys, control_url, "pipeline", "show", name)
    assert code == 0, err
    return dict(ln.split(None, 1) for ln in out.splitlines() if ln and not ln.startswith(" "))


def names(control_url: str) -> list[str]:
    with psycopg.connect(_plain(control_url)) as conn:
        return [r[0] for r in conn.execute("SELECT name FROM public.pipelines ORDER BY id")]


def one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_add_with_prefix_stores_it_and_show_prints_the_keys(capsys, control_url) -> None:
    code, out, err = add(
        capsys, control_url, "shop", "--table", "public.orders", "--table", '"Sales"."Order Items"',
        "--asset-key-prefix", "team/shop",
    )  # fmt: skip
    assert code == 0, err
    assert "asset keys: team/shop/orders, team/shop/Order_Items" in out
    with psycopg.connect(_plain(control_url)) as conn:
        stored = conn.execute("SELECT asset_key_prefix FROM public.pipelines").fetchall()
    assert stored == [(["team", "shop"],)]
    assert PipelineRepository.from_url(control_url).get("shop").key_prefix == ("team", "shop")

    fields = show(capsys, control_url, "shop")
    assert fields["asset_key_prefix"] == "team/shop"
    assert fields["asset_keys"] == "team/shop/orders, team/shop/Order_Items"
    assert fields["source_asset_keys"] == (
        "team/shop/source/public/orders, team/shop/source/Sales/Order_Items"
    )
    assert fields["conflict"] == "-"

    # Without the flag the column stays NULL and the key starts with the pipeline's name.
    assert add(capsys, control_url, "plain", "--table", "t", "--target-schema", "p")[0] == 0
    fields = show(capsys, control_url, "plain")
    assert fields["asset_key_prefix"] == "- (default: plain)"
    assert fields["asset_keys"] == "plain/t"
    code, out, _ = run_cli(capsys, control_url, "pipeline", "list")
    header, *lines = out.splitlines()
    column = header.index("KEY_PREFIX")  # aligned columns; UPDATED_AT holds a space
    assert sorted(ln[column:].split()[0] for ln in lines) == ["plain", "team/shop"]


@pytest.mark.parametrize("prefix", ["", "a//b", "team/shop-1", "/".join("p" * 9)])
def test_bad_prefix_exits_2_names_the_flag_and_writes_nothing(capsys, control_url, prefix) -> None:
    code, out, err = add(capsys, control_url, "p", "--table", "t", "--asset-key-prefix", prefix)
    assert code == 2 and out == ""
    assert one_error_line(err).startswith('error: --asset-key-prefix "'), err
    assert names(control_url) == []


def test_same_prefix_and_table_is_refused_naming_both_and_the_fix(capsys, control_url) -> None:
    assert (
        add(capsys, control_url, "first", "--table", "s1.orders", "--asset-key-prefix", "dw")[0]
        == 0
    )
    code, out, err = add(
        capsys, control_url, "second", "--table", "s2.orders", "--target-schema", "other",
        "--asset-key-prefix", "dw",
    )  # fmt: skip
    assert code == 2 and out == ""
    line = one_error_line(err)
    assert line.startswith("error: --asset-key-prefix: pipeline 'second'"), line
    assert "asset key dw/orders" in line and "'first'" in line
    assert "choose another asset key prefix (--asset-key-prefix)" in line
    assert names(control_url) == ["first"]
    # A pipeline's name is its default prefix: another pipeline may not take it as its prefix.
    assert add(capsys, control_url, "x", "--table", "a.b", "--target-schema", "t4")[0] == 0
    code, _, err = add(capsys, control_url, "y", "--table", "c.b", "--target-schema", "t5",
                       "--asset-key-prefix", "x")  # fmt: skip
    assert code == 2 and "asset key x/b" in one_error_line(err) and "'x'" in err
    # The same prefix with other table names is fine: keys are per table.
    code, out, err = add(
        capsys, control_url, "z", "--table", "s1.lines", "--asset-key-prefix", "dw"
    )
    assert code == 0 and "asset keys: dw/lines" in out, err
    assert names(control_url) == ["first", "x", "z"]


def test_same_target_table_is_refused_even_with_other_prefixes(capsys, control_url) -> None:
    assert add(capsys, control_url, "a", "--table", "s1.orders", "--asset-key-prefix", "p1")[0] == 0
    code, out, err = add(
        capsys, control_url, "b", "--table", "s2.orders", "--asset-key-prefix", "p2"
    )
    assert code == 2 and out == ""
    line = one_error_line(err)
    assert line.startswith("error: --table: pipeline 'b'"), line
    assert "target table public.orders" in line and "'a'" in line and "--target-schema" in line
    assert names(control_url) == ["a"]
    # Another target schema, or another target (as written), is another table.
    assert add(capsys, control_url, "b", "--table", "s2.orders", "--target-schema", "b")[0] == 0
    assert add(capsys, control_url, "c", "--table", "s1.orders", target="env:OTHER_DW")[0] == 0
    assert names(control_url) == ["a", "b", "c"]


def test_hand_written_colliding_row_is_flagged_not_the_earlier_one(capsys, control_url) -> None:
    assert (
        add(capsys, control_url, "early", "--table", "public.orders", "--asset-key-prefix", "dw")[0]
        == 0
    )
    with psycopg.connect(_plain(control_url), autocommit=True) as conn:
        conn.execute(
            "INSERT INTO public.pipelines (name, source_url, target_url, tables, target_schema, "
            "asset_key_prefix) VALUES (%s, %s, %s, %s, %s, %s)",
            ("late", "env:SRC2", "env:DW2", ["other.orders"], "late", ["dw"]),
        )
    rows = PipelineRepository.from_url(control_url).list()
    flagged = key_conflicts(rows)
    assert list(flagged) == ["late"]
    assert "asset key dw/orders" in flagged["late"] and "'early'" in flagged["late"]
    assert show(capsys, control_url, "early")["conflict"] == "-"
    conflict = show(capsys, control_url, "late")["conflict"]
    assert "dw/orders" in conflict and "'early'" in conflict
    code, out, _ = run_cli(capsys, control_url, "pipeline", "list")
    assert code == 0
    late = next(ln for ln in out.splitlines() if ln.startswith("late "))
    assert "bad row: asset key dw/orders" in late


def test_migration_0002_upgrades_an_0001_schema_keeping_rows(new_db) -> None:
    url = new_db("mig")
    applied = init_schema(sqlalchemy_url(url), "0001")
    assert [line.split(":")[0] for line in applied] == ["applied migration 0001"]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO public.pipelines (name, source_url, target_url, tables) "
            "VALUES ('old', 'env:S', 'env:T', ARRAY['public.orders'])"
        )
    applied = init_schema(sqlalchemy_url(url))
    assert [line.split(":")[0] for line in applied] == [
        "applied migration 0002",
        "applied migration 0003",
    ]
    assert head_revision() == "0003"
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT name, asset_key_prefix FROM public.pipelines").fetchall() == [
            ("old", None)
        ]
    row = PipelineRepository.from_url(sqlalchemy_url(url)).get("old")
    assert row.asset_key_prefix is None and row.key_prefix == ("old",)
    assert row.config_error is None


def test_add_waits_for_a_concurrent_writer_and_then_sees_its_row(control_url) -> None:
    """The check runs after the table lock: a row committed meanwhile is checked against."""
    from concurrent.futures import ThreadPoolExecutor

    from cdc_assets.cli import build_spec
    from cdc_assets.control.repository import AssetKeyConflict

    repo = PipelineRepository.from_url(control_url)
    spec = build_spec(
        "racer", source="env:S", target="env:T", tables=["public.orders"], mode="full_load",
        target_schema="racer",
    )  # fmt: skip
    with psycopg.connect(_plain(control_url)) as holder:
        holder.execute(
            "INSERT INTO public.pipelines (name, source_url, target_url, tables, asset_key_prefix) "
            "VALUES ('winner', 'env:S', 'env:T', ARRAY['public.orders'], ARRAY['dw'])"
        )  # holds ROW EXCLUSIVE until commit: add's SHARE ROW EXCLUSIVE must wait
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(repo.add, spec, asset_key_prefix=("dw",))
            wait_until(
                lambda: (
                    holder.execute(
                        "SELECT count(*) FROM pg_locks WHERE NOT granted "
                        "AND relation = 'public.pipelines'::regclass"
                    ).fetchone()
                    == (1,)
                ),
                timeout=10,
                describe="add waiting for the table lock",
            )
            assert not pending.done()
            holder.commit()
            with pytest.raises(AssetKeyConflict, match="'winner'"):
                pending.result(timeout=30)
    assert names(control_url) == ["winner"]

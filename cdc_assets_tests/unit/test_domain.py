"""domain.py: table names parse like PostgreSQL, names are checked, LSNs print like pg_lsn."""

import pytest

from cdc_assets.domain import (
    InvalidName,
    Lsn,
    Mode,
    PipelineSpec,
    TableRef,
    Writer,
    publication_name,
    slot_name,
    target_collision,
    validate_name,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "schema", "name", "display"),
    [
        ("orders", "public", "orders", "public.orders"),
        ("Sales.Orders", "sales", "orders", "sales.orders"),
        ('"Sales"."Order Items"', "Sales", "Order Items", '"Sales"."Order Items"'),
        ('"a""b".t', 'a"b', "t", '"a""b".t'),
        ('s."T"', "s", "T", 's."T"'),
        ("  s.t  ", "s", "t", "s.t"),
        ("s.t$1", "s", "t$1", 's."t$1"'),
        ('"s.x".t', "s.x", "t", '"s.x".t'),
    ],
)
def test_table_ref_parse(text: str, schema: str, name: str, display: str) -> None:
    ref = TableRef.parse(text)
    assert (ref.schema, ref.name) == (schema, name)
    assert ref.display == display
    assert TableRef.parse(ref.display) == ref  # display round-trips


@pytest.mark.parametrize(
    "text",
    ["", " ", "a.b.c", "a..b", ".a", "a.", '"a', '""', "a b", "1a", "a;b", "x" * 64, "a-b"],
)
def test_table_ref_errors(text: str) -> None:
    with pytest.raises(InvalidName):
        TableRef.parse(text)


@pytest.mark.parametrize("name", ["a", "orders", "o_1", "a" + "b" * 47])
def test_valid_names(name: str) -> None:
    assert validate_name(name) == name
    assert slot_name(name) == publication_name(name) == "cdc_assets_" + name
    assert len(slot_name(name)) <= 63


@pytest.mark.parametrize("name", ["", "A", "1a", "_a", "a-b", "a b", "a" * 49, "é"])
def test_invalid_names(name: str) -> None:
    with pytest.raises(InvalidName):
        validate_name(name)


@pytest.mark.parametrize(
    ("text", "value"),
    [("0/0", 0), ("0/16B3748", 0x16B3748), ("1/0", 1 << 32), ("FFFFFFFF/FFFFFFFF", (1 << 64) - 1)],
)
def test_lsn_round_trip(text: str, value: int) -> None:
    lsn = Lsn(text)
    assert int(lsn) == value and str(lsn) == text and Lsn(value) == lsn
    assert repr(lsn) == f"Lsn('{text}')"


@pytest.mark.parametrize("bad", ["16B3748", "x/1", -1, 1 << 64])
def test_lsn_errors(bad: str | int) -> None:
    with pytest.raises(ValueError):
        Lsn(bad)


def test_lsn_orders_as_int() -> None:
    assert Lsn("0/FF") < Lsn("1/0")


def test_writer_authority_and_spec_defaults() -> None:
    assert {w for w in Writer if w.is_authoritative} == {
        Writer.SENSOR,
        Writer.RECONCILER,
        Writer.CLI,
    }
    spec = PipelineSpec("p", "env:S", "env:T", (TableRef.parse("t"),))
    assert spec.mode is Mode.FULL_LOAD_AND_CDC and spec.wants_cdc and spec.target_schema == "public"
    assert spec.slot_name == "cdc_assets_p"


@pytest.mark.parametrize(
    ("tables", "names"),
    [
        (["s1.a", "s3.a"], ("s1.a", "s3.a")),
        (["S1.A", "s3.a", "b"], ("s1.a", "s3.a")),  # folded like PostgreSQL
        (
            ['"Sales"."Order Items"', 'x."Order Items"'],
            ('"Sales"."Order Items"', 'x."Order Items"'),
        ),
        (["s1.a", 's3."A"'], None),  # "A" keeps its case: another table
        (["s1.a", "s1.b", "public.c"], None),
        (["s1.a", "s1.a"], None),  # the same table twice is a duplicate, reported as such
    ],
)
def test_two_tables_landing_on_one_target_table(
    tables: list[str], names: tuple[str, ...] | None
) -> None:
    problem = target_collision([TableRef.parse(t) for t in tables])
    if names is None:
        assert problem is None
    else:
        assert problem is not None and all(n in problem for n in names)

"""secrets.py: references are validated, resolved, and passwords never survive redaction."""

import pytest

from cdc_assets.secrets import (
    BadReference,
    check_reference,
    redact_url,
    remember_secret,
    resolve_reference,
    scrub,
    to_libpq_url,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "ref",
    [
        "postgresql://u@h/db",
        "postgresql://u:pw@h:5432/db?sslmode=require",
        "postgres://h/db",
        "postgresql+psycopg://u@h/db",
        "env:CDC_CONN_SHOP",
        "env:_x1",
    ],
)
def test_good_references(ref: str) -> None:
    assert check_reference(ref) == ref


@pytest.mark.parametrize(
    "ref",
    [
        "",
        "   ",
        "mysql://h/db",
        "http://h/db",
        "env:",
        "env:1X",
        "env:A-B",
        "postgresql://h:0/db",
        "postgresql://h:70000/db",
        "postgresql://h:port/db",
        "postgresql://h/db\nx",
        "postgresql://u:pw@h/db x",  # whitespace: was accepted before (fixed)
        "h/db",
    ],
)
def test_bad_references(ref: str) -> None:
    with pytest.raises(BadReference) as info:
        check_reference(ref)
    assert "pw@" not in str(info.value)


def test_redact_url_keeps_everything_but_the_password() -> None:
    assert redact_url("postgresql://u:s3cret@h:5432/db?x=1") == "postgresql://u:***@h:5432/db?x=1"
    assert redact_url("postgresql://u@h/db") == "postgresql://u@h/db"
    assert redact_url("env:CDC_CONN_A") == "env:CDC_CONN_A"
    assert "s3cret" not in redact_url("postgresql://u:s3cret@h/db?password=s3cret")


@pytest.mark.parametrize(
    "text",
    [
        "could not connect: postgresql://user:hunter22@db.internal/x failed",
        "host=h password=hunter22 user=u",
        "host=h password='hun ter22' user=u",
        "postgresql://h/db?sslmode=disable&password=hunter22",
    ],
)
def test_scrub_removes_passwords_from_free_text(text: str) -> None:
    assert "hunter22" not in scrub(text) and "ter22" not in scrub(text)


def test_resolve_reads_env_at_call_time_and_remembers_the_password() -> None:
    env = {"CDC_CONN_A": "postgresql+psycopg://u:rememberme@h/db"}
    assert resolve_reference("env:CDC_CONN_A", env) == "postgresql://u:rememberme@h/db"
    assert scrub("driver said rememberme somewhere") == "driver said *** somewhere"


@pytest.mark.parametrize(
    ("env", "match"),
    [
        ({}, "not set"),
        ({"CDC_CONN_A": " "}, "not set"),
        ({"CDC_CONN_A": "mysql://h/db"}, "CDC_CONN_A"),
        ({"CDC_CONN_A": "env:CDC_CONN_B"}, "another env"),
    ],
)
def test_resolve_errors_name_the_variable(env: dict[str, str], match: str) -> None:
    with pytest.raises(BadReference, match=match):
        resolve_reference("env:CDC_CONN_A", env)


def test_to_libpq_url() -> None:
    assert to_libpq_url("postgresql+psycopg2://h/db") == "postgresql://h/db"
    assert to_libpq_url("postgresql://h/db") == "postgresql://h/db"


def test_short_secrets_are_not_remembered() -> None:
    remember_secret("ab")
    assert scrub("abc ab") == "abc ab"

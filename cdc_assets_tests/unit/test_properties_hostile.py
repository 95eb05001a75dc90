"""Property tests for hostile input: any text, any identifier, any password.

Companion of test_properties.py: where that file proves round trips, this one proves that nothing
hostile escapes its quoting, breaks a row read, or leaves a password in an error.
"""

import contextlib
import itertools
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg import sql

from cdc_assets import secrets as secrets_module
from cdc_assets.control.repository import RetryPolicy
from cdc_assets.control.rows import PipelineRow
from cdc_assets.domain import InvalidName, TableRef
from cdc_assets.errors import ConfigError, ConnectError
from cdc_assets.secrets import BadReference, check_reference, redact_url, remember_secret, scrub

pytestmark = pytest.mark.unit

identifier = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=1,
    max_size=30,
).filter(lambda s: len(s.encode()) <= 63)


@given(identifier)
def test_a_quoted_identifier_is_one_token_whatever_it_holds(name: str) -> None:
    quoted = sql.Identifier(name).as_string(None)
    assert quoted.startswith('"') and quoted.endswith('"')
    inner = quoted[1:-1]
    # Every quote inside is doubled: the token cannot end early and let SQL through.
    assert inner.replace('""', "").count('"') == 0
    assert TableRef.parse(f"public.{quoted}") == TableRef("public", name)


def _model(tables: list[str], target_schema: str = "public") -> SimpleNamespace:
    now = datetime.now(UTC)
    return SimpleNamespace(
        id=1, name="p", source_url="env:A", target_url="env:B", tables=tables,
        target_schema=target_schema, mode="full_load", enabled=True,
        full_load_status="NOT_STARTED", full_load_started_at=None, full_load_completed_at=None,
        full_load_rows=None, full_load_run_id=None, full_load_run_created_at=None,
        full_load_authority=None, cdc_status="NOT_STARTED", cdc_lsn=None, cdc_lag_bytes=None,
        cdc_progress_at=None, cdc_run_id=None, cdc_run_created_at=None, cdc_authority=None,
        cdc_lag_seconds=None, cdc_heartbeat_at=None,
        last_run_id=None, last_error=None, created_at=now, updated_at=now, asset_key_prefix=None,
    )  # fmt: skip


@given(st.lists(st.text(max_size=40), max_size=5), st.text(max_size=70))
@settings(max_examples=300)
def test_any_hand_written_row_can_be_read_and_only_spec_refuses_it(
    tables: list[str], target_schema: str
) -> None:
    row = PipelineRow.from_model(_model(tables, target_schema))  # type: ignore[arg-type]
    if row.config_error is None:
        assert [t.display for t in row.spec.tables] == [TableRef.parse(t).display for t in tables]
    else:
        with pytest.raises(ConfigError) as err:
            row.spec  # noqa: B018 - the property under test raises
        assert "pipeline 'p'" in str(err.value)


@given(st.text(max_size=200))
def test_check_reference_raises_only_bad_reference(text: str) -> None:
    # Any input either passes or raises BadReference (never another exception), with a one-line
    # message: no traceback and no raw newline, whatever the input echoes back (repr escapes it).
    try:
        check_reference(text)
    except BadReference as exc:
        message = str(exc)
        assert "\n" not in message
        if "Traceback" not in text:  # an echoed input may hold the word itself
            assert "Traceback" not in message


@given(st.text(min_size=1, max_size=60))
def test_table_parse_raises_only_invalid_name(text: str) -> None:
    with contextlib.suppress(InvalidName):
        TableRef.parse(text)


password = st.text(
    alphabet=st.characters(whitelist_categories=("Lu", "Ll", "Nd"), whitelist_characters="-_!~"),
    min_size=8,
    max_size=24,
)


@given(password, st.text(max_size=40))
def test_a_remembered_password_never_survives_an_error(pw: str, noise: str) -> None:
    remember_secret(pw)
    try:
        url = f"postgresql://app:{pw}@db.example:5432/shop"
        err = ConnectError(
            f"cannot connect to source {redact_url(url)}: FATAL: {noise} {pw} {noise}",
            pipeline="p",
            fix=f"check {url}",
        )
        for text in (str(err), err.for_row(), repr(err), scrub(f"{noise}{pw}{noise}")):
            assert pw not in text
    finally:
        # The process-wide set would otherwise keep every generated password, and Hypothesis draws
        # words from the test sources ("postgresql"), which later tests then see scrubbed.
        secrets_module._known_secrets.discard(pw)


@given(st.integers(1, 10), st.floats(0.01, 2), st.floats(0.01, 10))
def test_retry_delays_double_up_to_the_cap(attempts: int, first: float, cap: float) -> None:
    delays = list(RetryPolicy(attempts, first, cap).delays())
    assert len(delays) == attempts - 1
    assert all(d <= max(first, cap) for d in delays)
    assert all(b >= a or b == cap for a, b in itertools.pairwise(delays))

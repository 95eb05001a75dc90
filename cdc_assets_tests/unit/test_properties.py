"""Property tests over pipeline definitions: any identifier survives quoting, no password survives
redaction, and only the documented name shape is accepted."""

import string
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdc_assets.domain import NAME_PATTERN, InvalidName, TableRef, validate_name
from cdc_assets.secrets import redact_url, scrub

pytestmark = pytest.mark.unit

identifier = st.text(
    alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)),
    min_size=1,
    max_size=30,
).filter(lambda s: len(s.encode()) <= 63)


@given(schema=identifier, name=identifier)
@settings(max_examples=400)
def test_any_identifier_round_trips_through_display_and_parse(schema: str, name: str) -> None:
    ref = TableRef(schema, name)
    assert TableRef.parse(ref.display) == ref


@given(st.text(max_size=60))
@settings(max_examples=400)
def test_only_the_documented_name_shape_is_accepted(text: str) -> None:
    ok = NAME_PATTERN.fullmatch(text) is not None
    if ok:
        assert validate_name(text) == text
    else:
        with pytest.raises(InvalidName):
            validate_name(text)


@given(st.text(max_size=80))
@settings(max_examples=400)
def test_table_parse_never_crashes_with_anything_but_invalid_name(text: str) -> None:
    try:
        ref = TableRef.parse(text)
    except InvalidName:
        return
    assert ref.schema and ref.name
    assert "\x00" not in ref.schema + ref.name


password = st.text(
    alphabet=string.ascii_letters + string.digits + "!#$%&()*+,;=?[]~-_.", min_size=6, max_size=24
)


@given(pw=password)
@settings(max_examples=300)
def test_no_password_survives_redaction_or_scrubbing(pw: str) -> None:
    enc = quote(pw, safe="")
    url = f"postgresql://etl:{enc}@db.example:5432/dw"
    assert redact_url(url) == "postgresql://etl:***@db.example:5432/dw"
    text = scrub(f"connection to {url} failed: FATAL password authentication failed")
    assert f"etl:{enc}@" not in text
    assert "etl:***@" in text
    kv = scrub(f"host=db user=etl password={pw} dbname=dw")
    assert f"password={pw}" not in kv
    assert "password=***" in kv

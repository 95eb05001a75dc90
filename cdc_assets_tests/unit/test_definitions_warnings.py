"""Loading the code location prints no warning of Dagster's about parameters we never pass."""

import warnings

import pytest

from cdc_assets.definitions import build_defs
from cdc_assets.settings import Settings

pytestmark = pytest.mark.unit


def test_loading_the_definitions_warns_nothing_about_owners() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # pytest's own filters (pyproject) do not apply here
        defs = build_defs(Settings())
        defs.get_repository_def()
        defs.get_repository_def().get_all_jobs()
    owners = [w for w in caught if "owners" in str(w.message)]
    assert not owners, [str(w.message) for w in owners]

"""Fixtures for the Dagster-shell integration tests: a real (temporary) Dagster instance, the
control repository on a fresh control database, and the code location's definitions."""

from collections.abc import Iterator

import dagster as dg
import pytest
from dagster import instance_for_test

from cdc_assets.control.repository import PipelineRepository
from cdc_assets.definitions import build_defs
from cdc_assets.settings import Settings


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with instance_for_test() as inst:
        yield inst


@pytest.fixture
def repo(control_url: str, monkeypatch: pytest.MonkeyPatch) -> PipelineRepository:
    monkeypatch.setenv("CDC_CONTROL_DB_URL", control_url)
    return PipelineRepository.from_url(control_url)


@pytest.fixture
def defs() -> dg.Definitions:
    return build_defs(Settings())

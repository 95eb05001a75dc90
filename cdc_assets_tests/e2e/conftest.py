"""Session fixtures for the e2e suite: one Dagster stack, a Dagster instance and a repository."""

import os
from collections.abc import Iterator

import dagster as dg
import pytest

from cdc_assets.control.repository import PipelineRepository
from cdc_assets_tests.e2e.harness import DagsterStack, start_stack


@pytest.fixture(scope="session")
def stack(pg_wal_logical: str) -> Iterator[DagsterStack]:
    yield from start_stack(pg_wal_logical)


@pytest.fixture(scope="session")
def dagster_instance(stack: DagsterStack) -> Iterator[dg.DagsterInstance]:
    """The stack's instance, opened in the test process (same DAGSTER_HOME and storage)."""
    saved = {k: os.environ.get(k) for k in ("DAGSTER_HOME", "DAGSTER_PG_URL", "CDC_CONTROL_DB_URL")}
    os.environ.update(
        DAGSTER_HOME=str(stack.home),
        DAGSTER_PG_URL=stack.dagster_pg_url,
        CDC_CONTROL_DB_URL=stack.control_url,
    )
    try:
        with dg.DagsterInstance.from_config(str(stack.home)) as instance:
            yield instance
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="session")
def control(stack: DagsterStack) -> PipelineRepository:
    return PipelineRepository.from_url(stack.control_url)

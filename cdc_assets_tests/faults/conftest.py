"""Fixtures of the fault matrix: the e2e harness's Dagster stack, scoped to this package.

Re-importing ``cdc_assets_tests.e2e.conftest``'s session fixtures here would not share them (pytest
caches a fixture per defining conftest, so it would start a second stack and keep both alive to the
end of the session). This package starts the same harness once and stops it as soon as the fault
scenarios are done, so at most one stack runs beside the e2e package's.
"""

import os
from collections.abc import Iterator

import dagster as dg
import pytest
from dagster_graphql import DagsterGraphQLClient

from cdc_assets.control.repository import PipelineRepository
from cdc_assets_tests.e2e.harness import DagsterStack, start_stack


@pytest.fixture(scope="package")
def stack(pg_wal_logical: str) -> Iterator[DagsterStack]:
    yield from start_stack(pg_wal_logical)


@pytest.fixture(scope="package")
def dagster_instance(stack: DagsterStack) -> Iterator[dg.DagsterInstance]:
    """The stack's instance opened in the test process (same DAGSTER_HOME and storage)."""
    keys = ("DAGSTER_HOME", "DAGSTER_PG_URL", "CDC_CONTROL_DB_URL")
    saved = {k: os.environ.get(k) for k in keys}
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


@pytest.fixture(scope="package")
def control(stack: DagsterStack) -> PipelineRepository:
    return PipelineRepository.from_url(stack.control_url)


@pytest.fixture(scope="package")
def client(stack: DagsterStack) -> DagsterGraphQLClient:
    return DagsterGraphQLClient("127.0.0.1", port_number=stack.port, timeout=60)

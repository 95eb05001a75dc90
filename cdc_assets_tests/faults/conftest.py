"""Fixtures of the fault matrix. The Dagster stack (``stack``, ``dagster_instance``, ``control``)
comes from the top-level conftest, shared with the e2e suite: one deployment per session."""

import pytest
from dagster_graphql import DagsterGraphQLClient

from cdc_assets_tests.e2e.harness import DagsterStack


@pytest.fixture(scope="package")
def client(stack: DagsterStack) -> DagsterGraphQLClient:
    return DagsterGraphQLClient("127.0.0.1", port_number=stack.port, timeout=60)

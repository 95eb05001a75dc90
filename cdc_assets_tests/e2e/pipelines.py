"""Test data for the Dagster-shell tests: a small source table, a pipeline row, row/event reads,
and the pipeline's table assets as the running code location shows them.

The code location builds one asset per target table from ``public.pipelines`` when it loads, so a
row added (or edited) after the stack started has its assets only after a reload. ``wait_assets``
asks the webserver to reload the location and waits until the pipeline's group holds exactly the
expected tables; it keeps working unchanged once the definitions sync sensor reloads by itself.
"""

import time
from typing import TYPE_CHECKING, Any

import psycopg

from cdc_assets.asset_keys import pipeline_prefix, source_key, table_key
from cdc_assets.domain import Mode, PipelineSpec, TableRef
from cdc_assets_tests.support import wait_until

if TYPE_CHECKING:
    from cdc_assets_tests.e2e.harness import DagsterStack

LOCATION = "cdc_assets"
REPOSITORY = "__repository__"
#: Seconds between two reload requests while the assets are not there yet.
RELOAD_EVERY_S = 10.0


def make_source(url: str, rows: int = 100, table: str = "orders") -> None:
    """A source table with ``rows`` rows (primary key, so CDC can use it too)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            psycopg.sql.SQL(
                "CREATE TABLE public.{} (id bigint PRIMARY KEY, note text NOT NULL)"
            ).format(psycopg.sql.Identifier(table))
        )
        conn.execute(
            psycopg.sql.SQL(
                "INSERT INTO public.{} SELECT g, repeat('x', 50) || g FROM generate_series(1, %s) g"
            ).format(psycopg.sql.Identifier(table)),
            (rows,),
        )


def spec(
    name: str,
    source: str,
    target: str,
    *,
    tables: tuple[str, ...] = ("public.orders",),
    mode: Mode = Mode.FULL_LOAD,
    enabled: bool = True,
) -> PipelineSpec:
    return PipelineSpec(
        name=name,
        source_url=source,
        target_url=target,
        tables=tuple(TableRef.parse(t) for t in tables),
        mode=mode,
        enabled=enabled,
    )


def count(url: str, table: str = "public.orders") -> int | None:
    """Rows in ``table`` on ``url``; None when the table does not exist."""
    ref = TableRef.parse(table)
    with psycopg.connect(url, autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass(%s)", (ref.display,)).fetchone()
        if not exists or exists[0] is None:
            return None
        row = conn.execute(
            psycopg.sql.SQL("SELECT count(*) FROM {}").format(
                psycopg.sql.Identifier(ref.schema, ref.name)
            )
        ).fetchone()
        return int(row[0]) if row else None


def events(repo: Any, name: str) -> list[tuple[str, str | None, str, str]]:
    """The pipeline's events oldest first as (phase, old, new, writer)."""
    return [
        (e.phase.value, e.old_status, e.new_status, e.writer.value)
        for e in reversed(repo.events(name, limit=100))
    ]


def target_keys(name: str, tables: tuple[str, ...] = ("public.orders",)) -> list[list[str]]:
    """The asset keys (as path lists) of a pipeline's target tables, default prefix."""
    prefix = pipeline_prefix(name, None)
    return [list(table_key(prefix, TableRef.parse(t))) for t in tables]


def source_keys(name: str, tables: tuple[str, ...] = ("public.orders",)) -> list[list[str]]:
    """The asset keys of a pipeline's source tables (external, upstream of the targets)."""
    prefix = pipeline_prefix(name, None)
    return [list(source_key(prefix, TableRef.parse(t))) for t in tables]


GROUP_ASSETS = """
query($group: AssetGroupSelector!) {
  assetNodes(group: $group) { assetKey { path } dependencyKeys { path } isMaterializable }
}
"""

RELOAD = """
mutation($name: String!) {
  reloadRepositoryLocation(repositoryLocationName: $name) {
    __typename
    ... on WorkspaceLocationEntry { loadStatus }
    ... on PythonError { message }
  }
}
"""


def group_assets(stack: "DagsterStack", group: str) -> dict[tuple[str, ...], dict[str, Any]]:
    """The assets of ``group`` the webserver's code location has now, by key."""
    data = stack.graphql(
        GROUP_ASSETS,
        {
            "group": {
                "groupName": group,
                "repositoryName": REPOSITORY,
                "repositoryLocationName": LOCATION,
            }
        },
    )
    return {tuple(n["assetKey"]["path"]): n for n in (data or {}).get("assetNodes") or []}


def reload_location(stack: "DagsterStack") -> None:
    """Ask the webserver to reload the code location (what the UI's Reload button does)."""
    data = stack.graphql(RELOAD, {"name": LOCATION})
    result = data["reloadRepositoryLocation"]
    assert result["__typename"] == "WorkspaceLocationEntry", f"reload failed: {result}"


def wait_assets(
    stack: "DagsterStack",
    name: str,
    tables: tuple[str, ...] = ("public.orders",),
    timeout: float = 90,
) -> dict[tuple[str, ...], dict[str, Any]]:
    """Reload until the group ``name`` holds exactly these tables' target and source assets.

    Exact, not a subset: after an edit of the row's tables the old ones must be gone too.
    Returns the group's asset nodes by key.
    """
    want = {tuple(k) for k in target_keys(name, tables) + source_keys(name, tables)}
    last_reload = [float("-inf")]

    def loaded() -> dict[tuple[str, ...], dict[str, Any]] | None:
        if not stack.location_loaded():
            return None
        nodes = group_assets(stack, name)
        if set(nodes) == want:
            return nodes
        if time.monotonic() - last_reload[0] >= RELOAD_EVERY_S:
            last_reload[0] = time.monotonic()
            reload_location(stack)
        return None

    return wait_until(
        loaded,
        timeout=timeout,
        describe=f"the code location to show the assets of pipeline {name!r}: {sorted(want)}",
        interval=0.5,
    )

"""No redeploy, no click: a row written to ``public.pipelines`` becomes table assets by itself.

The stack runs the location under ``dagster code-server start`` (harness.py), as in production.
The test writes the row with the repository (as SQL would: no reload request from the CLI or
the test), then watches the webserver's GraphQL API: the definitions sync sensor notices the
changed catalog and reloads the location, the launch sensor loads the tables, and removing the
row takes the assets out of the definitions again.
"""

import uuid
from typing import Any

import dagster as dg
import pytest

from cdc_assets.defs.catalog import PipelineAssets, catalog_from_rows
from cdc_assets.defs.sync import SENSOR_NAME
from cdc_assets.domain import FullLoadStatus
from cdc_assets_tests.e2e.harness import LOCATION, DagsterStack
from cdc_assets_tests.e2e.pipelines import count, make_source, spec
from cdc_assets_tests.support import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

VISIBLE_WITHIN_S = 60.0
NODES_QUERY = "{ assetNodes { assetKey { path } dependencyKeys { path } } }"
TICKS_QUERY = (
    "query($sel: SensorSelector!) { sensorOrError(sensorSelector: $sel) { ... on Sensor { "
    "sensorState { ticks(limit: 50) { status skipReason } } } } }"
)


def asset_graph(stack: DagsterStack) -> dict[tuple[str, ...], set[tuple[str, ...]]]:
    """Every defined asset key the webserver serves, with its upstream keys."""
    nodes = stack.graphql(NODES_QUERY)["assetNodes"]
    return {
        tuple(n["assetKey"]["path"]): {tuple(d["path"]) for d in n["dependencyKeys"]} for n in nodes
    }


def sync_reasons(stack: DagsterStack) -> list[str]:
    """The definitions sync sensor's recent skip reasons, newest first."""
    sel = {
        "repositoryName": "__repository__",
        "repositoryLocationName": LOCATION,
        "sensorName": SENSOR_NAME,
    }
    data = stack.graphql(TICKS_QUERY, {"sel": sel})["sensorOrError"]
    return [t["skipReason"] or "" for t in data["sensorState"]["ticks"]]


def shows_assets(stack: DagsterStack, p: PipelineAssets) -> Any:
    """The graph once every target of ``p`` is defined with its source upstream, else False."""
    graph = asset_graph(stack)
    wanted = dict(zip(p.target_keys(), p.source_keys(), strict=True))
    ready = all(t in graph and s in graph[t] and s in graph for t, s in wanted.items())
    return ready and graph


def test_row_becomes_assets_and_leaves(stack, dagster_instance, control, new_db) -> None:
    src, dst = new_db("src"), new_db("dst")
    make_source(src, rows=30, table="orders")
    make_source(src, rows=20, table="items")
    name = f"sync_{uuid.uuid4().hex[:8]}"
    row = control.add(spec(name, src, dst, tables=("public.orders", "public.items")))
    p = catalog_from_rows([row]).pipelines[0]
    assert len(p.target_keys()) == 2

    graph = wait_until(
        lambda: shows_assets(stack, p),
        timeout=VISIBLE_WITHIN_S,
        describe=f"{name}'s two table assets in the webserver's definitions",
        interval=1,
    )
    for target, source in zip(p.target_keys(), p.source_keys(), strict=True):
        assert graph[target] == {source}, f"{target} upstream: {graph[target]}"
    assert any("reload of cdc_assets requested" in r for r in sync_reasons(stack)), (
        f"the sync sensor did not request the reload: {sync_reasons(stack)[:5]}\n{stack.logs()}"
    )

    # The launch sensor sees the row's assets in the reloaded definitions and loads them.
    wait_until(
        lambda: control.get(name).full_load_status is FullLoadStatus.COMPLETED,
        timeout=120,
        describe=f"{name}'s sensor-launched full load to complete",
        interval=1,
    )
    assert count(dst, "public.orders") == 30
    assert count(dst, "public.items") == 20
    for key in p.target_keys():
        event = dagster_instance.get_latest_materialization_event(dg.AssetKey(list(key)))
        assert event is not None, f"{key} was never materialized"
        assert event.run_id == control.get(name).full_load_run_id

    control.remove(name)
    wait_until(
        lambda: not (set(p.target_keys()) | set(p.source_keys())) & set(asset_graph(stack)),
        timeout=VISIBLE_WITHIN_S,
        describe=f"{name}'s assets to leave the definitions",
        interval=1,
    )
    wait_until(
        lambda: sync_reasons(stack)[0].startswith("in sync"),
        timeout=30,
        describe="the sync sensor to report the definitions in sync",
        interval=1,
    )

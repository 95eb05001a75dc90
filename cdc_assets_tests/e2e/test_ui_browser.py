"""A person's launch, in a real browser: Debian's Chromium driven by Playwright against the stack's
``dagster-webserver``. Opens the lineage graph of a pipeline's asset group, checks it shows one
node per target table with its source table upstream, clicks *Materialize all*, and checks through
SQL that the row went NOT_STARTED -> IN_PROGRESS -> COMPLETED and that the target tables are
correct. Saves screenshots of the lineage graph and of the finished run.
"""

import os
import re
import uuid
from pathlib import Path

import dagster as dg
import pytest

from cdc_assets.control.repository import PipelineRepository
from cdc_assets.domain import FullLoadStatus
from cdc_assets_tests.e2e.harness import DagsterStack
from cdc_assets_tests.e2e.pipelines import (
    LOCATION,
    REPOSITORY,
    count,
    events,
    make_source,
    source_keys,
    spec,
    target_keys,
    wait_assets,
)
from cdc_assets_tests.support import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
ARTIFACTS = Path(os.environ.get("CDC_TEST_ARTIFACTS", "test-artifacts")).resolve()


#: Two tables with different row counts: one lineage pair each, and a mixed-up copy shows.
ROWS = {"public.orders": 321, "public.items": 123}
TABLES = tuple(ROWS)


def test_materialize_a_pipeline_from_its_lineage_graph(
    stack: DagsterStack,
    dagster_instance: dg.DagsterInstance,
    control: PipelineRepository,
    new_db,
) -> None:
    from playwright.sync_api import expect, sync_playwright

    assert Path(CHROMIUM).exists(), "Debian's chromium is missing: run `make browser` (apt)"
    source, target = new_db("src"), new_db("tgt")
    for table, rows in ROWS.items():
        make_source(source, rows=rows, table=table.split(".")[1])
    name = f"ui_{uuid.uuid4().hex[:8]}"
    # Disabled: the launch sensor launches nothing, so the only run is the one clicked in the UI.
    control.add(spec(name, source, target, tables=TABLES, enabled=False))
    nodes = wait_assets(stack, name, TABLES)
    targets, sources = target_keys(name, TABLES), source_keys(name, TABLES)
    for tkey, skey in zip(targets, sources, strict=True):
        assert [d["path"] for d in nodes[tuple(tkey)]["dependencyKeys"]] == [skey]
        assert nodes[tuple(tkey)]["isMaterializable"] and not nodes[tuple(skey)]["isMaterializable"]
    assert control.get(name).full_load_status is FullLoadStatus.NOT_STARTED
    stack.graphql("mutation { setNuxSeen }")  # the first-visit community modal covers the page

    base = f"http://127.0.0.1:{stack.port}"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    lineage_shot = ARTIFACTS / "ui_lineage.png"
    shot = ARTIFACTS / "ui_materialize_run.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{base}/locations/{REPOSITORY}@{LOCATION}/asset-groups/{name}")
            # One node per target table, its source table's node upstream, an edge between.
            pairs = wait_until(
                lambda: lineage(page, TABLES),
                timeout=60,
                describe=f"the lineage graph of group {name} to draw source -> target per table",
                interval=0.5,
            )
            for table, (src, tgt) in pairs.items():
                assert src["x"] + src["w"] <= tgt["x"], (table, src, tgt)  # upstream is left
            expect(page.get_by_text("Loading...")).to_have_count(0, timeout=30_000)
            page.screenshot(path=str(lineage_shot), full_page=True)

            materialize = page.get_by_role("button", name=re.compile(r"Materialize all"))
            expect(materialize.first).to_be_enabled(timeout=60_000)
            materialize.first.click()
            toast = page.get_by_text(re.compile(r"Launched run [0-9a-f]{8}")).first
            expect(toast).to_be_visible(timeout=30_000)
            short_id = toast.inner_text().strip().split()[-1]

            row = wait_until(
                lambda: (r := control.get(name)).full_load_status is FullLoadStatus.COMPLETED and r,
                timeout=120,
                describe=f"{name} to be COMPLETED after the UI launch",
                interval=0.5,
            )
            assert row.last_run_id and row.last_run_id.startswith(short_id)
            page.goto(f"{base}/runs/{row.last_run_id}")
            expect(page.get_by_text("Success", exact=True).first).to_be_visible(timeout=60_000)
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()

    assert row.last_error is None
    for table, rows in ROWS.items():
        assert count(target, table) == rows, table
    run = dagster_instance.get_run_by_id(row.last_run_id)
    assert run is not None and run.job_name == "__ASSET_JOB"
    # Materialize all selected the group's table assets, never its external source tables.
    assert run.asset_selection == {dg.AssetKey(k) for k in targets}
    story = [
        (old, new) for phase, old, new, _writer in events(control, name) if phase == "full_load"
    ]
    assert story[0] == ("NOT_STARTED", "IN_PROGRESS"), story
    assert story[-1][1] == "COMPLETED", story
    for path in (lineage_shot, shot):
        assert path.stat().st_size > 10_000, path
    print(f"\nUI screenshots: lineage {lineage_shot}, finished run {shot}")


GRAPH_JS = """
() => {
  const svg = document.querySelector("svg[class*=AssetGraphExplorer_svgContainer]");
  if (!svg) return null;
  const nodes = [...svg.querySelectorAll("foreignObject")].map((fo) => {
    const name = fo.querySelector("[class*=AssetNode_assetName]");
    const box = fo.querySelector("[class*=AssetNode_assetNodeBox]");
    return {
      name: name ? name.textContent.trim() : null,
      materializable: !!box && /materializable/.test(box.className),
      x: +fo.getAttribute("x"), y: +fo.getAttribute("y"),
      w: +fo.getAttribute("width"), h: +fo.getAttribute("height"),
    };
  });
  const edges = [...svg.querySelectorAll("path[marker-end]")].map((p) => {
    const nums = (p.getAttribute("d").match(/-?[0-9.]+/g) || []).map(Number);
    return nums.length >= 4 ? [nums[0], nums[1], nums.at(-2), nums.at(-1)] : null;
  });
  return {nodes, edges};
}
"""
#: Pixels an edge's ends may lie from a node's side (the arrow head stops short of the box).
EDGE_SLACK_PX = 12


def lineage(page, tables: tuple[str, ...]) -> dict[str, tuple[dict, dict]] | None:  # type: ignore[no-untyped-def]
    """Each table's (source node, target node) as the graph draws them, once both are drawn
    and an edge runs from the source's right side to the target's left side; None until then.

    Source tables are external (no Materialize), so their nodes are the non-materializable
    ones; the graph runs left to right, upstream first.
    """
    graph = page.evaluate(GRAPH_JS)
    if not graph:
        return None
    names = sorted(n["name"] for n in graph["nodes"])
    wanted = sorted([t.split(".")[1] for t in tables] * 2)
    if names != wanted:
        return None
    pairs = {}
    for table in tables:
        short = table.split(".")[1]
        mine = [n for n in graph["nodes"] if n["name"] == short]
        sources = [n for n in mine if not n["materializable"]]
        targets = [n for n in mine if n["materializable"]]
        assert len(sources) == len(targets) == 1, (table, mine)
        src, tgt = sources[0], targets[0]
        start = (src["x"] + src["w"], src["y"] + src["h"] / 2)
        end = (tgt["x"], tgt["y"] + tgt["h"] / 2)
        joined = [
            e
            for e in graph["edges"]
            if e
            and abs(e[0] - start[0]) <= EDGE_SLACK_PX
            and abs(e[1] - start[1]) <= EDGE_SLACK_PX
            and abs(e[2] - end[0]) <= EDGE_SLACK_PX
            and abs(e[3] - end[1]) <= EDGE_SLACK_PX
        ]
        if not joined:
            return None
        pairs[table] = (src, tgt)
    return pairs

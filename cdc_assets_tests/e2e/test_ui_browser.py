"""A person's launch, in a real browser: Debian's Chromium driven by Playwright against the stack's
``dagster-webserver``. Opens the full-load asset, picks a pipeline's partition in the Materialize
dialog, launches it, and checks through SQL that the row went NOT_STARTED -> IN_PROGRESS ->
COMPLETED and that the target table is correct. Saves a screenshot of the finished run.
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
from cdc_assets_tests.e2e.pipelines import count, events, make_source, spec
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


def test_materialize_a_partition_from_the_ui(
    stack: DagsterStack,
    dagster_instance: dg.DagsterInstance,
    control: PipelineRepository,
    new_db,
) -> None:
    from playwright.sync_api import expect, sync_playwright

    assert Path(CHROMIUM).exists(), "Debian's chromium is missing: run `make browser` (apt)"
    source, target = new_db("src"), new_db("tgt")
    make_source(source, rows=321)
    name = f"ui_{uuid.uuid4().hex[:8]}"
    # Disabled: the launch sensor adds its partition but launches nothing, so the only run is
    # the one clicked in the UI.
    control.add(spec(name, source, target, enabled=False))
    wait_until(
        lambda: name in dagster_instance.get_dynamic_partitions("pipelines"),
        timeout=60,
        describe=f"the launch sensor to add the partition {name}",
    )
    assert control.get(name).full_load_status is FullLoadStatus.NOT_STARTED
    stack.graphql("mutation { setNuxSeen }")  # the first-visit community modal covers the page

    base = f"http://127.0.0.1:{stack.port}"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "ui_materialize_run.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{base}/assets/target_tables")
            materialize = page.get_by_role("button", name=re.compile(r"Materialize"))
            expect(materialize.first).to_be_enabled(timeout=60_000)
            materialize.first.click()
            dialog = page.get_by_role("dialog").first
            expect(dialog).to_be_visible(timeout=30_000)
            dialog.get_by_text("Select a partition or create one").click()
            page.get_by_placeholder("Filter partitions").fill(name)
            page.get_by_role("menuitem", name=re.compile(rf"^{name}")).click()
            page.keyboard.press("Escape")  # close the partition menu, not the dialog
            page.get_by_role("button", name=re.compile(r"^Launch 1 run")).click()
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
    assert count(target) == 321
    story = [
        (old, new) for phase, old, new, _writer in events(control, name) if phase == "full_load"
    ]
    assert story[0] == ("NOT_STARTED", "IN_PROGRESS"), story
    assert story[-1][1] == "COMPLETED", story
    assert shot.stat().st_size > 10_000
    print(f"\nUI screenshot of the finished run: {shot}")

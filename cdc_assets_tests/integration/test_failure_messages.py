"""A failed run's page leads with the project's one-line message and its fix (issue 11, item 6).

The run's events are read back through Dagster's GraphQL schema, the API the UI itself reads,
served in-process over the real (test) instance: the first line of each failure event's error is
what the run page puts at the top.
"""

from collections.abc import Iterator
from typing import Any

import dagster as dg
import pytest
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import EmptyWorkspaceTarget
from dagster_graphql.test.utils import execute_dagster_graphql

from cdc_assets.defs.reconciler import reconcile
from cdc_assets.domain import CdcStatus, FullLoadStatus, Mode, Phase
from cdc_assets.embedded import free_port
from cdc_assets.ops_cli import execute_pipeline
from cdc_assets_tests.e2e.pipelines import make_source, spec

pytestmark = pytest.mark.integration

RUN_EVENTS = """
query RunEvents($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run {
      status
      eventConnection {
        events {
          __typename
          ... on ExecutionStepFailureEvent {
            error { className message }
            failureMetadata { metadataEntries { label ... on TextMetadataEntry { text } } }
          }
          ... on RunFailureEvent { error { className message } }
          ... on ResourceInitFailureEvent { error { className message } }
        }
      }
    }
  }
}
"""

DAGSTER_WRAPPERS = {"DagsterExecutionStepExecutionError", "DagsterResourceFunctionError"}


@pytest.fixture
def graphql(instance: dg.DagsterInstance) -> Iterator[Any]:
    with WorkspaceProcessContext(instance, EmptyWorkspaceTarget()) as process:

        def query(run_id: str) -> list[dict[str, Any]]:
            result = execute_dagster_graphql(
                process.create_request_context(), RUN_EVENTS, {"runId": run_id}
            )
            run = result.data["runOrError"]
            assert run["__typename"] == "Run" and run["status"] == "FAILURE"
            return [e for e in run["eventConnection"]["events"] if e.get("error")]

        yield query


def first_line(event: dict[str, Any]) -> str:
    return str(event["error"]["message"]).splitlines()[0]


def leads_with(event: dict[str, Any], message: str) -> bool:
    """The error's first line is ``<exception class>: <message>``, nothing before the message."""
    head = first_line(event)
    return head.split(": ", 1)[1] == message and event["error"]["className"] not in (
        DAGSTER_WRAPPERS
    )


def test_op_failure_leads_with_the_message_and_fix(instance, repo, defs, new_db, graphql) -> None:
    src, dst = new_db("src"), new_db("dst")
    make_source(src, rows=5)
    repo.add(spec("broken", src, dst, tables=("public.orders", "public.nope")))

    result = execute_pipeline(instance, "broken", Phase.FULL_LOAD, defs=defs)

    assert not result.success
    row = repo.get("broken")
    assert row.full_load_status is FullLoadStatus.FAILED and row.last_error
    assert "pipeline 'broken'" in row.last_error and "public.nope" in row.last_error
    assert "(fix: " in row.last_error
    events = graphql(result.dagster_run.run_id)
    kinds = [e["__typename"] for e in events]
    assert kinds == ["ExecutionStepFailureEvent", "RunFailureEvent"], kinds
    for event in events:
        assert leads_with(event, row.last_error), first_line(event)
    step = events[0]
    entries = {m["label"]: m.get("text") for m in step["failureMetadata"]["metadataEntries"]}
    assert entries["pipeline"] == "broken" and entries["kind"] == "source"
    assert entries["fix"] and entries["fix"] in row.last_error
    # The reconciler reads the same events: last_error stays the clean line.
    reconcile(instance, repo, ["broken"])
    assert repo.get("broken").last_error == row.last_error


def test_cdc_op_failure_leads_with_the_message(instance, repo, defs, new_db, graphql) -> None:
    src, dst = new_db("src"), new_db("dst")
    repo.add(spec("plain", src, dst, mode=Mode.FULL_LOAD))

    result = execute_pipeline(instance, "plain", Phase.CDC, defs=defs)

    assert not result.success
    row = repo.get("plain")
    assert row.cdc_status is CdcStatus.FAILED and row.last_error
    assert "full_load_and_cdc" in row.last_error
    for event in graphql(result.dagster_run.run_id):
        assert leads_with(event, row.last_error), first_line(event)


def test_resource_failure_leads_with_the_message_without_the_password(
    instance, repo, defs, new_db, graphql
) -> None:
    dead = f"postgresql://postgres:hunter2@127.0.0.1:{free_port()}/nope"
    repo.add(spec("dead", dead, new_db("dst")))

    result = execute_pipeline(instance, "dead", Phase.FULL_LOAD, defs=defs)

    assert not result.success
    assert repo.get("dead").full_load_status is FullLoadStatus.NOT_STARTED  # the op never ran
    [event] = graphql(result.dagster_run.run_id)
    assert event["__typename"] == "RunFailureEvent"
    assert "hunter2" not in str(event)
    head = first_line(event)
    assert "pipeline 'dead': cannot connect to source" in head and "(fix: " in head, head
    # The failure sensor's path writes the same line into the row.
    reconcile(instance, repo, ["dead"])
    row = repo.get("dead")
    assert row.full_load_status is FullLoadStatus.FAILED and row.last_error
    assert leads_with(event, row.last_error), head
    assert "hunter2" not in row.last_error

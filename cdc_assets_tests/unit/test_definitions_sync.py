"""The definitions sync sensor's decisions (``defs/sync.py``) and the reload answer parsing.

Pure parts only: fingerprints, the cursor, the retry window, and what each GraphQL answer
means. The real reload against a webserver is in ``e2e/test_definitions_sync.py``.
"""

import json

import pytest

from cdc_assets.defs.catalog import Catalog, PipelineAssets
from cdc_assets.defs.sync import RETRY_S, Requested, decide, tick
from cdc_assets.domain import Mode, TableRef
from cdc_assets.reload import ReloadOutcome, _outcome, request_reload
from cdc_assets.settings import DEFAULT_WEBSERVER_URL, dagster_webserver_url


def catalog(*names: str) -> Catalog:
    return Catalog(
        pipelines=tuple(
            PipelineAssets(n, Mode.FULL_LOAD, "public", (n,), (TableRef("public", "t"),))
            for n in names
        )
    )


class Calls:
    """A reload stand-in that counts its calls and answers as told."""

    def __init__(self, outcome: ReloadOutcome) -> None:
        self.outcome = outcome
        self.count = 0

    def __call__(self) -> ReloadOutcome:
        self.count += 1
        return self.outcome


OK = ReloadOutcome(True, "reload of cdc_assets requested at http://127.0.0.1:3000")
DOWN = ReloadOutcome(False, "Dagster webserver at http://127.0.0.1:3000 unreachable (...)")


def test_equal_catalogs_are_in_sync_and_clear_the_cursor() -> None:
    reload = Calls(OK)
    stale = Requested("abc", 1.0).to_cursor()
    text, cursor = tick(catalog("a"), catalog("a"), stale, 100.0, reload)
    assert text.startswith("in sync")
    assert cursor == ""
    assert reload.count == 0
    # No cursor to clear: left alone.
    assert tick(catalog("a"), catalog("a"), None, 100.0, reload)[1] is None


def test_a_new_row_requests_a_reload_once_while_it_is_in_flight() -> None:
    loaded, now_rows = catalog("a"), catalog("a", "b")
    reload = Calls(OK)
    text, cursor = tick(loaded, now_rows, None, 1000.0, reload)
    assert reload.count == 1
    assert "public.pipelines changed" in text and "reload of cdc_assets requested" in text
    assert Requested.from_cursor(cursor) == Requested(now_rows.fingerprint(), 1000.0)
    # The old definitions tick again before the reload lands: no second request.
    text2, cursor2 = tick(loaded, now_rows, cursor, 1000.0 + RETRY_S - 1, reload)
    assert reload.count == 1
    assert text2.startswith("reload requested") and cursor2 == cursor
    # Still not reloaded after the retry window: ask again.
    _, cursor3 = tick(loaded, now_rows, cursor, 1000.0 + RETRY_S, reload)
    assert reload.count == 2
    assert Requested.from_cursor(cursor3) == Requested(now_rows.fingerprint(), 1000.0 + RETRY_S)


def test_another_change_during_a_reload_requests_at_once() -> None:
    loaded = catalog("a")
    cursor = Requested(catalog("a", "b").fingerprint(), 1000.0).to_cursor()
    reload = Calls(OK)
    tick(loaded, catalog("a", "b", "c"), cursor, 1001.0, reload)
    assert reload.count == 1


def test_unreachable_webserver_says_the_fix_and_waits_before_retrying() -> None:
    reload = Calls(DOWN)
    text, cursor = tick(catalog(), catalog("b"), None, 50.0, reload)
    assert "reload request failed" in text and "unreachable" in text
    assert f"retrying in {RETRY_S:.0f}s" in text
    tick(catalog(), catalog("b"), cursor, 51.0, reload)
    assert reload.count == 1


def test_a_slow_answer_is_a_pending_reload_not_a_failure() -> None:
    reload = Calls(ReloadOutcome(False, "reload of cdc_assets sent, no answer", pending=True))
    text, cursor = tick(catalog(), catalog("b"), None, 50.0, reload)
    assert "failed" not in text and "no answer" in text
    assert (
        decide(
            catalog().fingerprint(), catalog("b").fingerprint(), Requested.from_cursor(cursor), 51.0
        ).action
        == "wait"
    )


@pytest.mark.parametrize("cursor", ["", "not json", "{}", '{"fingerprint": "x"}', "[1]"])
def test_a_foreign_cursor_is_no_request(cursor: str) -> None:
    assert Requested.from_cursor(cursor) is None
    assert decide("a", "b", Requested.from_cursor(cursor), 0.0).action == "request"


def test_a_clock_step_back_does_not_wait_forever() -> None:
    requested = Requested("b", 5000.0)
    assert decide("a", "b", requested, 100.0).action == "request"


def test_problem_rows_change_the_fingerprint() -> None:
    # A row that cannot be built still counts: fixing it must reload the location.
    broken = Catalog(problems={"p": "bad table"})
    assert broken.fingerprint() != Catalog().fingerprint()


def test_webserver_url_setting() -> None:
    assert dagster_webserver_url({}) == DEFAULT_WEBSERVER_URL == "http://127.0.0.1:3000"
    env = {"CDC_DAGSTER_WEBSERVER_URL": " http://dagster:8080/ "}
    assert dagster_webserver_url(env) == "http://dagster:8080"


@pytest.mark.parametrize(
    ("payload", "ok", "part"),
    [
        (
            {"data": {"reloadRepositoryLocation": {"__typename": "WorkspaceLocationEntry"}}},
            True,
            "requested",
        ),
        (
            {
                "data": {
                    "reloadRepositoryLocation": {
                        "__typename": "RepositoryLocationNotFound",
                        "message": "Location cdc_assets does not exist.",
                    }
                }
            },
            False,
            "does not exist",
        ),
        ({"errors": [{"message": "Cannot query field"}]}, False, "Cannot query field"),
        ({"data": None}, False, "no answer"),
        ([], False, "no answer"),
    ],
)
def test_reload_answers(payload: object, ok: bool, part: str) -> None:
    outcome = _outcome(json.loads(json.dumps(payload)), "http://h:3000", "cdc_assets")
    assert outcome.ok is ok
    assert part in outcome.detail
    assert "\n" not in outcome.detail


def test_unreachable_webserver_names_the_variable_and_hides_the_password() -> None:
    # Port 9 on localhost: nothing listens there, the connection is refused at once.
    outcome = request_reload("http://user:s3cret@127.0.0.1:9", timeout=2)
    assert not outcome.ok
    assert "CDC_DAGSTER_WEBSERVER_URL" in outcome.detail
    assert "s3cret" not in outcome.detail

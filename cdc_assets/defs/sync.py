"""``definitions_sync_sensor``: a changed ``public.pipelines`` reloads the code location by itself.

The per-table assets are built when the location loads (``definitions.py``), and Dagster only
re-imports definitions on a reload. Each tick compares the fingerprint of the catalog the
definitions were built from with the one the rows give now; when they differ it asks the
webserver for ``reloadRepositoryLocation`` (``cdc_assets/reload.py``). A row inserted by SQL, by
the CLI or by anything else then shows as assets within a tick and a reload, with no redeploy
and no click.

The request is kept in the cursor (fingerprint and time): while a reload is in flight the old
definitions keep ticking with the old fingerprint, and must not ask again every tick; after
:data:`RETRY_S` without the new definitions, the sensor asks again. The reloaded location's
sensor has the same name, so it inherits the cursor, sees the fingerprints equal and clears it.
"""

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dagster as dg

from cdc_assets.defs.catalog import Catalog, catalog_from_rows
from cdc_assets.defs.resources import ControlDb
from cdc_assets.defs.run_status import error_text
from cdc_assets.reload import ReloadOutcome, request_reload
from cdc_assets.settings import WEBSERVER_URL_VAR, Settings

SENSOR_NAME = "definitions_sync_sensor"
#: How long a requested reload may take before the sensor asks again.
RETRY_S = 60.0
#: The sensor's HTTP timeout: the webserver answers when the reload is done (seconds, ~15 s
#: for 400 tables), and a tick must end well within Dagster's 60 s sensor timeout.
REQUEST_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class Requested:
    """The last reload this sensor asked for: the fingerprint it wanted, and when."""

    fingerprint: str
    at: float

    def to_cursor(self) -> str:
        """The sensor cursor text (JSON)."""
        return json.dumps({"fingerprint": self.fingerprint, "at": self.at}, sort_keys=True)

    @classmethod
    def from_cursor(cls, cursor: str | None) -> "Requested | None":
        """The cursor's request; ``None`` for no cursor or one this code did not write."""
        if not cursor:
            return None
        try:
            data = json.loads(cursor)
            return cls(fingerprint=str(data["fingerprint"]), at=float(data["at"]))
        except (ValueError, TypeError, KeyError):
            return None


@dataclass(frozen=True, slots=True)
class Decision:
    """What a tick does: ``in_sync``, ``wait`` (a reload is in flight) or ``request``."""

    action: str
    text: str


def decide(loaded: str, current: str, requested: Requested | None, now: float) -> Decision:
    """The pure part of a tick: compare fingerprints, honour a reload already in flight."""
    if loaded == current:
        return Decision("in_sync", f"in sync: the definitions match public.pipelines ({loaded})")
    if requested is not None and requested.fingerprint == current:
        age = now - requested.at
        if 0 <= age < RETRY_S:
            return Decision(
                "wait",
                f"reload requested {age:.0f}s ago for catalog {current} (loaded {loaded}); "
                f"waiting for the new definitions, asking again after {RETRY_S:.0f}s",
            )
    return Decision("request", f"public.pipelines changed: catalog {current}, loaded {loaded}")


def tick(
    catalog: Catalog,
    current: Catalog,
    cursor: str | None,
    now: float,
    reload: Callable[[], ReloadOutcome],
) -> tuple[str, str | None]:
    """One tick given the rows' catalog ``current``: (SkipReason text, new cursor).

    Calls ``reload`` at most once. In sync, the cursor is emptied (``""``; ``None`` would keep
    it), so a later change back to an old catalog is requested again at once.
    """
    requested = Requested.from_cursor(cursor)
    decision = decide(catalog.fingerprint(), current.fingerprint(), requested, now)
    if decision.action == "in_sync":
        return decision.text, ("" if cursor else cursor)
    if decision.action == "wait":
        return decision.text, cursor
    outcome = reload()
    after = Requested(current.fingerprint(), now).to_cursor()
    if outcome.ok or outcome.pending:
        return f"{decision.text}: {outcome.detail}", after
    return (
        f"{decision.text}, but the reload request failed: {outcome.detail} "
        f"(or reload the location in the UI); retrying in {RETRY_S:.0f}s",
        after,
    )


def definitions_sync_sensor(settings: Settings, catalog: Catalog) -> Any:
    """The sensor, built with the catalog these definitions were loaded from."""

    @dg.sensor(
        name=SENSOR_NAME,
        minimum_interval_seconds=settings.sensor_interval_s,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Reloads the code location when public.pipelines no longer matches the loaded "
            f"assets (webserver URL: {WEBSERVER_URL_VAR}, default http://127.0.0.1:3000)."
        ),
    )
    def _sensor(context: dg.SensorEvaluationContext, control: ControlDb) -> dg.SensorResult:
        try:
            rows = control.repository().list()
        except Exception as exc:  # an outage: the loaded (maybe last good) assets stay as they are
            return dg.SensorResult(
                skip_reason=dg.SkipReason(
                    f"control database unreadable ({error_text(exc)}): definitions unchanged"
                ),
                cursor=context.cursor,
            )
        text, cursor = tick(
            catalog,
            catalog_from_rows(rows),
            context.cursor,
            time.time(),
            lambda: request_reload(timeout=REQUEST_TIMEOUT_S),
        )
        if cursor and cursor != context.cursor:  # a reload was requested this tick
            context.log.info(text)
        return dg.SensorResult(skip_reason=dg.SkipReason(text), cursor=cursor)

    return _sensor

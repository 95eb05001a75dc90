"""Ask the Dagster webserver to reload the code location, so a changed control table shows.

Dagster builds the per-table assets when the code location loads (``definitions.py``); a row
added or removed later reaches the UI only after a reload. Both the definitions sync sensor and
the CLI (after ``pipeline add`` / ``pipeline remove``) call :func:`request_reload`. Standard
library only (``urllib``), so the CLI stays importable without Dagster and this module sits in
the bottom layer of ``.importlinter``.

The webserver's URL is ``CDC_DAGSTER_WEBSERVER_URL``; unset, it is ``http://127.0.0.1:3000``,
where ``dagster dev`` and ``dagster-webserver`` listen by default. A reload re-imports the
definitions only under ``dagster code-server start`` (``dagster dev`` runs one): a plain
``dagster api grpc`` server accepts the request and keeps its old definitions.
"""

import json
import urllib.error
import urllib.request
from dataclasses import dataclass

from cdc_assets.secrets import redact_url, scrub
from cdc_assets.settings import WEBSERVER_URL_VAR, dagster_webserver_url

#: Fixed in workspace.yaml: part of every sensor's identity (its cursor).
LOCATION_NAME = "cdc_assets"
TIMEOUT_S = 30.0

RELOAD_MUTATION = (
    "mutation($name: String!) { reloadRepositoryLocation(repositoryLocationName: $name) { "
    "__typename ... on WorkspaceLocationEntry { name loadStatus } "
    "... on PythonError { message } ... on ReloadNotSupported { message } "
    "... on RepositoryLocationNotFound { message } ... on UnauthorizedError { message } } }"
)


@dataclass(frozen=True, slots=True)
class ReloadOutcome:
    """What the webserver said; ``detail`` is one line fit for a log or a SkipReason."""

    ok: bool
    detail: str
    pending: bool = False
    """Sent, but no answer in time: the webserver answers when the re-import ends, which can
    take longer than the timeout with many pipelines; the reload goes on."""


def request_reload(
    url: str | None = None, *, location: str = LOCATION_NAME, timeout: float = TIMEOUT_S
) -> ReloadOutcome:
    """POST ``reloadRepositoryLocation`` to the webserver; never raises.

    The webserver answers once the code server re-imported the definitions and it fetched them
    (seconds; more with hundreds of pipelines): a timeout then is :attr:`ReloadOutcome.pending`,
    not a failure.
    """
    base = url if url is not None else dagster_webserver_url()
    shown = redact_url(base)
    body = json.dumps({"query": RELOAD_MUTATION, "variables": {"name": location}}).encode()
    req = urllib.request.Request(
        f"{base.rstrip('/')}/graphql",
        data=body,
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            payload = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return ReloadOutcome(
            False,
            f"{shown} answered HTTP {exc.code} to the reload request: "
            f"set {WEBSERVER_URL_VAR} to the Dagster webserver's URL",
        )
    except TimeoutError:
        return ReloadOutcome(
            False,
            f"reload of {location} sent to {shown}, no answer within {timeout:.0f}s "
            "(the re-import may still be under way)",
            pending=True,
        )
    except (OSError, ValueError) as exc:
        text = str(getattr(exc, "reason", None) or exc)
        reason = f": {scrub(text.splitlines()[0])}" if text else ""
        return ReloadOutcome(
            False,
            f"Dagster webserver at {shown} unreachable ({type(exc).__name__}{reason}): "
            f"set {WEBSERVER_URL_VAR} to the webserver's URL",
        )
    return _outcome(payload, shown, location)


def _outcome(payload: object, shown: str, location: str) -> ReloadOutcome:
    """Read the GraphQL answer: an entry means the reload started, anything else says why not."""
    data = payload.get("data") if isinstance(payload, dict) else None
    result = data.get("reloadRepositoryLocation") if isinstance(data, dict) else None
    if not isinstance(result, dict):
        errors = payload.get("errors") if isinstance(payload, dict) else None
        first = errors[0].get("message") if isinstance(errors, list) and errors else None
        return ReloadOutcome(
            False, f"webserver at {shown} refused the reload: {first or 'no answer'}"
        )
    kind = result.get("__typename")
    if kind == "WorkspaceLocationEntry":
        return ReloadOutcome(True, f"reload of {location} requested at {shown}")
    message = str(result.get("message") or kind).splitlines()[0]
    return ReloadOutcome(False, f"webserver at {shown} could not reload {location}: {message}")

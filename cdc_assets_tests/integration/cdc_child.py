"""Run one CDC batch in a child process (crash and memory tests); prints a JSON line at the end.

Usage: python -m cdc_assets_tests.integration.cdc_child '<json: name, source, target, tables,
target_schema, chunk>'. The crash tests name a kill point in the environment (``KILL_ENV``); this
process reads it and passes the batch a hook that SIGKILLs it there: the engine reads no
environment for it.
"""

import json
import os
import resource
import signal
import sys
from collections.abc import Callable

from cdc_assets.domain import Mode, PipelineSpec, TableRef
from cdc_assets.engine.cdc import run_cdc_batch
from cdc_assets.settings import Settings

KILL_ENV = "CDC_ASSETS_TEST_KILL_AT"
"""Name of a point of ``engine.cdc.KILL_POINTS`` at which the child SIGKILLs itself."""


def kill_hook(at: str | None) -> Callable[[str], None] | None:
    """The ``on_point`` hook that SIGKILLs this process at point ``at``; None when not asked."""
    if not at:
        return None

    def hook(name: str) -> None:
        if name == at:
            os.kill(os.getpid(), signal.SIGKILL)

    return hook


def main() -> None:
    args = json.loads(sys.argv[1])
    spec = PipelineSpec(
        name=args["name"],
        source_url=args["source"],
        target_url=args["target"],
        tables=tuple(TableRef.parse(t) for t in args["tables"]),
        target_schema=args.get("target_schema", "public"),
        mode=Mode.FULL_LOAD_AND_CDC,
    )
    kw = {"chunk_changes": args["chunk"]} if args.get("chunk") else {}
    r = run_cdc_batch(
        spec,
        source_url=spec.source_url,
        target_url=spec.target_url,
        settings=Settings(),
        on_point=kill_hook(os.environ.get(KILL_ENV)),
        **kw,
    )
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "transactions": r.transactions,
                "changes": r.changes,
                "end_lsn": str(r.end_lsn),
                "seconds": r.seconds,
                "peak_rss_mb": peak_kb / 1024,
            }
        )
    )


if __name__ == "__main__":
    main()

"""Run one CDC batch in a child process (crash and memory tests); prints a JSON line at the end.

Usage: python -m cdc_assets_tests.integration.cdc_child '<json: name, source, target, tables,
target_schema, chunk>'. The test-only kill point comes from the environment (engine.cdc.KILL_ENV).
"""

import json
import resource
import sys

from cdc_assets.domain import Mode, PipelineSpec, TableRef
from cdc_assets.engine.cdc import run_cdc_batch
from cdc_assets.settings import Settings


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
        spec, source_url=spec.source_url, target_url=spec.target_url, settings=Settings(), **kw
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

"""Build the code location's definitions for N pipelines x T tables in this process, no I/O.

The catalog is synthetic (``defs/catalog.py`` types), so this measures only what the definitions
cost: Dagster's decorators and resolution for our assets, checks, jobs and sensors, then the
repository snapshot a code server serializes on every load and reload. ``bench/sensor_tick.py``
measures the same with a real control DB, plus the sensors and a reload through a webserver.

    PYTHONPATH=. .venv/bin/python bench/defs_build.py --pipelines 1000 --tables 4 --repeat 3
"""

import argparse
import statistics
import subprocess
import sys
import time

CHILD = r"""
import sys, time
t0 = time.perf_counter()
from cdc_assets.defs.catalog import Catalog, PipelineAssets
from cdc_assets.domain import Mode, TableRef
import cdc_assets.definitions as d
t1 = time.perf_counter()
n, tables = int(sys.argv[1]), int(sys.argv[2])
catalog = Catalog(pipelines=tuple(
    PipelineAssets(f"p{i:04d}", Mode.FULL_LOAD if i % 10 == 0 else Mode.FULL_LOAD_AND_CDC,
                   "public", (f"p{i:04d}",),
                   tuple(TableRef("public", f"t{j}") for j in range(tables)))
    for i in range(n)))
t2 = time.perf_counter()
defs = d.build_defs(catalog=catalog)
t3 = time.perf_counter()
from dagster._core.remote_representation.external_data import RepositorySnap
from dagster._serdes import serialize_value
snap = RepositorySnap.from_def(defs.get_repository_def())
t4 = time.perf_counter()
size = len(serialize_value(snap))
t5 = time.perf_counter()
print(f"{t1 - t0:.3f} {t3 - t2:.3f} {t4 - t3:.3f} {t5 - t4:.3f} {size}")
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pipelines", type=int, default=1000)
    ap.add_argument("--tables", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    rows = []
    for _ in range(args.repeat):
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(args.pipelines), str(args.tables)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()
        rows.append([float(x) for x in out])
    med = [statistics.median(col) for col in zip(*rows, strict=True)]
    print(
        f"{args.pipelines} pipelines x {args.tables} tables, median of {args.repeat} fresh "
        f"processes: import {med[0]:.2f} s, build_defs {med[1]:.2f} s (load = {med[0] + med[1]:.2f}"
        f" s), snapshot {med[2]:.2f} s + serialize {med[3]:.2f} s, {int(med[4]):,} bytes"
    )
    print(f"started {time.strftime('%Y-%m-%d %H:%M:%S')}")


if __name__ == "__main__":
    main()

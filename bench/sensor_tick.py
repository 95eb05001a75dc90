"""Sensor tick time with 200 pipelines, and definitions load time (scenario 10; not a timed test).

Starts a throwaway embedded PostgreSQL, a control DB with N pipelines and a dagster-postgres
instance holding a few runs per pipeline, then times one evaluation of each sensor body the daemon
runs per tick (launch, reconciler) and one run-status event, plus ``build_defs()`` in a fresh
interpreter. Usage: ``.venv/bin/python bench/sensor_tick.py [N]``.
"""

import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import dagster as dg

from cdc_assets.control.repository import PipelineRepository
from cdc_assets.control.schema import init_schema
from cdc_assets.domain import Mode, PipelineSpec, TableRef
from cdc_assets.embedded import EmbeddedPostgres, free_port

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cdc_assets_tests.support import create_database, sqlalchemy_url

ROOT = Path(__file__).resolve().parents[1]


def timed(fn, repeat: int = 5) -> tuple[float, float]:
    samples = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples), max(samples)


def main(n: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="bench_tick_"))
    pg = EmbeddedPostgres(root / "data", free_port(), fsync=False)
    url = pg.start()
    try:
        control = sqlalchemy_url(create_database(url, "ctl"))
        init_schema(control)
        dagster_db = create_database(url, "dagster")
        home = root / "home"
        home.mkdir()
        (home / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
        os.environ.update(
            DAGSTER_HOME=str(home), DAGSTER_PG_URL=dagster_db, CDC_CONTROL_DB_URL=control
        )
        repo = PipelineRepository.from_url(control)
        names = [f"p{i:04d}" for i in range(n)]
        for name in names:
            repo.add(PipelineSpec(name, url, url, (TableRef("public", "t"),), mode=Mode.FULL_LOAD))

        from cdc_assets.defs.reconciler import reconcile
        from cdc_assets.defs.resources import ControlDb
        from cdc_assets.defs.sensors import launch_full_load_requests, record_run_event
        from cdc_assets.settings import Settings

        with dg.DagsterInstance.from_config(str(home)) as instance:
            instance.add_dynamic_partitions("pipelines", names)
            # Three finished runs per pipeline, as a busy deployment would have.
            for name in names:
                for _ in range(3):
                    instance.add_run(
                        dg.DagsterRun(
                            job_name="full_load_job",
                            run_id=str(uuid.uuid4()),
                            status=dg.DagsterRunStatus.SUCCESS,
                            tags={"cdc/pipeline": name, "dagster/partition": name},
                        )
                    )
            settings = Settings()
            rows = repo.list()
            launch = timed(lambda: launch_full_load_requests(instance, repo.list(), settings))
            first = time.perf_counter()
            reconcile(instance, repo)  # first pass writes 200 rows (all runs succeeded)
            first = time.perf_counter() - first
            steady = timed(lambda: reconcile(instance, repo))
            ctl = ControlDb(url=control)
            run_id = instance.get_run_records(limit=1)[0].dagster_run.run_id

            class Log:
                def info(self, *_: object) -> None: ...

                error = warning = info

            event = timed(lambda: record_run_event(instance, ctl, run_id, Log()), repeat=20)
            print(f"pipelines={n} rows={len(rows)} runs={3 * n}")
            print(f"launch sensor tick: median {launch[0]:.3f}s max {launch[1]:.3f}s")
            print(f"reconciler tick, first (writes {n} rows): {first:.3f}s")
            print(f"reconciler tick, steady: median {steady[0]:.3f}s max {steady[1]:.3f}s")
            print(f"run-status sensor, one run: median {event[0] * 1000:.1f}ms")
        load = []
        for _ in range(3):
            out = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    "import time; t=time.perf_counter(); import cdc_assets.definitions as d; "
                    "d.defs.get_repository_def(); print(time.perf_counter()-t)",
                ],
                capture_output=True,
                text=True,
                check=True,
                cwd=ROOT,
            )
            load.append(float(out.stdout.strip().splitlines()[-1]))
        print(
            f"definitions import+resolve: median {statistics.median(load):.2f}s "
            f"max {max(load):.2f}s"
        )
    finally:
        pg.stop(mode="immediate")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)

"""The Dagster shell: resources, assets/ops, jobs, hooks, sensors, schedules."""

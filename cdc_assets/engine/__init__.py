"""Use cases (full load, CDC batch) as plain Python: no Dagster import."""

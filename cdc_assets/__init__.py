"""cdc_assets: PostgreSQL full load + CDC as a Dagster code location, state in public.pipelines."""

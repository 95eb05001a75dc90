"""Alembic migrations of the control schema (run by ``control.schema.init_schema``)."""

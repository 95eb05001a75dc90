"""The e2e suite's fixtures (``stack``, ``dagster_instance``, ``control``) live in the top-level
conftest, shared with the fault matrix so one Dagster deployment serves both."""

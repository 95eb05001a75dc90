"""Alembic environment for the control schema, driven only by ``schema.init_schema``.

The caller hands over an open connection (inside its transaction, holding the migration lock) in
``config.attributes["connection"]``; no alembic.ini or URL is read here, so nothing about the
deployment leaks into the package.
"""

from alembic import context

from cdc_assets.control.models import Base
from cdc_assets.control.schema import VERSION_TABLE

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "the cdc_assets control migrations run through `cdc-assets init` "
        "(cdc_assets.control.schema.init_schema), not the alembic command line"
    )

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    version_table=VERSION_TABLE,
    version_table_schema="public",
)
with context.begin_transaction():
    context.run_migrations()

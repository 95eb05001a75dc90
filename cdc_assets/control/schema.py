"""Create or upgrade the control schema with the Alembic migrations shipped in the package.

Driven programmatically (no alembic.ini at runtime). The version table has its own name because the
control database may also hold Dagster's storage, whose migrations use ``alembic_version``.
"""

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text

from cdc_assets.control.db import connect_errors, get_engine

VERSION_TABLE = "cdc_assets_alembic_version"
MIGRATIONS = Path(__file__).with_name("migrations")
_MIGRATION_LOCK = (0x43444341, 0)
"""Advisory lock key (namespace 'CDCA', object 0) serialising concurrent ``init_schema`` calls."""


def _config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def _current(connection: Connection) -> str | None:
    ctx = MigrationContext.configure(
        connection, opts={"version_table": VERSION_TABLE, "version_table_schema": "public"}
    )
    return ctx.get_current_revision()


def head_revision() -> str:
    """The newest revision shipped with this package."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def init_schema(sqlalchemy_url: str, revision: str = "head") -> list[str]:
    """Upgrade the control schema to ``revision`` (default head); one line per applied revision.

    Returns [] if it was already there. A ``revision`` other than head is for tests that build
    the older schema a database created by an earlier release has, to upgrade it. Runs in one
    transaction holding an advisory lock, so two processes starting at once (the CLI and a code
    location) neither race nor half-apply a revision.
    """
    engine = get_engine(sqlalchemy_url)
    script = ScriptDirectory.from_config(_config())
    with connect_errors(sqlalchemy_url), engine.begin() as conn:
        conn.execute(
            text("SELECT pg_advisory_xact_lock(:a, :b)"),
            {"a": _MIGRATION_LOCK[0], "b": _MIGRATION_LOCK[1]},
        )
        before = _current(conn)
        command.upgrade(_config(conn), revision)
        after = _current(conn)
    if before == after:
        return []
    applied = []
    for rev in reversed(list(script.iterate_revisions(after, before))):
        applied.append(f"applied migration {rev.revision}: {(rev.doc or '').strip()}")
    return applied

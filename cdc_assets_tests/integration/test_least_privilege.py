"""Least privilege: the product works with the minimal roles docs/security.md documents, and
without each privilege it fails with an error that names what is missing.

Source role ``cdc_src``: LOGIN REPLICATION, CONNECT and CREATE on the source database (CREATE
PUBLICATION), ownership of the pipeline's tables (PostgreSQL lets only a table's owner add it to a
publication; membership in the owning role is enough) and nothing else. Target role ``cdc_tgt``:
LOGIN, CONNECT, and the owner of the target schema; nothing in ``public``.
"""

import dataclasses
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
from psycopg import sql

from cdc_assets.domain import Mode, PipelineSpec, TableRef
from cdc_assets.engine.cdc import run_cdc_batch
from cdc_assets.engine.full_load import run_full_load
from cdc_assets.errors import CdcError
from cdc_assets.settings import Settings
from cdc_assets.source.cleanup import drop_replication_artifacts
from cdc_assets_tests.integration.cdc_support import checksum, execute
from cdc_assets_tests.support import with_database

pytestmark = pytest.mark.integration


def as_role(url: str, role: str) -> str:
    return url.replace("postgres@", f"{role}@", 1)


@dataclass
class Setup:
    source: str  # superuser URLs, for arranging and checking
    target: str
    src_role: str
    tgt_role: str
    owner_role: str

    def spec(self, name: str = "lp", *tables: str) -> PipelineSpec:
        return PipelineSpec(
            name=name,
            source_url=as_role(self.source, self.src_role),
            target_url=as_role(self.target, self.tgt_role),
            tables=tuple(TableRef.parse(t) for t in (tables or ("app.orders",))),
            target_schema="copy",
            mode=Mode.FULL_LOAD_AND_CDC,
        )

    def full_load(self, spec: PipelineSpec) -> None:
        run_full_load(
            spec,
            source_url=spec.source_url,
            target_url=spec.target_url,
            settings=Settings(full_load_workers=2),
        )

    def batch(self, spec: PipelineSpec) -> None:
        run_cdc_batch(
            spec, source_url=spec.source_url, target_url=spec.target_url, settings=Settings()
        )


@pytest.fixture
def minimal(new_db, pg_wal_logical) -> Iterator[Setup]:
    """Source tables owned by an application role the CDC role is a member of; target schema
    owned by the target role; PUBLIC's default grants revoked on both databases."""
    src, dst = new_db("lpsrc"), new_db("lpdst")
    tag = uuid.uuid4().hex[:6]
    s = Setup(src, dst, f"cdc_src_{tag}", f"cdc_tgt_{tag}", f"app_owner_{tag}")
    src_db = sql.Identifier(src.rsplit("/", 1)[1])
    dst_db = sql.Identifier(dst.rsplit("/", 1)[1])
    ident = sql.Identifier
    execute(
        src,
        sql.SQL("CREATE ROLE {} NOLOGIN").format(ident(s.owner_role)),
        sql.SQL("CREATE ROLE {} LOGIN REPLICATION IN ROLE {}").format(
            ident(s.src_role), ident(s.owner_role)
        ),
        sql.SQL("CREATE ROLE {} LOGIN").format(ident(s.tgt_role)),
        sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(src_db),
        sql.SQL("GRANT CONNECT, CREATE ON DATABASE {} TO {}").format(src_db, ident(s.src_role)),
        "REVOKE ALL ON SCHEMA public FROM PUBLIC",
        sql.SQL("CREATE SCHEMA app AUTHORIZATION {}").format(ident(s.owner_role)),
        "CREATE TABLE app.orders (id bigint PRIMARY KEY, note text)",
        "CREATE TABLE app.other (id bigint PRIMARY KEY)",
        "INSERT INTO app.orders SELECT g, 'n' || g FROM generate_series(1, 300) g",
        sql.SQL("ALTER TABLE app.orders OWNER TO {}").format(ident(s.owner_role)),
    )
    execute(
        dst,
        sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(dst_db),
        sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(dst_db, ident(s.tgt_role)),
        "REVOKE ALL ON SCHEMA public FROM PUBLIC",
        sql.SQL("CREATE SCHEMA copy AUTHORIZATION {}").format(ident(s.tgt_role)),
    )
    yield s
    # Roles are cluster-wide: drop the databases (their grants and objects) first, then them.
    new_db.drop_all()
    with psycopg.connect(with_database(src, "postgres"), autocommit=True) as conn:
        for role in (s.src_role, s.tgt_role, s.owner_role):
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(ident(role)))


def test_minimal_roles_do_full_load_and_cdc(minimal: Setup) -> None:
    spec = minimal.spec()
    minimal.full_load(spec)
    execute(
        minimal.source,
        "INSERT INTO app.orders VALUES (1000, 'new')",
        "UPDATE app.orders SET note = 'changed' WHERE id < 10",
        "DELETE FROM app.orders WHERE id BETWEEN 20 AND 29",
    )
    minimal.batch(spec)
    assert checksum(minimal.source, "app", "orders") == checksum(minimal.target, "copy", "orders")
    assert checksum(minimal.target, "copy", "orders")[0] == 291
    # reset/remove drop the slot and the publication with the same role
    dropped = drop_replication_artifacts(spec.source_url, spec.name)
    assert any("slot" in line for line in dropped) and any(
        "publication" in line for line in dropped
    )


# (what is taken away, SQL on the source, SQL on the target, words the error must contain)
MISSING = [
    ("replication", "ALTER ROLE {src} NOREPLICATION", None, "REPLICATION"),
    ("select", "REVOKE {owner} FROM {src}", None, "lacks SELECT privilege"),
    (
        "table_ownership",
        "REVOKE {owner} FROM {src}; GRANT USAGE ON SCHEMA app TO {src}; "
        "GRANT SELECT ON app.orders TO {src}",
        None,
        "must be owner of table orders",
    ),
    (
        "create_on_database",
        "REVOKE CREATE ON DATABASE {srcdb} FROM {src}",
        None,
        "GRANT CREATE ON DATABASE",
    ),
    (
        "connect_source",
        "REVOKE CONNECT ON DATABASE {srcdb} FROM {src}",
        None,
        "GRANT CONNECT ON DATABASE",
    ),
    ("target_schema_owner", None, "ALTER SCHEMA copy OWNER TO postgres", "CREATE"),
    (
        "connect_target",
        None,
        "REVOKE CONNECT ON DATABASE {dstdb} FROM {tgt}",
        "GRANT CONNECT ON DATABASE",
    ),
]


@pytest.mark.parametrize(
    "source_sql,target_sql,words", [m[1:] for m in MISSING], ids=[m[0] for m in MISSING]
)
def test_each_missing_privilege_is_named(minimal: Setup, source_sql, target_sql, words) -> None:
    names = {
        "src": sql.Identifier(minimal.src_role),
        "tgt": sql.Identifier(minimal.tgt_role),
        "owner": sql.Identifier(minimal.owner_role),
        "srcdb": sql.Identifier(minimal.source.rsplit("/", 1)[1]),
        "dstdb": sql.Identifier(minimal.target.rsplit("/", 1)[1]),
    }
    if source_sql:
        execute(minimal.source, sql.SQL(source_sql).format(**names))
    if target_sql:
        execute(minimal.target, sql.SQL(target_sql).format(**names))
    spec = minimal.spec()
    with pytest.raises(CdcError) as err:
        minimal.full_load(spec)
    text = err.value.for_row()
    print(f"missing privilege -> {text}")
    assert words in text, text
    assert "pipeline 'lp'" in text and "(fix: " in text, text


def test_full_load_mode_needs_only_select(minimal: Setup) -> None:
    """No slot, no publication: CONNECT + USAGE + SELECT is the whole source privilege."""
    src = sql.Identifier(minimal.src_role)
    execute(
        minimal.source,
        sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(minimal.owner_role), src),
        sql.SQL("ALTER ROLE {} NOREPLICATION").format(src),
        sql.SQL("REVOKE CREATE ON DATABASE {} FROM {}").format(
            sql.Identifier(minimal.source.rsplit("/", 1)[1]), src
        ),
        sql.SQL("GRANT USAGE ON SCHEMA app TO {}").format(src),
        sql.SQL("GRANT SELECT ON app.orders TO {}").format(src),
    )
    spec = dataclasses.replace(minimal.spec(), mode=Mode.FULL_LOAD)
    minimal.full_load(spec)
    assert checksum(minimal.source, "app", "orders") == checksum(minimal.target, "copy", "orders")


def _select_only(setup: Setup) -> None:
    """The source role keeps REPLICATION but owns nothing and may not create publications."""
    src = sql.Identifier(setup.src_role)
    execute(
        setup.source,
        sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(setup.owner_role), src),
        sql.SQL("REVOKE CREATE ON DATABASE {} FROM {}").format(
            sql.Identifier(setup.source.rsplit("/", 1)[1]), src
        ),
        sql.SQL("GRANT USAGE ON SCHEMA app TO {}").format(src),
        sql.SQL("GRANT SELECT ON app.orders TO {}").format(src),
    )


def _published(url: str, name: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT schemaname || '.' || tablename FROM pg_publication_tables"
            " WHERE pubname = %s ORDER BY 1",
            (name,),
        ).fetchall()
    return [r[0] for r in rows]


def test_admin_created_publication_lets_a_non_owner_run_cdc(minimal: Setup) -> None:
    """docs/security.md: an admin creates cdc_assets_<name> once; the pipeline keeps it."""
    _select_only(minimal)
    execute(
        minimal.source,
        "CREATE PUBLICATION cdc_assets_lp FOR TABLE app.orders"
        " WITH (publish_via_partition_root = true)",
    )
    spec = minimal.spec()
    minimal.full_load(spec)
    execute(
        minimal.source,
        "INSERT INTO app.orders VALUES (1000, 'new')",
        "UPDATE app.orders SET note = 'changed' WHERE id < 10",
        "DELETE FROM app.orders WHERE id BETWEEN 20 AND 29",
    )
    minimal.batch(spec)
    assert checksum(minimal.source, "app", "orders") == checksum(minimal.target, "copy", "orders")
    minimal.full_load(spec)  # a reload keeps the publication too
    minimal.batch(spec)
    dropped = drop_replication_artifacts(spec.source_url, spec.name)
    assert any("dropped replication slot" in line for line in dropped), dropped
    assert any("kept publication cdc_assets_lp" in line for line in dropped), dropped
    assert _published(minimal.source, "cdc_assets_lp") == ["app.orders"]


def test_admin_publication_that_does_not_fit_is_left_alone_with_the_fix(minimal: Setup) -> None:
    _select_only(minimal)
    execute(minimal.source, "CREATE PUBLICATION cdc_assets_lp FOR TABLE app.orders, app.other")
    with pytest.raises(CdcError) as err:
        minimal.full_load(minimal.spec())
    text = err.value.for_row()
    assert "publication cdc_assets_lp exists but it also publishes app.other" in text, text
    assert "belongs to postgres" in text, text
    assert 'CREATE PUBLICATION "cdc_assets_lp" FOR TABLE "app"."orders"' in text, text
    assert _published(minimal.source, "cdc_assets_lp") == ["app.orders", "app.other"]


def test_own_publication_that_does_not_fit_is_recreated(minimal: Setup) -> None:
    """A publication the source user owns (e.g. left by an earlier attempt) is made to fit."""
    with psycopg.connect(minimal.spec().source_url, autocommit=True) as conn:
        conn.execute(
            "CREATE PUBLICATION cdc_assets_lp FOR TABLE app.orders WITH (publish = 'insert')"
        )
    spec = minimal.spec()
    minimal.full_load(spec)
    with psycopg.connect(minimal.source) as conn:
        row = conn.execute(
            "SELECT pubupdate AND pubdelete AND pubtruncate FROM pg_publication"
            " WHERE pubname = 'cdc_assets_lp'"
        ).fetchone()
    assert row == (True,)
    execute(minimal.source, "UPDATE app.orders SET note = 'changed' WHERE id < 10")
    minimal.batch(spec)
    assert checksum(minimal.source, "app", "orders") == checksum(minimal.target, "copy", "orders")

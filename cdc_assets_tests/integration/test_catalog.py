"""The pipeline catalog the code location is built from: control DB, last good, reconstruction.

Real control database and Dagster instance; the control DB "outage" is a URL whose server does
not listen, so loading fails exactly as it does when the database is down.
"""

import dagster as dg
import psycopg
import pytest
from dagster._core.definitions.definitions_load_context import (
    DefinitionsLoadContext,
    DefinitionsLoadType,
)
from dagster._core.definitions.repository_definition import RepositoryLoadData

from cdc_assets.definitions import build_defs
from cdc_assets.defs.catalog import CATALOG_KEY
from cdc_assets.embedded import free_port
from cdc_assets.settings import Settings
from cdc_assets_tests.e2e.pipelines import spec
from cdc_assets_tests.support import sqlalchemy_url

pytestmark = pytest.mark.integration


def asset_keys(defs: dg.Definitions) -> set[str]:
    graph = defs.get_repository_def().asset_graph
    return {k.to_user_string() for k in graph.get_all_asset_keys()}


def location_metadata(defs: dg.Definitions) -> dict[str, object]:
    return {k: getattr(v, "value", v) for k, v in (defs.metadata or {}).items()}


def test_rows_become_table_and_source_assets(instance, repo, new_db) -> None:
    src, dst = new_db("src"), new_db("dst")
    repo.add(spec("shop", src, dst, tables=("public.orders", '"Sales"."Order Items"')))
    defs = build_defs(Settings())
    assert asset_keys(defs) == {
        "shop/orders",
        "shop/Order_Items",
        "shop/source/public/orders",
        "shop/source/Sales/Order_Items",
    }
    graph = defs.get_repository_def().asset_graph
    orders = graph.get(dg.AssetKey(["shop", "orders"]))
    assert orders.parent_keys == {dg.AssetKey(["shop", "source", "public", "orders"])}
    assert orders.group_name == "shop" and orders.kinds == {"postgres"}
    assert orders.metadata["dagster/table_name"] == "public.orders"
    assert location_metadata(defs)["cdc/catalog_origin"] == "control"


def test_control_db_down_at_load_keeps_the_last_good_assets(
    instance, repo, new_db, monkeypatch
) -> None:
    src, dst = new_db("src"), new_db("dst")
    repo.add(spec("kept", src, dst))
    good = build_defs(Settings())  # reads the control DB and saves the catalog in the instance
    assert "kept/orders" in asset_keys(good)

    dead = sqlalchemy_url(f"postgresql://postgres@127.0.0.1:{free_port()}/control")
    monkeypatch.setenv("CDC_CONTROL_DB_URL", dead)
    defs = build_defs(Settings())

    assert asset_keys(defs) == asset_keys(good)
    meta = location_metadata(defs)
    assert meta["cdc/catalog_origin"] == "cache"
    assert "loaded the last good pipeline catalog" in str(meta["cdc/catalog_warning"])
    assert meta["cdc/catalog_fingerprint"] == location_metadata(good)["cdc/catalog_fingerprint"]


def test_control_db_down_and_no_last_good_loads_an_empty_but_valid_location(
    instance, monkeypatch
) -> None:
    monkeypatch.setenv(
        "CDC_CONTROL_DB_URL", sqlalchemy_url(f"postgresql://postgres@127.0.0.1:{free_port()}/x")
    )
    defs = build_defs(Settings())
    assert asset_keys(defs) == set()
    assert location_metadata(defs)["cdc/catalog_origin"] == "empty"
    # Sensors and jobs are still there: the location loads, it is not in error.
    assert defs.resolve_sensor_def("launch_full_loads_sensor") is not None


def test_a_bad_row_never_removes_the_other_pipelines_assets(instance, repo, control_url, new_db):
    src, dst = new_db("src"), new_db("dst")
    repo.add(spec("first", src, dst))
    # Hand-written rows: one whose asset keys collide with "first", one with a bad table name.
    with psycopg.connect(control_url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(
            "INSERT INTO public.pipelines (name, source_url, target_url, tables, asset_key_prefix)"
            " VALUES ('copycat', 'env:A', 'env:B', ARRAY['public.orders'], ARRAY['first'])"
        )
        conn.execute(
            "INSERT INTO public.pipelines (name, source_url, target_url, tables)"
            " VALUES ('broken', 'env:A', 'env:B', ARRAY['a.b.c'])"
        )
    defs = build_defs(Settings())
    assert asset_keys(defs) == {"first/orders", "first/source/public/orders"}
    left_out = str(location_metadata(defs)["cdc/pipelines_left_out"])
    assert "copycat: asset key first/orders is already the key of table" in left_out
    assert "broken:" in left_out


def test_run_workers_rebuild_the_catalog_their_run_was_launched_with(
    instance, repo, new_db
) -> None:
    src, dst = new_db("src"), new_db("dst")
    repo.add(spec("before", src, dst))
    init = DefinitionsLoadContext(load_type=DefinitionsLoadType.INITIALIZATION)
    with DefinitionsLoadContext.scoped(init):
        launched = build_defs(Settings())
    stored = init.get_pending_reconstruction_metadata()[CATALOG_KEY]

    # The control table changes after the launch; the run worker must not see it.
    repo.remove("before")
    repo.add(spec("after", src, dst))
    worker = DefinitionsLoadContext(
        load_type=DefinitionsLoadType.RECONSTRUCTION,
        repository_load_data=RepositoryLoadData(
            cacheable_asset_data={}, reconstruction_metadata={CATALOG_KEY: stored}
        ),
    )
    with DefinitionsLoadContext.scoped(worker):
        rebuilt = build_defs(Settings())
    assert (
        asset_keys(rebuilt)
        == asset_keys(launched)
        == {
            "before/orders",
            "before/source/public/orders",
        }
    )
    assert location_metadata(rebuilt)["cdc/catalog_origin"] == "reconstruction"

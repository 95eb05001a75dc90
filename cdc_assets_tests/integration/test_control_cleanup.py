"""source/cleanup.py: slot and publication dropped, idempotent, active slot reader terminated."""

import subprocess

import psycopg
import pytest
from psycopg import sql

from cdc_assets.domain import publication_name, slot_name
from cdc_assets.embedded import _bin_dir
from cdc_assets.errors import ConnectError
from cdc_assets.source.cleanup import drop_replication_artifacts
from cdc_assets_tests.support import wait_until

pytestmark = pytest.mark.integration

PIPELINE = "shop"


def _make_artifacts(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY)")
        conn.execute(
            sql.SQL("CREATE PUBLICATION {} FOR TABLE t").format(
                sql.Identifier(publication_name(PIPELINE))
            )
        )
        conn.execute(
            "SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot_name(PIPELINE),)
        )


def _present(url: str) -> tuple[bool, bool]:
    with psycopg.connect(url) as conn:
        slot = conn.execute(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s", (slot_name(PIPELINE),)
        ).fetchone()
        pub = conn.execute(
            "SELECT count(*) FROM pg_publication WHERE pubname = %s", (publication_name(PIPELINE),)
        ).fetchone()
    return bool(slot and slot[0]), bool(pub and pub[0])


def test_drops_slot_and_publication_idempotently(pg_wal_logical, new_db) -> None:
    url = new_db("src")
    _make_artifacts(url)
    assert _present(url) == (True, True)
    done = drop_replication_artifacts(url, PIPELINE)
    assert done == [
        f"dropped replication slot {slot_name(PIPELINE)}",
        f"dropped publication {publication_name(PIPELINE)}",
    ]
    assert _present(url) == (False, False)
    assert drop_replication_artifacts(url, PIPELINE) == []


def test_env_reference_is_resolved(pg_wal_logical, new_db, monkeypatch) -> None:
    url = new_db("src")
    _make_artifacts(url)
    monkeypatch.setenv("CDC_CONN_CLEANUP_SRC", url)
    assert len(drop_replication_artifacts("env:CDC_CONN_CLEANUP_SRC", PIPELINE)) == 2


def test_active_slot_reader_is_terminated(pg_wal_logical, new_db) -> None:
    url = new_db("src")
    _make_artifacts(url)
    reader = subprocess.Popen(
        [
            str(_bin_dir() / "pg_recvlogical"),
            "-d",
            url,
            "-S",
            slot_name(PIPELINE),
            "--start",
            "-f",
            "/dev/null",
            "-o",
            "proto_version=1",
            "-o",
            f"publication_names={publication_name(PIPELINE)}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:

        def active() -> bool:
            with psycopg.connect(url) as conn:
                row = conn.execute(
                    "SELECT active FROM pg_replication_slots WHERE slot_name = %s",
                    (slot_name(PIPELINE),),
                ).fetchone()
            assert reader.poll() is None, reader.stderr.read() if reader.stderr else ""
            return bool(row and row[0])

        wait_until(active, timeout=20, describe="pg_recvlogical to hold the slot")
        done = drop_replication_artifacts(url, PIPELINE)
        assert done[0].startswith(f"dropped replication slot {slot_name(PIPELINE)} (terminated")
        assert _present(url) == (False, False)
    finally:
        reader.kill()
        reader.wait(10)
        if reader.stderr:
            reader.stderr.close()


def test_unreachable_source_is_a_connect_error_without_password() -> None:
    with pytest.raises(ConnectError) as info:
        drop_replication_artifacts("postgresql://u:s3cretPW@127.0.0.1:1/db", PIPELINE)
    assert "s3cretPW" not in str(info.value)
    assert "'shop'" in str(info.value)

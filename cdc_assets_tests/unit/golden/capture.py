"""Record pgoutput bytes from a real server into golden files for the decoder's unit tests.

Run by hand when the protocol coverage changes (the files are committed; tests never need a DB):

    .venv/bin/python -m cdc_assets_tests.unit.golden.capture [postgresql://...]

Without a URL it starts a throwaway embedded PostgreSQL. Each scenario gets a fresh database and
slot, runs its SQL, then reads ``pg_logical_slot_get_binary_changes`` and writes
``<scenario>.bin`` (each message as a 4-byte big-endian length + the bytes) and ``<scenario>.json``
(server version, the SQL, each message's LSN, xid and size).
"""

import json
import struct
import sys
import tempfile
from pathlib import Path

import psycopg

from cdc_assets.embedded import EmbeddedPostgres, free_port
from cdc_assets_tests.support import temp_database

HERE = Path(__file__).parent

SCENARIOS: dict[str, dict[str, object]] = {
    "basic": {
        "setup": [
            "CREATE TABLE public.items (id int PRIMARY KEY, name text, price numeric(10,2),"
            " seen timestamptz, payload bytea, flag boolean)",
        ],
        "changes": [
            "INSERT INTO public.items VALUES (1, 'one', 1.50, '2024-01-02 03:04:05+00',"
            " '\\x00ff', true)",
            "INSERT INTO public.items VALUES (2, NULL, NULL, NULL, NULL, NULL)",
            "INSERT INTO public.items VALUES (3, E'tab\\there\\nnew ''q'' \\\\ é', 0, NULL,"
            " '\\x', false)",
            "UPDATE public.items SET name = 'two', price = 2 WHERE id = 2",
            "DELETE FROM public.items WHERE id = 1",
        ],
        "options": {},
    },
    "toast": {
        "setup": [
            "CREATE TABLE public.docs (id int PRIMARY KEY, body text, n int)",
            "ALTER TABLE public.docs ALTER COLUMN body SET STORAGE EXTERNAL",
        ],
        "changes": [
            "INSERT INTO public.docs SELECT 1, string_agg(md5(g::text), '') , 0"
            " FROM generate_series(1, 200) g",
            "UPDATE public.docs SET n = n + 1 WHERE id = 1",
            "UPDATE public.docs SET body = 'short' WHERE id = 1",
        ],
        "options": {},
    },
    "identity_full": {
        "setup": [
            "CREATE TABLE public.nokey (a int, b text)",
            "ALTER TABLE public.nokey REPLICA IDENTITY FULL",
            "CREATE TABLE public.keyed (id int PRIMARY KEY, v text)",
        ],
        "changes": [
            "INSERT INTO public.nokey VALUES (1, 'x'), (2, NULL)",
            "UPDATE public.nokey SET b = 'y' WHERE a = 1",
            "DELETE FROM public.nokey WHERE a = 2",
            "INSERT INTO public.keyed VALUES (1, 'a')",
            "UPDATE public.keyed SET id = 10 WHERE id = 1",
            "DELETE FROM public.keyed WHERE id = 10",
        ],
        "options": {},
    },
    "truncate": {
        "setup": [
            "CREATE TABLE public.t1 (id serial PRIMARY KEY)",
            "CREATE TABLE public.t2 (id int PRIMARY KEY)",
        ],
        "changes": [
            "INSERT INTO public.t1 DEFAULT VALUES",
            "TRUNCATE public.t1, public.t2 RESTART IDENTITY",
            "TRUNCATE public.t2",
        ],
        "options": {},
    },
    "message_type_origin": {
        "setup": [
            "CREATE TYPE public.mood AS ENUM ('sad', 'happy')",
            "CREATE TABLE public.feelings (id int PRIMARY KEY, m public.mood)",
            "SELECT pg_replication_origin_create('golden_origin')",
        ],
        "changes": [
            "SELECT pg_logical_emit_message(true, 'cdc_test', 'hello transactional')",
            "SELECT pg_logical_emit_message(false, 'cdc_test', '\\x00010203'::bytea)",
            "INSERT INTO public.feelings VALUES (1, 'happy')",
            [
                "SELECT pg_replication_origin_session_setup('golden_origin')",
                "BEGIN",
                "SELECT pg_replication_origin_xact_setup('0/12345678', now())",
                "INSERT INTO public.feelings VALUES (2, 'sad')",
                "COMMIT",
                "SELECT pg_replication_origin_session_reset()",
            ],
        ],
        "options": {"messages": "true"},
    },
    "binary": {
        "setup": ["CREATE TABLE public.nums (id int PRIMARY KEY, x bigint, t text)"],
        "changes": ["INSERT INTO public.nums VALUES (1, 42, 'txt'), (2, NULL, NULL)"],
        "options": {"binary": "true"},
    },
    "add_column": {
        "setup": ["CREATE TABLE public.grow (id int PRIMARY KEY, a text)"],
        "changes": [
            "INSERT INTO public.grow VALUES (1, 'a')",
            "ALTER TABLE public.grow ADD COLUMN b int",
            "INSERT INTO public.grow VALUES (2, 'b', 7)",
        ],
        "options": {},
    },
}


def capture(admin_url: str, name: str, scenario: dict[str, object]) -> None:
    with temp_database(admin_url, "golden") as url, psycopg.connect(url, autocommit=True) as conn:
        # Logical decoding reads only flushed WAL; async commit would leave the last changes out.
        conn.execute("SET synchronous_commit = on")
        for stmt in scenario["setup"]:  # type: ignore[attr-defined]
            conn.execute(stmt)
        conn.execute("CREATE PUBLICATION golden FOR ALL TABLES")
        conn.execute("SELECT pg_create_logical_replication_slot('golden', 'pgoutput')")
        for item in scenario["changes"]:  # type: ignore[attr-defined]
            for stmt in [item] if isinstance(item, str) else item:
                conn.execute(stmt)
        opts: list[str] = ["proto_version", "1", "publication_names", "golden"]
        for k, v in scenario["options"].items():  # type: ignore[attr-defined]
            opts += [k, v]
        placeholders = ", ".join(["%s"] * len(opts))
        rows = conn.execute(
            "SELECT lsn::text, xid::text::bigint, data FROM pg_logical_slot_get_binary_changes("
            f"'golden', NULL, NULL, {placeholders})",
            opts,
        ).fetchall()
        (version,) = conn.execute("SHOW server_version").fetchone()  # type: ignore[misc]
        conn.execute("SELECT pg_drop_replication_slot('golden')")
    with open(HERE / f"{name}.bin", "wb") as f:
        for _, _, data in rows:
            f.write(struct.pack("!I", len(data)) + bytes(data))
    meta = {
        "scenario": name,
        "server_version": version,
        "options": scenario["options"],
        "setup": scenario["setup"],
        "changes": scenario["changes"],
        "messages": [
            {"lsn": lsn, "xid": xid, "size": len(data), "type": chr(data[0])}
            for lsn, xid, data in rows
        ],
    }
    (HERE / f"{name}.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n")
    print(f"{name}: {len(rows)} messages")


def main(argv: list[str]) -> None:
    server = None
    if len(argv) > 1:
        admin_url = argv[1]
    else:
        root = Path(tempfile.mkdtemp(prefix="golden_pg_"))
        server = EmbeddedPostgres(root / "data", free_port(), fsync=False)
        admin_url = server.start()
    try:
        for name, scenario in SCENARIOS.items():
            capture(admin_url, name, scenario)
    finally:
        if server is not None:
            server.stop(mode="immediate")


if __name__ == "__main__":
    main(sys.argv)

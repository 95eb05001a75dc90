"""The demo's source schema: a small shop with related tables and a few hundred thousand rows.

Generated in SQL (``generate_series``) so a cold demo spends seconds, not minutes, on data.
"""

from typing import Any

import psycopg

TABLES = ("shop.customers", "shop.products", "shop.orders", "shop.order_items")

_SCHEMA = """
CREATE SCHEMA IF NOT EXISTS shop;
CREATE TABLE IF NOT EXISTS shop.customers (
    id bigint PRIMARY KEY,
    email text NOT NULL,
    name text NOT NULL,
    country char(2) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS shop.products (
    id bigint PRIMARY KEY,
    sku text NOT NULL,
    title text NOT NULL,
    price numeric(10, 2) NOT NULL,
    attributes jsonb NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS shop.orders (
    id bigint PRIMARY KEY,
    customer_id bigint NOT NULL,
    status text NOT NULL,
    ordered_at timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS shop.order_items (
    order_id bigint NOT NULL,
    line int NOT NULL,
    product_id bigint NOT NULL,
    quantity int NOT NULL,
    PRIMARY KEY (order_id, line)
);
"""

_FILL = (
    "INSERT INTO shop.customers (id, email, name, country, created_at)"
    " SELECT g, 'user' || g || '@example.com', 'Customer ' || g,"
    " (ARRAY['DE','FR','US','JP','BR'])[1 + g %% 5], now() - (g || ' minutes')::interval"
    " FROM generate_series(1, %(customers)s) g",
    "INSERT INTO shop.products (id, sku, title, price, attributes)"
    " SELECT g, 'SKU-' || lpad(g::text, 6, '0'), 'Product ' || g, (g %% 500) + 0.99,"
    " jsonb_build_object('color', (ARRAY['red','green','blue'])[1 + g %% 3], 'weight', g %% 17)"
    " FROM generate_series(1, %(products)s) g",
    "INSERT INTO shop.orders (id, customer_id, status, ordered_at)"
    " SELECT g, 1 + (g * 7919) %% %(customers)s, (ARRAY['new','paid','shipped'])[1 + g %% 3],"
    " now() - (g || ' seconds')::interval FROM generate_series(1, %(orders)s) g",
    "INSERT INTO shop.order_items (order_id, line, product_id, quantity)"
    " SELECT o, l, 1 + (o * 31 + l) %% %(products)s, 1 + (o + l) %% 4"
    " FROM generate_series(1, %(orders)s) o, generate_series(1, 2) l",
)


def create_demo_source(url: str, *, customers: int = 50_000, orders: int = 150_000) -> bool:
    """Create and fill the shop schema unless it is already there; True when it was created."""
    params: dict[str, Any] = {"customers": customers, "products": 5_000, "orders": orders}
    with psycopg.connect(url) as conn:
        exists = conn.execute("SELECT to_regclass('shop.order_items') IS NOT NULL").fetchone()
        if exists and exists[0]:
            return False
        conn.execute(_SCHEMA)
        for stmt in _FILL:
            conn.execute(stmt, params)  # type: ignore[arg-type]
        conn.commit()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ANALYZE")
    return True

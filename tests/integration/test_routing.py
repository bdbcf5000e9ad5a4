"""Placement, routed and scatter statements, broadcast and single tables, and DDL, checked on
the backends themselves: every row must sit on exactly the node `mod` names, and nowhere else.

config/default.yaml: users/orders/order_items sharded by `mod` over 4 shards, shard k in
ds0.{t}_k for k = 0, 1 and ds1.{t}_k for k = 2, 3; countries broadcast; settings single on ds1.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from decimal import Decimal
from typing import TYPE_CHECKING

import pymysql
import pytest
from shop_helpers import (
    SCHEMA,
    ShopTables,
    all_nodes,
    cli,
    connector_connect,
    expected_layout,
    multiset,
    node_of,
    parse_batch,
    physical_tables,
    rows_by_node,
)

if TYPE_CHECKING:
    from conftest import Cluster, ProxyProcess


@pytest.fixture
def tables(shop_proxy: ProxyProcess, mariadb_cluster: Cluster) -> Iterator[ShopTables]:
    shop = ShopTables(shop_proxy, mariadb_cluster)
    yield shop
    shop.cleanup()


@pytest.fixture
def conn(shop_proxy: ProxyProcess) -> Iterator[pymysql.Connection]:
    connection = shop_proxy.connect()
    yield connection
    connection.close()


def run(conn: pymysql.Connection, sql: str, params: object = None) -> list[tuple]:
    with conn.cursor() as cursor:
        cursor.execute(sql, params)
        return list(cursor.fetchall())


def execute(conn: pymysql.Connection, sql: str, params: object = None) -> int:
    """Run a write; the affected-rows count of its OK packet."""
    with conn.cursor() as cursor:
        return cursor.execute(sql, params)


def plant(cluster: Cluster, node: tuple[int, str, str], sql_values: str) -> None:
    """Insert straight into one physical table, bypassing the proxy."""
    index, schema, table = node
    cluster.instances[index].execute(f"INSERT INTO `{schema}`.`{table}` VALUES {sql_values}")


USERS = [(k, f"user {k}") for k in (0, 1, 2, 3, 4, 5, 6, 7, 8, 11, 13, 22)]


def insert_users(conn: pymysql.Connection, users: list[tuple[int, str]] = USERS) -> None:
    for user_id, name in users:
        assert execute(conn, "INSERT INTO users (id, name) VALUES (%s, %s)", (user_id, name)) == 1


# --- placement ------------------------------------------------------------------------------


def test_single_row_inserts_land_on_the_node_mod_names_and_nowhere_else(
    tables: ShopTables, conn: pymysql.Connection, mariadb_cluster: Cluster
) -> None:
    tables.create("users")
    # -7 % 4 == 1 (floor modulo, docs/config.md); 2**40 + 2 is shard 2; '11' is key 11.
    rows = [*USERS, (-7, "negative"), (2**40 + 2, "big")]
    insert_users(conn, rows)
    assert execute(conn, "INSERT INTO users (id, name) VALUES ('15', 'string key')") == 1
    rows.append((15, "string key"))

    assert rows_by_node(mariadb_cluster, "users", "id, name") == expected_layout("users", rows, 0)


def test_physical_layout_of_user_7_is_ds1_users_3(
    tables: ShopTables, conn: pymysql.Connection, mariadb_cluster: Cluster
) -> None:
    tables.create("users")
    execute(conn, "INSERT INTO users (id, name) VALUES (7, 'Günther')")
    assert node_of("users", 7) == (1, "shop_1", "users_3")
    assert mariadb_cluster.instances[1].execute("SELECT id, name FROM shop_1.users_3") == [
        (7, "Günther")
    ]
    for index, schema, table in all_nodes("users")[:3]:
        assert mariadb_cluster.instances[index].execute(f"SELECT id FROM {schema}.{table}") == []


def test_cli_select_orders_of_user_7_returns_exactly_that_users_rows(
    tables: ShopTables, conn: pymysql.Connection, shop_proxy: ProxyProcess
) -> None:
    tables.create("orders")
    # Users 3, 7 and 11 all live in shard 3 (same physical table): the query must filter.
    orders = [
        (1, 7, "cancelled", "260.92", "2024-03-02 09:17:00"),
        (2, 12, "new", "303.64", "2024-03-03 09:34:00"),
        (3, 3, "paid", "79.79", "2024-03-04 09:51:00"),
        (4, 11, "new", "10.00", "2024-03-05 10:00:00"),
        (15, 7, "new", "30.24", "2024-03-16 13:15:00"),
        (17, 7, "delivered", "182.38", "2024-03-18 13:49:00"),
        (18, 2, "delivered", "237.87", "2024-03-19 14:06:00"),
        (22, 7, "paid", "400.14", "2024-03-23 15:14:00"),
    ]
    with conn.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO orders (id, user_id, status, total, created_at) "
            "VALUES (%s, %s, %s, %s, %s)",
            orders,
        )

    result = cli(shop_proxy, "SELECT * FROM orders WHERE user_id = 7")
    assert result.returncode == 0, result.stderr
    header, rows = parse_batch(result.stdout)
    assert header == ["id", "user_id", "status", "total", "created_at"]
    expected = [[str(c) for c in o] for o in orders if o[1] == 7]
    assert sorted(rows) == sorted(expected)


# --- routed reads and writes ----------------------------------------------------------------


def test_routed_reads_touch_only_the_named_shards(
    tables: ShopTables, conn: pymysql.Connection, mariadb_cluster: Cluster
) -> None:
    """Rows planted on a WRONG shard are invisible to a routed read and visible to a scatter:
    that proves the read was routed, not scattered and filtered."""
    tables.create("users")
    insert_users(conn)
    # id 7 belongs to shard 3 and id 2 to shard 2; plant impostors on other shards.
    plant(mariadb_cluster, node_of("users", 0), "(7, 'impostor 7', NULL, NULL, NULL)")
    plant(mariadb_cluster, node_of("users", 1), "(2, 'impostor 2', NULL, NULL, NULL)")

    assert run(conn, "SELECT id, name FROM users WHERE id = 7") == [(7, "user 7")]
    assert run(conn, "SELECT id, name FROM users WHERE 7 = id") == [(7, "user 7")]
    assert multiset(run(conn, "SELECT id, name FROM users WHERE id IN (2, 7, 11)")) == multiset(
        [(2, "user 2"), (7, "user 7"), (11, "user 11")]
    )
    assert multiset(run(conn, "SELECT id, name FROM users WHERE id = 2 OR id = 7")) == multiset(
        [(2, "user 2"), (7, "user 7")]
    )
    assert multiset(
        run(conn, "SELECT id, name FROM users WHERE (id = 2 OR id IN (11, 7)) AND name LIKE '%'")
    ) == multiset([(2, "user 2"), (7, "user 7"), (11, "user 11")])
    assert run(conn, "SELECT id, name FROM users WHERE id = %s", (22,)) == [(22, "user 22")]
    assert run(conn, "SELECT id FROM users WHERE id = 99") == []

    # A scatter read sees the impostors: the union of every physical table.
    everything = run(conn, "SELECT id, name FROM users")
    assert multiset(everything) == multiset([*USERS, (7, "impostor 7"), (2, "impostor 2")])


def test_routed_update_and_delete_change_only_the_keyed_rows(
    tables: ShopTables, conn: pymysql.Connection, mariadb_cluster: Cluster
) -> None:
    tables.create("users")
    insert_users(conn)
    plant(mariadb_cluster, node_of("users", 1), "(7, 'impostor 7', NULL, NULL, NULL)")
    before = rows_by_node(mariadb_cluster, "users", "id, name")

    assert execute(conn, "UPDATE users SET name = 'seven' WHERE id = 7") == 1
    assert execute(conn, "UPDATE users SET name = CONCAT(name, '!') WHERE id IN (2, 5, 99)") == 2
    assert execute(conn, "UPDATE users SET name = 'or' WHERE id = 11 OR id = 13") == 2
    assert execute(conn, "DELETE FROM users WHERE id = 4") == 1
    assert execute(conn, "DELETE FROM users WHERE id IN (0, 6, 98)") == 2
    assert execute(conn, "DELETE FROM users WHERE id = 22 OR id = 97") == 1

    expected = {node: list(rows) for node, rows in before.items()}
    changes = {7: "seven", 2: "user 2!", 5: "user 5!", 11: "or", 13: "or"}
    for node, rows in expected.items():
        new_rows = []
        for user_id, name in rows:
            if name == "impostor 7":
                new_rows.append((user_id, name))  # wrong shard: a routed write never sees it
            elif user_id not in (4, 0, 6, 22):
                new_rows.append((user_id, changes.get(user_id, name)))
        expected[node] = sorted(new_rows)
    assert rows_by_node(mariadb_cluster, "users", "id, name") == expected


def test_scatter_reads_return_the_union_of_all_shards(
    tables: ShopTables, conn: pymysql.Connection
) -> None:
    tables.create("orders")
    orders = [(i, i * 5 % 13, "new" if i % 3 else "paid") for i in range(1, 41)]
    with conn.cursor() as cursor:
        cursor.executemany("INSERT INTO orders (id, user_id, status) VALUES (%s, %s, %s)", orders)

    assert multiset(run(conn, "SELECT id, user_id, status FROM orders")) == multiset(orders)
    assert multiset(run(conn, "SELECT id, user_id FROM orders WHERE status = 'paid'")) == (
        multiset((o[0], o[1]) for o in orders if o[2] == "paid")
    )
    assert multiset(run(conn, "SELECT user_id FROM orders WHERE id > 30")) == multiset(
        (o[1],) for o in orders if o[0] > 30
    )
    assert run(conn, "SELECT id FROM orders WHERE status = 'none'") == []


def test_scatter_update_and_delete_reach_every_shard(
    tables: ShopTables, conn: pymysql.Connection, mariadb_cluster: Cluster
) -> None:
    tables.create("users")
    insert_users(conn)
    assert execute(conn, "UPDATE users SET email = 'x' WHERE name LIKE 'user 1%'") == 3  # 1 11 13
    assert execute(conn, "DELETE FROM users WHERE id > 6 AND name <> ''") == 5  # 7 8 11 13 22
    remaining = [(k, n, "x" if k == 1 else None) for k, n in USERS if k <= 6]
    assert rows_by_node(mariadb_cluster, "users", "id, name, email") == expected_layout(
        "users", remaining, 0
    )


def test_multi_row_insert_spreads_over_all_shards_with_the_right_affected_rows(
    tables: ShopTables, conn: pymysql.Connection, mariadb_cluster: Cluster
) -> None:
    tables.create("order_items")
    items = [(i, i // 2, i % 9, f"SKU-{i:03}", i % 4 + 1) for i in range(1, 26)]
    values = ", ".join(f"({a}, {b}, {c}, '{d}', {e})" for a, b, c, d, e in items)
    affected = execute(
        conn, f"INSERT INTO order_items (id, order_id, user_id, sku, qty) VALUES {values}"
    )
    assert affected == len(items)
    assert rows_by_node(
        mariadb_cluster, "order_items", "id, order_id, user_id, sku, qty"
    ) == expected_layout("order_items", items, 2)

    # The same through mysql-connector-python: its rowcount is the OK packet's affected rows.
    more = [(100 + i, 0, i, "SKU-C", 1) for i in range(8)]
    values = ", ".join(f"({a}, {b}, {c}, '{d}', {e})" for a, b, c, d, e in more)
    connector = connector_connect(tables.proxy)
    try:
        cursor = connector.cursor()
        cursor.execute(f"INSERT INTO order_items (id, order_id, user_id, sku, qty) VALUES {values}")
        assert cursor.rowcount == len(more)
    finally:
        connector.close()
    assert rows_by_node(
        mariadb_cluster, "order_items", "id, order_id, user_id, sku, qty"
    ) == expected_layout("order_items", items + more, 2)


def test_executemany_with_parameters_places_every_row(
    tables: ShopTables, conn: pymysql.Connection, mariadb_cluster: Cluster
) -> None:
    tables.create("orders")
    orders = [
        (i, u, "new", Decimal(f"{i}.50"), datetime.datetime(2024, 1, i))
        for i, u in enumerate([7, 3, 10, 4, 9, 2, 1, 0, 5], start=1)
    ]
    with conn.cursor() as cursor:
        # PyMySQL rewrites this into one multi-row INSERT.
        sql = "INSERT INTO orders (id, user_id, status, total, created_at) VALUES (%s,%s,%s,%s,%s)"
        assert cursor.executemany(sql, orders) == 9
    assert rows_by_node(mariadb_cluster, "orders") == expected_layout("orders", orders, 1)
    assert multiset(run(conn, "SELECT * FROM orders")) == multiset(orders)


# --- broadcast and single tables ------------------------------------------------------------


def test_broadcast_writes_reach_every_copy_and_reads_return_one(
    tables: ShopTables, conn: pymysql.Connection, mariadb_cluster: Cluster
) -> None:
    tables.create("countries")
    copies = {(0, "shop_0", "countries"), (1, "shop_1", "countries")}
    assert physical_tables(mariadb_cluster, "countries") == copies

    countries = [("US", "United States"), ("FR", "France"), ("JP", "日本"), ("ES", "España")]
    # Affected rows as MySQL counts them for ONE table, not the sum over the copies.
    counts = [
        execute(conn, "INSERT INTO countries VALUES ('US', 'United States'), ('FR', 'France')"),
        execute(conn, "INSERT INTO countries VALUES (%s, %s)", ("JP", "日本")),
        execute(conn, "INSERT INTO countries (code, name) VALUES (%s, %s)", ("ES", "España")),
    ]
    assert rows_by_node(mariadb_cluster, "countries") == {c: sorted(countries) for c in copies}
    assert multiset(run(conn, "SELECT code, name FROM countries")) == multiset(countries)
    assert run(conn, "SELECT name FROM countries WHERE code = 'JP'") == [("日本",)]

    counts.append(execute(conn, "UPDATE countries SET name = 'Nippon' WHERE code = 'JP'"))
    counts.append(execute(conn, "DELETE FROM countries WHERE code = 'FR'"))
    after = sorted([("US", "United States"), ("JP", "Nippon"), ("ES", "España")])
    assert rows_by_node(mariadb_cluster, "countries") == {c: after for c in copies}
    assert multiset(run(conn, "SELECT code, name FROM countries")) == multiset(after)
    assert counts == [2, 1, 1, 1, 1]


def test_single_table_lives_only_on_its_backend(
    tables: ShopTables, conn: pymysql.Connection, mariadb_cluster: Cluster
) -> None:
    tables.create("settings")
    assert physical_tables(mariadb_cluster, "settings") == {(1, "shop_1", "settings")}
    assert execute(conn, "INSERT INTO settings VALUES ('currency', 'EUR'), ('banner', '☀️')") == 2
    assert execute(conn, "UPDATE settings SET value = 'USD' WHERE name = 'currency'") == 1
    assert mariadb_cluster.instances[1].execute(
        "SELECT name, value FROM shop_1.settings ORDER BY name"
    ) == [("banner", "☀️"), ("currency", "USD")]
    assert run(conn, "SELECT name, value FROM settings ORDER BY name") == [
        ("banner", "☀️"),
        ("currency", "USD"),
    ]
    assert physical_tables(mariadb_cluster, "settings") == {(1, "shop_1", "settings")}


# --- DDL -------------------------------------------------------------------------------------


def columns_of(cluster: Cluster, node: tuple[int, str, str]) -> list[tuple]:
    index, schema, table = node
    return cluster.instances[index].execute(
        "SELECT column_name, column_type, is_nullable, column_key FROM information_schema.columns "
        "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
        [schema, table],
    )


def test_create_table_creates_every_physical_table_and_drop_drops_them(
    tables: ShopTables, conn: pymysql.Connection, mariadb_cluster: Cluster
) -> None:
    tables.drop_physical("order_items")
    tables.created.append("order_items")
    assert physical_tables(mariadb_cluster, "order_items") == set()

    execute(conn, SCHEMA["order_items"])
    nodes = set(all_nodes("order_items"))
    assert nodes == {
        (0, "shop_0", "order_items_0"),
        (0, "shop_0", "order_items_1"),
        (1, "shop_1", "order_items_2"),
        (1, "shop_1", "order_items_3"),
    }
    assert physical_tables(mariadb_cluster, "order_items") == nodes
    expected_columns = [
        ("id", "bigint(20)", "NO", "PRI"),
        ("order_id", "bigint(20)", "YES", ""),
        ("user_id", "bigint(20)", "NO", ""),
        ("sku", "varchar(40)", "YES", ""),
        ("qty", "int(11)", "YES", ""),
        ("price", "decimal(10,2)", "YES", ""),
    ]
    for node in nodes:
        assert columns_of(mariadb_cluster, node) == expected_columns, node
    assert ("order_items",) in run(conn, "SHOW TABLES")

    execute(conn, "DROP TABLE order_items")
    assert physical_tables(mariadb_cluster, "order_items") == set()


def test_ddl_for_broadcast_and_single_tables(
    tables: ShopTables, conn: pymysql.Connection, mariadb_cluster: Cluster
) -> None:
    for name in ("countries", "settings"):
        tables.drop_physical(name)
        tables.created.append(name)
    execute(conn, SCHEMA["countries"])
    execute(conn, SCHEMA["settings"])
    assert physical_tables(mariadb_cluster, "countries") == {
        (0, "shop_0", "countries"),
        (1, "shop_1", "countries"),
    }
    assert physical_tables(mariadb_cluster, "settings") == {(1, "shop_1", "settings")}

    execute(conn, "ALTER TABLE countries ADD COLUMN population BIGINT")
    for node in physical_tables(mariadb_cluster, "countries"):
        assert [c[0] for c in columns_of(mariadb_cluster, node)] == ["code", "name", "population"]

    execute(conn, "DROP TABLE countries, settings")
    assert physical_tables(mariadb_cluster, "countries") == set()
    assert physical_tables(mariadb_cluster, "settings") == set()


def test_drop_table_if_exists_and_create_if_not_exists(
    tables: ShopTables, conn: pymysql.Connection, mariadb_cluster: Cluster
) -> None:
    tables.create("users")
    execute(conn, "INSERT INTO users (id, name) VALUES (1, 'a'), (2, 'b')")
    # Exists everywhere: nothing changes, rows stay.
    execute(conn, SCHEMA["users"].replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS"))
    assert multiset(run(conn, "SELECT id FROM users")) == multiset([(1,), (2,)])
    execute(conn, "DROP TABLE IF EXISTS users")
    assert physical_tables(mariadb_cluster, "users") == set()
    execute(conn, "DROP TABLE IF EXISTS users")  # nothing left to drop: still OK
    assert physical_tables(mariadb_cluster, "users") == set()


def test_ansi_quotes_sessions_route_double_quoted_names_as_names(
    tables: ShopTables, conn: pymysql.Connection
) -> None:
    """Under sql_mode ANSI_QUOTES "user_id" is the column, not a string: compared with itself
    it holds on every row of every shard (routed by it as a value, one shard would answer)."""
    tables.create("orders")
    orders = [(i, i * 5 % 13, "new") for i in range(1, 21)]
    with conn.cursor() as cursor:
        cursor.executemany("INSERT INTO orders (id, user_id, status) VALUES (%s, %s, %s)", orders)
    execute(conn, "SET SESSION sql_mode = CONCAT(@@sql_mode, ',ANSI_QUOTES')")
    assert run(conn, 'SELECT COUNT(*) FROM orders WHERE "user_id" = "user_id"') == [(20,)]
    assert run(conn, 'SELECT "id" FROM "orders" WHERE "user_id" = 7 AND status = \'new\'') == [
        (o[0],) for o in orders if o[1] == 7
    ]
    assert run(conn, "SELECT 'it''s \"quoted\"' FROM orders WHERE user_id = 7 LIMIT 1") == [
        ('it\'s "quoted"',)
    ]


def test_a_shard_failing_at_once_while_others_still_run_gives_its_error(
    tables: ShopTables, conn: pymysql.Connection, mariadb_cluster: Cluster
) -> None:
    """One shard answers ERR at once while the others are still working: the client gets the
    error, and the connections left mid-statement are read to their end, one reader each,
    before they serve anything else."""
    tables.create("users")
    insert_users(conn)
    index, schema, table = node_of("users", 3)
    mariadb_cluster.instances[index].execute(f"DROP TABLE `{schema}`.`{table}`")
    with pytest.raises(pymysql.err.ProgrammingError) as excinfo:
        run(conn, "SELECT id, SLEEP(0.2) FROM users ORDER BY id")
    assert excinfo.value.args[0] == 1146
    tables.create("users")
    insert_users(conn)
    assert run(conn, "SELECT id FROM users ORDER BY id") == [(k,) for k, _ in USERS]

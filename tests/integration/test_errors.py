"""Errors keep MySQL's codes and SQLSTATEs, backend errors name logical tables and databases,
and the proxy keeps serving other clients (and the same one) after each error."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

import mysql.connector
import pymysql
import pytest
from mariadb_instances import MariaDBInstance, free_port
from shop_helpers import ShopTables, assert_proxy_serves, cli, connector_connect, node_of

if TYPE_CHECKING:
    from pathlib import Path

    from conftest import Cluster, ProxyFactory, ProxyProcess

# A physical name: a shop table with its shard suffix, or a physical database.
PHYSICAL = re.compile(r"\b(users|orders|order_items)_[0-9]+\b|\bshop_[0-9]+\b")


@pytest.fixture
def tables(shop_proxy: ProxyProcess, mariadb_cluster: Cluster) -> Iterator[ShopTables]:
    shop = ShopTables(shop_proxy, mariadb_cluster)
    yield shop
    shop.cleanup()


def connector_error(proxy: ProxyProcess, sql: str | None = None, **kwargs) -> mysql.connector.Error:
    """The error mysql-connector-python (pure) raises connecting, or running `sql`."""
    with pytest.raises(mysql.connector.Error) as excinfo:
        conn = connector_connect(proxy, **kwargs)
        try:
            cursor = conn.cursor()
            assert sql is not None, "connected without an error"
            cursor.execute(sql)
            cursor.fetchall()
        finally:
            conn.close()
    return excinfo.value


def pymysql_query_error(conn: pymysql.Connection, sql: str) -> tuple[int, str]:
    with pytest.raises(pymysql.err.MySQLError) as excinfo, conn.cursor() as cursor:
        cursor.execute(sql)
    return excinfo.value.args[0], excinfo.value.args[1]


def still_usable(conn: pymysql.Connection) -> None:
    with conn.cursor() as cursor:
        cursor.execute("SELECT 42")
        assert cursor.fetchall() == ((42,),)


# --- at connect -----------------------------------------------------------------------------


def test_bad_password_is_1045_28000(shop_proxy: ProxyProcess) -> None:
    with pytest.raises(pymysql.err.OperationalError) as excinfo:
        shop_proxy.connect(password="wrong")
    assert excinfo.value.args[0] == 1045
    assert "Access denied for user 'app'" in excinfo.value.args[1]

    err = connector_error(shop_proxy, password="wrong")
    assert (err.errno, err.sqlstate) == (1045, "28000")
    err = connector_error(shop_proxy, user="nobody", password="app")
    assert (err.errno, err.sqlstate) == (1045, "28000")
    err = connector_error(shop_proxy, password="")
    assert (err.errno, err.sqlstate) == (1045, "28000")
    assert "using password: NO" in err.msg

    result = cli(shop_proxy, "SELECT 1", password="wrong")
    assert result.returncode == 1
    assert "ERROR 1045 (28000)" in result.stderr
    assert_proxy_serves(shop_proxy)


def test_unknown_database_at_connect_is_1049_42000(shop_proxy: ProxyProcess) -> None:
    with pytest.raises(pymysql.err.OperationalError) as excinfo:
        shop_proxy.connect(database="nosuch")
    assert excinfo.value.args == (1049, "Unknown database 'nosuch'")
    err = connector_error(shop_proxy, database="nosuch")
    assert (err.errno, err.sqlstate) == (1049, "42000")
    result = cli(shop_proxy, "SELECT 1", database="nosuch")
    assert "ERROR 1049 (42000)" in result.stderr
    # A physical database name is not a logical one.
    err = connector_error(shop_proxy, database="shop_0")
    assert (err.errno, err.sqlstate) == (1049, "42000")
    assert_proxy_serves(shop_proxy)


def test_unknown_database_via_use_and_com_init_db_is_1049(shop_proxy: ProxyProcess) -> None:
    conn = shop_proxy.connect()
    assert pymysql_query_error(conn, "USE nosuch") == (1049, "Unknown database 'nosuch'")
    with pytest.raises(pymysql.err.OperationalError) as excinfo:
        conn.select_db("nosuch")  # COM_INIT_DB
    assert excinfo.value.args == (1049, "Unknown database 'nosuch'")
    # The session is intact and still in `shop`.
    with conn.cursor() as cursor:
        cursor.execute("SELECT DATABASE()")
        assert cursor.fetchall() == (("shop",),)
    conn.close()

    connector = connector_connect(shop_proxy)
    try:
        with pytest.raises(mysql.connector.Error) as excinfo2:
            connector.cmd_init_db("nosuch")
        assert (excinfo2.value.errno, excinfo2.value.sqlstate) == (1049, "42000")
        with pytest.raises(mysql.connector.Error) as excinfo2:
            connector.cursor().execute("USE `nosuch`")
        assert (excinfo2.value.errno, excinfo2.value.sqlstate) == (1049, "42000")
    finally:
        connector.close()
    assert_proxy_serves(shop_proxy)


# --- statements -----------------------------------------------------------------------------


def test_unknown_table_is_1146_42s02(shop_proxy: ProxyProcess) -> None:
    conn = shop_proxy.connect()
    assert pymysql_query_error(conn, "SELECT * FROM nosuch") == (
        1146,
        "Table 'shop.nosuch' doesn't exist",
    )
    code, _ = pymysql_query_error(conn, "INSERT INTO nosuch (a) VALUES (1)")
    assert code == 1146
    still_usable(conn)
    conn.close()
    err = connector_error(shop_proxy, "SELECT * FROM nosuch WHERE id = 1")
    assert (err.errno, err.sqlstate) == (1146, "42S02")
    assert_proxy_serves(shop_proxy)


def test_unparsable_sql_is_1064_42000(shop_proxy: ProxyProcess) -> None:
    conn = shop_proxy.connect()
    for sql in ("selec 1", "SELECT * FROM users WHERE", "SELECT (1", "UPDATE users SET"):
        code, message = pymysql_query_error(conn, sql)
        assert code == 1064, sql
        assert "SQL syntax" in message, message
    still_usable(conn)
    conn.close()
    err = connector_error(shop_proxy, "SELEC * FROM users")
    assert (err.errno, err.sqlstate) == (1064, "42000")
    result = cli(shop_proxy, "SELEC 1")
    assert "ERROR 1064 (42000)" in result.stderr
    assert_proxy_serves(shop_proxy)


def test_insert_without_values_is_a_syntax_error_not_unsupported(shop_proxy: ProxyProcess) -> None:
    conn = shop_proxy.connect()
    code, message = pymysql_query_error(conn, "INSERT users")
    assert code == 1064, message
    still_usable(conn)
    conn.close()


def test_unsupported_statement_is_1235_42000(shop_proxy: ProxyProcess) -> None:
    conn = shop_proxy.connect()
    code, message = pymysql_query_error(conn, "HANDLER users OPEN")
    assert code == 1235
    assert "HANDLER" in message
    still_usable(conn)
    conn.close()
    err = connector_error(shop_proxy, "HANDLER users OPEN")
    assert (err.errno, err.sqlstate) == (1235, "42000")
    assert_proxy_serves(shop_proxy)


def test_duplicate_key_is_forwarded_as_1062_23000_without_physical_names(
    tables: ShopTables, shop_proxy: ProxyProcess
) -> None:
    tables.create("users")
    conn = shop_proxy.connect()
    with conn.cursor() as cursor:
        cursor.execute("INSERT INTO users (id, name, email) VALUES (7, 'a', 'a@x')")
        cursor.execute("ALTER TABLE users ADD UNIQUE KEY email_uq (email)")
        cursor.execute("INSERT INTO users (id, name, email) VALUES (3, 'b', 'b@x')")
    code, message = pymysql_query_error(conn, "INSERT INTO users (id, name) VALUES (7, 'b')")
    assert code == 1062
    assert message == "Duplicate entry '7' for key 'PRIMARY'"
    code, message = pymysql_query_error(
        conn, "UPDATE users SET email = 'a@x' WHERE id = 3"
    )  # same shard as 7
    assert code == 1062
    assert "Duplicate entry 'a@x' for key 'email_uq'" in message
    assert not PHYSICAL.search(message), message
    still_usable(conn)
    conn.close()

    err = connector_error(shop_proxy, "INSERT INTO users (id, name) VALUES (7, 'c')")
    assert (err.errno, err.sqlstate) == (1062, "23000")
    assert not PHYSICAL.search(err.msg), err.msg
    assert_proxy_serves(shop_proxy)


def test_backend_errors_name_the_logical_table_and_database(
    tables: ShopTables, shop_proxy: ProxyProcess, mariadb_cluster: Cluster
) -> None:
    tables.create("users")
    conn = shop_proxy.connect()
    # A column that does not exist, qualified with the table name (rewritten to users_3).
    code, message = pymysql_query_error(conn, "SELECT users.nope FROM users WHERE id = 7")
    assert code == 1054
    assert message.startswith("Unknown column 'users.nope' in "), message
    code, message = pymysql_query_error(conn, "SELECT shop.users.nope FROM shop.users WHERE id = 7")
    assert code == 1054
    assert not PHYSICAL.search(message), message

    # A physical table missing behind the proxy's back: the error names shop.users.
    index, schema, table = node_of("users", 7)
    mariadb_cluster.instances[index].execute(f"DROP TABLE `{schema}`.`{table}`")
    code, message = pymysql_query_error(conn, "SELECT * FROM users WHERE id = 7")
    assert (code, message) == (1146, "Table 'shop.users' doesn't exist")
    still_usable(conn)
    conn.close()
    err = connector_error(shop_proxy, "SELECT name FROM users WHERE id = 3")
    assert (err.errno, err.sqlstate) == (1146, "42S02")
    assert not PHYSICAL.search(err.msg), err.msg
    assert_proxy_serves(shop_proxy)


def test_error_in_a_scatter_read_names_the_logical_table(
    tables: ShopTables, shop_proxy: ProxyProcess
) -> None:
    tables.create("orders")
    conn = shop_proxy.connect()
    code, message = pymysql_query_error(conn, "SELECT orders.missing FROM orders")
    assert code == 1054
    assert message.startswith("Unknown column 'orders.missing' in "), message
    code, message = pymysql_query_error(
        conn, "INSERT INTO orders (id, user_id, status) VALUES (1, 1, 'x'), (3, NULL, 'y')"
    )
    assert code == 1048  # Column 'user_id' cannot be null (a NOT NULL shard key)
    assert not PHYSICAL.search(message), message
    still_usable(conn)
    conn.close()
    assert_proxy_serves(shop_proxy)


def test_backend_connections_killed_while_idle_are_not_handed_to_clients(
    tables: ShopTables, shop_proxy: ProxyProcess, mariadb_cluster: Cluster
) -> None:
    tables.create("users")
    conn = shop_proxy.connect()
    with conn.cursor() as cursor:
        cursor.execute("INSERT INTO users (id, name) VALUES (1, 'a'), (2, 'b'), (7, 'c')")
    conn.close()
    killed = 0
    for instance in mariadb_cluster.instances:  # every idle pooled connection, on both shards
        admin = instance.connect()
        with admin.cursor() as cursor:
            cursor.execute(
                "SELECT id FROM information_schema.processlist "
                "WHERE id <> CONNECTION_ID() AND command = 'Sleep'"
            )
            for (thread_id,) in cursor.fetchall():
                cursor.execute(f"KILL {thread_id}")
                killed += 1
        admin.close()
    assert killed >= 2
    conn = shop_proxy.connect()
    with conn.cursor() as cursor:
        cursor.execute("SELECT name FROM users WHERE id = 7")
        assert cursor.fetchall() == (("c",),)
        cursor.execute("SELECT id FROM users")
        assert sorted(cursor.fetchall()) == [(1,), (2,), (7,)]
        cursor.execute("INSERT INTO users (id, name) VALUES (3, 'd'), (4, 'e')")
        assert cursor.rowcount == 2
    conn.close()
    assert_proxy_serves(shop_proxy)


@pytest.mark.parametrize("missing_key", [2, 3])  # the first unit of ds1's connection, or its second
def test_prepared_merge_read_with_a_table_missing_on_one_shard_is_1146(
    tables: ShopTables, shop_proxy: ProxyProcess, mariadb_cluster: Cluster, missing_key: int
) -> None:
    """A backend refusing to prepare one unit of a merged read (its physical table is gone)
    ends the statement with its ERR: the unit was never sent, so nothing is waited for."""
    tables.create("users")
    with shop_proxy.connect().cursor() as cursor:
        cursor.execute("INSERT INTO users (id, name) VALUES (0, 'a'), (1, 'b'), (2, 'c'), (3, 'd')")
    index, schema, table = node_of("users", missing_key)
    assert index == 1  # the statement's client-side prepare runs on ds0, so it succeeds
    mariadb_cluster.instances[index].execute(f"DROP TABLE `{schema}`.`{table}`")
    conn = connector_connect(shop_proxy)
    try:
        cursor = conn.cursor(prepared=True)
        with pytest.raises(mysql.connector.Error) as excinfo:
            cursor.execute("SELECT id, name FROM users ORDER BY id")
            cursor.fetchall()
        assert (excinfo.value.errno, excinfo.value.sqlstate) == (1146, "42S02")
        assert not PHYSICAL.search(excinfo.value.msg), excinfo.value.msg
        cursor = conn.cursor()
        cursor.execute("SELECT 42")
        assert cursor.fetchall() == [(42,)]
    finally:
        conn.close()
    assert_proxy_serves(shop_proxy)


NO_BACKSLASH_CONFIG = """\
users: [{name: app, password: app}]
backends:
  b0: {host: 127.0.0.1, port: PORT, user: root, password: "", database: nbe_0}
databases:
  shop:
    default_backend: b0
    tables:
      notes: {backend: b0}
"""


def test_a_backend_in_no_backslash_escapes_mode_is_refused_until_it_leaves_it(
    proxy_server: ProxyFactory, mariadb_base_dir: Path
) -> None:
    """The proxy writes string literals with backslash escapes (prepared statements' values):
    on a server whose sql_mode has NO_BACKSLASH_ESCAPES a value could end its string early,
    so its connections are refused with a message naming the mode, until it is unset. The
    proxy, which could not read the server's version at start, greets as MariaDB does
    (`5.5.5-10.11...`): mysql-connector would otherwise pick MySQL 8's collations."""
    server = MariaDBInstance(
        "nbe", free_port(), mariadb_base_dir, extra_args=["--sql-mode=NO_BACKSLASH_ESCAPES"]
    )
    server.start()
    try:
        server.execute("CREATE DATABASE nbe_0")
        server.execute("CREATE TABLE nbe_0.notes (id INT PRIMARY KEY, body VARCHAR(50))")
        proxy = proxy_server(NO_BACKSLASH_CONFIG.replace("PORT", str(server.port)), name="nbe")
        with pytest.raises(pymysql.err.MySQLError) as refused:  # at login: the catalog
            proxy.connect().cursor().execute("SELECT * FROM notes")
        assert refused.value.args[0] == 2013
        assert "NO_BACKSLASH_ESCAPES" in refused.value.args[1]
        server.execute("SET GLOBAL sql_mode = DEFAULT")
        prepared = connector_connect(proxy)
        try:
            cursor = prepared.cursor(prepared=True)
            cursor.execute("INSERT INTO notes VALUES (?, ?)", (1, "it\\'s"))
            cursor.close()
        finally:
            prepared.close()
        assert server.execute("SELECT body FROM nbe_0.notes") == [("it\\'s",)]
        proxy.terminate()
    finally:
        server.stop()

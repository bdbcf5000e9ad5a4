"""Basic transactions through the proxy, checked on the backends: COMMIT makes every shard's rows
visible, ROLLBACK none, and an autocommit write over several shards is all or nothing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pymysql
import pytest
from shop_helpers import (
    ShopTables,
    assert_proxy_serves,
    connector_connect,
    expected_layout,
    node_of,
    physical_tables,
    rows_by_node,
)

if TYPE_CHECKING:
    from conftest import Cluster, ProxyProcess


@pytest.fixture
def tables(shop_proxy: ProxyProcess, mariadb_cluster: Cluster) -> Iterator[ShopTables]:
    shop = ShopTables(shop_proxy, mariadb_cluster)
    shop.create("users")
    yield shop
    shop.cleanup()


def user_rows(cluster: Cluster) -> dict:
    return rows_by_node(cluster, "users", "id, name")


def direct_ids(cluster: Cluster) -> list[int]:
    """Every user id committed on any shard, read straight from the backends."""
    return sorted(row[0] for rows in user_rows(cluster).values() for row in rows)


def test_begin_insert_on_two_backends_commit(
    tables: ShopTables, shop_proxy: ProxyProcess, mariadb_cluster: Cluster
) -> None:
    assert node_of("users", 1)[0] != node_of("users", 2)[0]  # ds0 and ds1
    conn = shop_proxy.connect()
    with conn.cursor() as cursor:
        cursor.execute("BEGIN")
        cursor.execute("INSERT INTO users (id, name) VALUES (1, 'one')")
        cursor.execute("INSERT INTO users (id, name) VALUES (2, 'two')")
        # Inside the transaction the client sees its own rows ...
        cursor.execute("SELECT id FROM users WHERE id IN (1, 2)")
        assert sorted(cursor.fetchall()) == [(1,), (2,)]
        # ... nobody else does yet.
        assert direct_ids(mariadb_cluster) == []
        cursor.execute("COMMIT")
    conn.close()
    assert user_rows(mariadb_cluster) == expected_layout("users", [(1, "one"), (2, "two")], 0)


def test_start_transaction_then_rollback_leaves_nothing(
    tables: ShopTables, shop_proxy: ProxyProcess, mariadb_cluster: Cluster
) -> None:
    conn = shop_proxy.connect()
    with conn.cursor() as cursor:
        cursor.execute("START TRANSACTION")
        cursor.execute("INSERT INTO users (id, name) VALUES (4, 'four')")  # ds0
        cursor.execute("INSERT INTO users (id, name) VALUES (7, 'seven')")  # ds1
        cursor.execute("ROLLBACK")
        cursor.execute("SELECT id FROM users")
        assert cursor.fetchall() == ()
    conn.close()
    assert direct_ids(mariadb_cluster) == []


def test_pymysql_commit_and_rollback_methods(
    tables: ShopTables, shop_proxy: ProxyProcess, mariadb_cluster: Cluster
) -> None:
    conn = shop_proxy.connect(autocommit=False)  # PyMySQL sends SET AUTOCOMMIT = 0
    with conn.cursor() as cursor:
        cursor.execute("INSERT INTO users (id, name) VALUES (5, 'five'), (6, 'six')")
        assert direct_ids(mariadb_cluster) == []
        conn.commit()
        assert direct_ids(mariadb_cluster) == [5, 6]
        cursor.execute("INSERT INTO users (id, name) VALUES (8, 'eight')")
        cursor.execute("INSERT INTO users (id, name) VALUES (11, 'eleven')")
        conn.rollback()
        assert direct_ids(mariadb_cluster) == [5, 6]
        # A new transaction starts by itself after COMMIT/ROLLBACK while autocommit is off.
        cursor.execute("UPDATE users SET name = 'FIVE' WHERE id = 5")
        cursor.execute("DELETE FROM users WHERE id = 6")
        assert direct_ids(mariadb_cluster) == [5, 6]
        conn.commit()
    conn.close()
    assert user_rows(mariadb_cluster) == expected_layout("users", [(5, "FIVE")], 0)


def test_set_autocommit_0_then_commit_and_disconnect_rolls_back(
    tables: ShopTables, shop_proxy: ProxyProcess, mariadb_cluster: Cluster
) -> None:
    conn = shop_proxy.connect()
    with conn.cursor() as cursor:
        cursor.execute("SET autocommit = 0")
        cursor.execute("INSERT INTO users (id, name) VALUES (12, 'twelve')")  # ds0
        cursor.execute("INSERT INTO users (id, name) VALUES (13, 'thirteen')")  # ds0
        cursor.execute("INSERT INTO users (id, name) VALUES (14, 'fourteen')")  # ds1
        cursor.execute("COMMIT")
        assert direct_ids(mariadb_cluster) == [12, 13, 14]
        cursor.execute("INSERT INTO users (id, name) VALUES (15, 'fifteen')")
        cursor.execute("INSERT INTO users (id, name) VALUES (16, 'sixteen')")
    conn.close()  # never committed: gone with the client
    assert direct_ids(mariadb_cluster) == [12, 13, 14]

    # mysql-connector-python's autocommit=False does the same.
    connector = connector_connect(shop_proxy, autocommit=False)
    cursor = connector.cursor()
    cursor.execute("INSERT INTO users (id, name) VALUES (17, 'x'), (18, 'y')")
    assert direct_ids(mariadb_cluster) == [12, 13, 14]
    connector.commit()
    connector.close()
    assert direct_ids(mariadb_cluster) == [12, 13, 14, 17, 18]


def test_select_at_at_autocommit_reports_the_session_value(shop_proxy: ProxyProcess) -> None:
    conn = shop_proxy.connect()
    with conn.cursor() as cursor:
        cursor.execute("SET autocommit = 0")
        cursor.execute("SELECT @@autocommit, @@session.autocommit")
        assert cursor.fetchall() == ((0, 0),)
        cursor.execute("SET autocommit = 1")
        cursor.execute("SELECT @@autocommit")
        assert cursor.fetchall() == ((1,),)
    conn.close()


def test_multi_row_insert_hitting_a_duplicate_on_one_shard_leaves_no_row_anywhere(
    tables: ShopTables, shop_proxy: ProxyProcess, mariadb_cluster: Cluster
) -> None:
    conn = shop_proxy.connect()
    with conn.cursor() as cursor:
        cursor.execute("INSERT INTO users (id, name) VALUES (6, 'existing')")  # shard 2, ds1
        before = user_rows(mariadb_cluster)
        values = ", ".join(f"({k}, 'new {k}')" for k in range(10))  # all shards, 6 clashes
        with pytest.raises(pymysql.err.IntegrityError) as excinfo:
            cursor.execute(f"INSERT INTO users (id, name) VALUES {values}")
        assert excinfo.value.args[0] == 1062
        assert "'6'" in excinfo.value.args[1]
        assert user_rows(mariadb_cluster) == before
        # The session goes on: the same client can still write on every shard.
        cursor.execute("INSERT INTO users (id, name) VALUES (0, 'a'), (1, 'b'), (3, 'c')")
    conn.close()
    assert direct_ids(mariadb_cluster) == [0, 1, 3, 6]
    assert_proxy_serves(shop_proxy)


def test_multi_row_insert_duplicate_inside_the_statement_is_atomic(
    tables: ShopTables, shop_proxy: ProxyProcess, mariadb_cluster: Cluster
) -> None:
    conn = shop_proxy.connect()
    with conn.cursor() as cursor, pytest.raises(pymysql.err.IntegrityError) as excinfo:
        cursor.execute("INSERT INTO users (id, name) VALUES (1, 'a'), (2, 'b'), (3, 'c'), (3, 'd')")
    assert excinfo.value.args[0] == 1062
    conn.close()
    assert direct_ids(mariadb_cluster) == []


def test_broadcast_write_failing_on_one_copy_changes_no_copy(
    shop_proxy: ProxyProcess, mariadb_cluster: Cluster
) -> None:
    shop = ShopTables(shop_proxy, mariadb_cluster)
    try:
        shop.create("countries")
        # Only ds1's copy already has 'FR' (drift planted behind the proxy's back).
        mariadb_cluster.instances[1].execute("INSERT INTO shop_1.countries VALUES ('FR', 'x')")
        conn = shop_proxy.connect()
        with conn.cursor() as cursor, pytest.raises(pymysql.err.IntegrityError) as excinfo:
            cursor.execute("INSERT INTO countries VALUES ('DE', 'Germany'), ('FR', 'France')")
        conn.close()
        assert excinfo.value.args[0] == 1062
        assert rows_by_node(mariadb_cluster, "countries") == {
            (0, "shop_0", "countries"): [],
            (1, "shop_1", "countries"): [("FR", "x")],
        }
        assert physical_tables(mariadb_cluster, "countries") == {
            (0, "shop_0", "countries"),
            (1, "shop_1", "countries"),
        }
    finally:
        shop.cleanup()


def test_transaction_error_then_commit_keeps_the_other_rows(
    tables: ShopTables, shop_proxy: ProxyProcess, mariadb_cluster: Cluster
) -> None:
    """A failed statement inside a transaction fails alone (MySQL keeps the transaction)."""
    conn = shop_proxy.connect()
    with conn.cursor() as cursor:
        cursor.execute("INSERT INTO users (id, name) VALUES (3, 'three')")
        cursor.execute("BEGIN")
        cursor.execute("INSERT INTO users (id, name) VALUES (2, 'two')")  # ds1
        with pytest.raises(pymysql.err.IntegrityError):
            cursor.execute("INSERT INTO users (id, name) VALUES (3, 'again')")  # ds0 duplicate
        cursor.execute("INSERT INTO users (id, name) VALUES (4, 'four')")  # ds0
        cursor.execute("COMMIT")
    conn.close()
    assert user_rows(mariadb_cluster) == expected_layout(
        "users", [(2, "two"), (3, "three"), (4, "four")], 0
    )

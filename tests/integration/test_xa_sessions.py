"""Transaction semantics a client sees through the proxy, as MySQL gives them: locking reads,
implicit commit by DDL, reads of the transaction's own writes on every shard, a deadlock ending
the whole transaction, and the shard-key UPDATE the router refuses."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pymysql
import pytest
from shop_helpers import ShopTables, node_of, rows_by_node

if TYPE_CHECKING:
    from conftest import Cluster, ProxyProcess


@pytest.fixture
def tables(shop_proxy: ProxyProcess, mariadb_cluster: Cluster) -> Iterator[ShopTables]:
    shop = ShopTables(shop_proxy, mariadb_cluster)
    shop.create("users")
    conn = shop_proxy.connect()
    with conn.cursor() as cursor:
        for key in range(1, 5):  # shards 1, 2, 3, 0: both backends
            cursor.execute(f"INSERT INTO users (id, name) VALUES ({key}, 'u{key}')")
    conn.close()
    yield shop
    shop.cleanup()


@pytest.fixture
def connect(tables: ShopTables, shop_proxy: ProxyProcess) -> Iterator[Callable[[], Any]]:
    """Client connections to the shop proxy, closed before the tables are dropped (an open
    transaction would hold their metadata locks)."""
    opened: list[Any] = []

    def make() -> Any:
        conn = shop_proxy.connect()
        opened.append(conn)
        return conn

    yield make
    for conn in opened:
        with contextlib.suppress(Exception):
            conn.close()


def names(cluster: Cluster) -> dict[int, str]:
    rows = rows_by_node(cluster, "users", "id, name")
    return {key: name for node_rows in rows.values() for key, name in node_rows}


def test_select_for_update_holds_the_row_lock_until_commit(
    connect: Callable[[], Any], shop_proxy: ProxyProcess
) -> None:
    holder = connect()
    waiter = connect()
    with holder.cursor() as cursor:
        cursor.execute("BEGIN")
        cursor.execute("SELECT name FROM users WHERE id IN (1, 2) FOR UPDATE")  # both backends
        assert sorted(cursor.fetchall()) == [("u1",), ("u2",)]
    with waiter.cursor() as cursor:
        cursor.execute("SET innodb_lock_wait_timeout = 1")
        for key in (1, 2):
            with pytest.raises(pymysql.err.OperationalError) as excinfo:
                cursor.execute(f"UPDATE users SET name = 'late' WHERE id = {key}")
            assert excinfo.value.args[0] == 1205
        cursor.execute("UPDATE users SET name = 'free' WHERE id = 3")  # not locked
    with holder.cursor() as cursor:
        cursor.execute("COMMIT")
    with waiter.cursor() as cursor:
        assert cursor.execute("UPDATE users SET name = 'late' WHERE id IN (1, 2)") == 2
    holder.close()
    waiter.close()


def test_a_waiting_locking_read_proceeds_once_the_holder_commits(
    connect: Callable[[], Any], tables: ShopTables, mariadb_cluster: Cluster
) -> None:
    holder = connect()
    waiter = connect()
    with holder.cursor() as cursor:
        cursor.execute("BEGIN")
        cursor.execute("UPDATE users SET name = 'held' WHERE id = 2")
    seen: list[object] = []

    def wait_for_row() -> None:
        with waiter.cursor() as cursor:
            cursor.execute("BEGIN")
            cursor.execute("SELECT name FROM users WHERE id = 2 FOR UPDATE")
            seen.append(cursor.fetchall())
            cursor.execute("COMMIT")

    thread = threading.Thread(target=wait_for_row)
    thread.start()
    time.sleep(0.5)
    assert seen == []  # blocked on the holder's lock
    with holder.cursor() as cursor:
        cursor.execute("COMMIT")
    thread.join(10)
    assert seen == [(("held",),)]
    holder.close()
    waiter.close()


def test_reads_in_a_transaction_see_its_writes_on_every_shard(
    connect: Callable[[], Any], tables: ShopTables, mariadb_cluster: Cluster
) -> None:
    conn = connect()
    with conn.cursor() as cursor:
        cursor.execute("START TRANSACTION")
        cursor.execute("INSERT INTO users (id, name) VALUES (5, 'u5'), (6, 'u6'), (7, 'u7')")
        cursor.execute("DELETE FROM users WHERE id = 4")
        cursor.execute("UPDATE users SET name = CONCAT(name, '!')")  # scatter
        cursor.execute("SELECT id, name FROM users ORDER BY id")
        assert cursor.fetchall() == tuple((k, f"u{k}!") for k in (1, 2, 3, 5, 6, 7))
        cursor.execute("SELECT COUNT(*) FROM users")
        assert cursor.fetchall() == ((6,),)
        assert names(mariadb_cluster) == {1: "u1", 2: "u2", 3: "u3", 4: "u4"}
        cursor.execute("ROLLBACK")
        cursor.execute("SELECT COUNT(*) FROM users")
        assert cursor.fetchall() == ((4,),)
    conn.close()


def test_ddl_commits_the_open_transaction_first(
    connect: Callable[[], Any], tables: ShopTables, mariadb_cluster: Cluster
) -> None:
    conn = connect()
    try:
        with conn.cursor() as cursor:
            cursor.execute("SET autocommit = 0")
            cursor.execute("UPDATE users SET name = 'x' WHERE id IN (1, 2)")  # both backends
            assert names(mariadb_cluster)[1] == "u1"
            tables.drop_physical("orders")
            tables.created.append("orders")
            cursor.execute(
                "CREATE TABLE orders (id BIGINT PRIMARY KEY, user_id BIGINT NOT NULL, "
                "status VARCHAR(20), total DECIMAL(10,2), created_at DATETIME)"
            )
            assert names(mariadb_cluster) == {1: "x", 2: "x", 3: "u3", 4: "u4"}
            cursor.execute("ROLLBACK")  # nothing left to roll back
            assert names(mariadb_cluster) == {1: "x", 2: "x", 3: "u3", 4: "u4"}
            # autocommit is still 0: the next write opens a new transaction.
            cursor.execute("UPDATE users SET name = 'y' WHERE id = 3")
            cursor.execute("ROLLBACK")
            assert names(mariadb_cluster)[3] == "u3"
    finally:
        conn.close()


def test_shard_key_update_is_refused_with_1235_and_changes_nothing(
    connect: Callable[[], Any], tables: ShopTables, mariadb_cluster: Cluster
) -> None:
    before = rows_by_node(mariadb_cluster, "users")
    conn = connect()
    with conn.cursor() as cursor:
        for sql in (
            "UPDATE users SET id = 6 WHERE id = 1",  # shard 1 (ds0) -> shard 2 (ds1)
            "UPDATE users SET name = 'n', id = id + 1 WHERE id = 2",
            "UPDATE users u SET u.id = 9",
        ):
            with pytest.raises(pymysql.err.NotSupportedError) as excinfo:
                cursor.execute(sql)
            code, message = excinfo.value.args
            assert code == 1235
            assert "shard key column 'id'" in message
        cursor.execute("BEGIN")
        with pytest.raises(pymysql.err.NotSupportedError):
            cursor.execute("UPDATE users SET id = 6 WHERE id = 1")
        cursor.execute("COMMIT")
    conn.close()
    assert rows_by_node(mariadb_cluster, "users") == before


def test_deadlock_rolls_back_the_whole_transaction_as_mysql_does(
    connect: Callable[[], Any], tables: ShopTables, mariadb_cluster: Cluster
) -> None:
    """Two transactions lock users 1 and 4 (both on ds0) in opposite orders; the victim's
    other branch, on ds1, is rolled back with it, and its session is out of the transaction."""
    assert node_of("users", 1)[0] == node_of("users", 4)[0] == 0
    assert node_of("users", 2)[0] == 1
    first = connect()
    second = connect()
    errors: dict[str, BaseException] = {}
    with first.cursor() as a, second.cursor() as b:
        a.execute("BEGIN")
        a.execute("UPDATE users SET name = 'a' WHERE id = 2")  # a's ds1 branch
        a.execute("UPDATE users SET name = 'a' WHERE id = 1")
        b.execute("BEGIN")
        b.execute("UPDATE users SET name = 'b' WHERE id = 4")

        def update(who: str, cursor: pymysql.cursors.Cursor, key: int) -> None:
            try:
                cursor.execute(f"UPDATE users SET name = '{who}' WHERE id = {key}")
            except pymysql.MySQLError as exc:
                errors[who] = exc

        thread = threading.Thread(target=update, args=("a", a, 4))
        thread.start()
        time.sleep(0.3)
        update("b", b, 1)
        thread.join(10)
        assert [e.args[0] for e in errors.values()] == [1213]
        (victim_name,) = errors
        survivor_name = "b" if victim_name == "a" else "a"
        victim, survivor = (a, b) if victim_name == "a" else (b, a)
        survivor.execute("COMMIT")
        # The victim's transaction is over: its COMMIT commits nothing ...
        victim.execute("COMMIT")
        current = names(mariadb_cluster)
        assert (current[1], current[4]) == (survivor_name, survivor_name)
        # ... including a's ds1 branch when a was the victim: rolled back with the ds0 one.
        assert current[2] == ("a" if survivor_name == "a" else "u2")
    first.close()
    second.close()

"""Generated keys: an INSERT into a sharded table with `generated_key: {column: id}` that leaves
`id` out gets snowflake ids from the proxy (routed by them when `id` is the shard key); the OK
packet and LAST_INSERT_ID() give the first one, as MySQL does for AUTO_INCREMENT.

Config: tests/integration/xa_helpers.py (`events` sharded by its generated `id`, `notes` by
`account_id` with a generated `id`), on the shared cluster.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pymysql
import pytest
from shop_helpers import connector_connect
from xa_helpers import EVENTS, NOTES, create_tables, new_db_name, table_rows, xa_config

from proxy.ids import decode, worker_for

if TYPE_CHECKING:
    from conftest import Cluster, ProxyFactory, ProxyProcess


@pytest.fixture(scope="module")
def two_proxies(
    proxy_server: ProxyFactory, mariadb_cluster: Cluster
) -> Iterator[tuple[str, ProxyProcess, ProxyProcess]]:
    """Instances A (worker from its id's hash) and B (worker_id pinned to 5)."""
    db = new_db_name("genkeys")
    a = proxy_server(xa_config(mariadb_cluster, db, "A"), name="keys-a")
    b = proxy_server(xa_config(mariadb_cluster, db, "B", worker_id=5), name="keys-b")
    yield db, a, b
    a.terminate()
    b.terminate()
    for index in range(2):
        mariadb_cluster.instances[index].execute(f"DROP DATABASE IF EXISTS `{db}_{index}`")


@pytest.fixture
def keys(
    two_proxies: tuple[str, ProxyProcess, ProxyProcess],
) -> tuple[str, ProxyProcess, ProxyProcess]:
    _, a, _ = two_proxies
    create_tables(a, EVENTS, NOTES)
    return two_proxies


def query(conn: Any, sql: str) -> tuple:
    with conn.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchall()


def test_single_row_insert_gets_a_key_and_last_insert_id(
    keys: tuple[str, ProxyProcess, ProxyProcess], mariadb_cluster: Cluster
) -> None:
    db, a, _ = keys
    conn = a.connect(database="bank")
    with conn.cursor() as cursor:
        assert cursor.execute("INSERT INTO events (body) VALUES ('first')") == 1
        key = cursor.lastrowid  # from the OK packet
    assert key > 0
    assert decode(key)[1] == worker_for("A")
    assert query(conn, "SELECT LAST_INSERT_ID()") == ((key,),)
    assert query(conn, "SELECT LAST_INSERT_ID() + 1 AS next") == ((key + 1,),)
    assert table_rows(mariadb_cluster, db, "events") == [(key, "first")]
    # It lives in the shard its key says.
    shard = key % 4
    physical = f"`{db}_{shard // 2}`.events_{shard}"
    assert mariadb_cluster.instances[shard // 2].execute(f"SELECT id FROM {physical}") == [(key,)]
    conn.close()


def test_multi_row_insert_spreads_rows_and_reports_the_first_key(
    keys: tuple[str, ProxyProcess, ProxyProcess], mariadb_cluster: Cluster
) -> None:
    db, a, _ = keys
    conn = a.connect(database="bank")
    with conn.cursor() as cursor:
        values = ", ".join(f"('row {i}')" for i in range(8))
        assert cursor.execute(f"INSERT INTO events (body) VALUES {values}") == 8
        first = cursor.lastrowid
    rows = table_rows(mariadb_cluster, db, "events")
    by_body = {body: key for key, body in rows}
    ordered = [by_body[f"row {i}"] for i in range(8)]
    assert ordered[0] == first
    assert ordered == sorted(ordered) and len(set(ordered)) == 8  # increasing in row order
    assert {key % 4 for key in ordered} == {0, 1, 2, 3}  # over every shard
    assert query(conn, "SELECT LAST_INSERT_ID()") == ((first,),)
    # A failing statement doesn't change LAST_INSERT_ID(), and ids can be given explicitly.
    with pytest.raises(pymysql.err.IntegrityError), conn.cursor() as cursor:
        cursor.execute(f"INSERT INTO events (id, body) VALUES ({first}, 'again')")
    assert query(conn, "SELECT LAST_INSERT_ID()") == ((first,),)
    conn.close()


def test_generated_key_that_is_not_the_shard_key(
    keys: tuple[str, ProxyProcess, ProxyProcess], mariadb_cluster: Cluster
) -> None:
    db, a, _ = keys
    conn = a.connect(database="bank")
    with conn.cursor() as cursor:
        cursor.execute("INSERT INTO notes (account_id, body) VALUES (1, 'a'), (2, 'b'), (1, 'c')")
        first = cursor.lastrowid
        # LAST_INSERT_ID() inside a statement is the session's value too.
        cursor.execute("INSERT INTO notes (account_id, body) VALUES (3, LAST_INSERT_ID())")
        fourth = cursor.lastrowid
    rows = {body: (key, account) for key, account, body in table_rows(mariadb_cluster, db, "notes")}
    assert rows["a"] == (first, 1)
    assert rows["b"][1] == 2 and rows["c"][1] == 1
    assert first < rows["b"][0] < rows["c"][0] < fourth
    assert rows[str(first)] == (fourth, 3)
    conn.close()


def test_transaction_rollback_and_prepared_statements(
    keys: tuple[str, ProxyProcess, ProxyProcess], mariadb_cluster: Cluster
) -> None:
    db, a, _ = keys
    conn = a.connect(database="bank")
    with conn.cursor() as cursor:
        cursor.execute("BEGIN")
        cursor.execute("INSERT INTO events (body) VALUES ('x'), ('y')")
        key = cursor.lastrowid
        cursor.execute("SELECT id FROM events WHERE id = LAST_INSERT_ID()")
        assert cursor.fetchall() == ((key,),)
        cursor.execute("ROLLBACK")
    assert table_rows(mariadb_cluster, db, "events") == []
    conn.close()

    prepared = connector_connect(a, database="bank")
    cursor = prepared.cursor(prepared=True)
    cursor.execute("INSERT INTO events (body) VALUES (%s)", ("prepared",))
    key = cursor.lastrowid
    cursor.execute("SELECT body FROM events WHERE id = %s", (key,))
    assert cursor.fetchall() == [("prepared",)]
    prepared.close()


def test_keys_are_unique_across_instances_and_increase_per_instance(
    keys: tuple[str, ProxyProcess, ProxyProcess], mariadb_cluster: Cluster
) -> None:
    db, a, b = keys
    seen: list[list[int]] = [[] for _ in range(4)]

    def insert(number: int, name: str, proxy: ProxyProcess) -> None:
        conn = proxy.connect(database="bank")
        with conn.cursor() as cursor:
            for i in range(60):
                rows = ", ".join(f"('{name}{i}.{j}')" for j in range(3))
                cursor.execute(f"INSERT INTO events (body) VALUES {rows}")
                seen[number].append(cursor.lastrowid)
        conn.close()

    threads = [
        threading.Thread(target=insert, args=(number, name, proxy))
        for number, (name, proxy) in enumerate((("A", a), ("A", a), ("B", b), ("B", b)))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    rows = table_rows(mariadb_cluster, db, "events")
    assert len(rows) == 4 * 60 * 3
    assert len({key for key, _ in rows}) == len(rows)
    workers = {body[0]: set() for _, body in rows}
    for key, body in rows:
        workers[body[0]].add(decode(key)[1])
    assert workers == {"A": {worker_for("A")}, "B": {5}}
    # One client's keys increase, statement after statement.
    for client_keys in seen:
        assert len(client_keys) == 60 and client_keys == sorted(client_keys)

"""Read/write splitting against a real MariaDB replica of the primary.

The replica gets one row the primary doesn't have (written on the replica with sql_log_bin off),
so a read that returns it provably came from the replica.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pymysql
import pytest
from mariadb_instances import MariaDBInstance, free_port

if TYPE_CHECKING:
    from conftest import ProxyFactory, ProxyProcess

REPLICA_ONLY = (99, "replica-only")


@pytest.fixture(scope="module")
def replicated(mariadb_base_dir: Path) -> Iterator[tuple[MariaDBInstance, MariaDBInstance]]:
    primary = MariaDBInstance(
        "rw_primary",
        free_port(),
        mariadb_base_dir,
        extra_args=["--log-bin=mysql-bin", "--server-id=1", "--binlog-format=ROW"],
    )
    replica = MariaDBInstance(
        "rw_replica", free_port(), mariadb_base_dir, extra_args=["--server-id=2"]
    )
    primary.start()
    replica.start()
    try:
        primary.execute("CREATE DATABASE IF NOT EXISTS rw")
        replica.execute(
            f"CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={primary.port}, "
            "MASTER_USER='root', MASTER_PASSWORD='', MASTER_USE_GTID=slave_pos"
        )
        replica.execute("START SLAVE")
        _until(lambda: replica.execute("SHOW DATABASES LIKE 'rw'") != [])
        yield primary, replica
    finally:
        replica.stop()
        primary.stop()


def _until(predicate, timeout: float = 20.0) -> None:
    """Wait for `predicate`; an error (the replica has not applied the CREATE TABLE yet)
    counts as not yet."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(pymysql.MySQLError):
            if predicate():
                return
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")


@pytest.fixture(scope="module")
def rw_proxy(
    proxy_server: ProxyFactory, replicated: tuple[MariaDBInstance, MariaDBInstance]
) -> ProxyProcess:
    primary, replica = replicated
    config = f"""\
listen: {{host: 127.0.0.1, port: 3307}}
users: [{{name: app, password: app}}]
backends:
  ds0:
    host: 127.0.0.1
    port: {primary.port}
    user: root
    password: ""
    database: rw
    replicas: [{{host: 127.0.0.1, port: {replica.port}}}]
databases:
  rw:
    default_backend: ds0
    tables:
      items: {{backend: ds0}}
"""
    proxy = proxy_server(config, name="rw")
    conn = proxy.connect(database="rw")
    with conn.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS items")
        cursor.execute("CREATE TABLE items (id INT PRIMARY KEY, v VARCHAR(20))")
        cursor.execute("INSERT INTO items VALUES (1, 'both')")
    _until(lambda: replica.execute("SELECT COUNT(*) FROM rw.items") == [(1,)])
    with replica.connect("rw") as direct, direct.cursor() as cursor:
        cursor.execute("SET SESSION sql_log_bin = 0")
        cursor.execute("INSERT INTO items VALUES (%s, %s)", REPLICA_ONLY)
    return proxy


def _ids(conn: pymysql.Connection, sql: str) -> set[int]:
    with conn.cursor() as cursor:
        cursor.execute(sql)
        return {row[0] for row in cursor.fetchall()}


def test_reads_reach_the_replica_and_writes_the_primary(rw_proxy: ProxyProcess, replicated):
    primary, _ = replicated
    conn = rw_proxy.connect(database="rw")
    assert _ids(conn, "SELECT id FROM items") == {1, REPLICA_ONLY[0]}
    with conn.cursor() as cursor:
        cursor.execute("INSERT INTO items VALUES (2, 'written')")
    assert primary.execute("SELECT v FROM rw.items WHERE id = 2") == [("written",)]


def test_locking_reads_hints_and_transactions_use_the_primary(rw_proxy: ProxyProcess):
    conn = rw_proxy.connect(database="rw")
    assert REPLICA_ONLY[0] not in _ids(conn, "SELECT id FROM items FOR UPDATE")
    assert REPLICA_ONLY[0] not in _ids(conn, "SELECT /*shardproxy:primary*/ id FROM items")
    with conn.cursor() as cursor:
        cursor.execute("BEGIN")
    assert REPLICA_ONLY[0] not in _ids(conn, "SELECT id FROM items")
    with conn.cursor() as cursor:
        cursor.execute("COMMIT")


def test_reads_fall_back_to_the_primary_when_the_replica_stops(rw_proxy: ProxyProcess, replicated):
    _, replica = replicated
    replica.stop()
    try:
        conn = rw_proxy.connect(database="rw")
        for _ in range(3):
            assert REPLICA_ONLY[0] not in _ids(conn, "SELECT id FROM items")
    finally:
        replica.start()
        replica.execute("START SLAVE")

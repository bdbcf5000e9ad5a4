"""Branches that only read end in one phase: no XA PREPARE, no decision row for them."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pymysql

if TYPE_CHECKING:
    from conftest import Cluster, ProxyProcess


def _prepares(cluster: Cluster) -> int:
    return sum(
        int(i.execute("SHOW GLOBAL STATUS LIKE 'Com_xa_prepare'")[0][1]) for i in cluster.instances
    )


def _run(conn: pymysql.Connection, *sqls: str) -> None:
    with conn.cursor() as cursor:
        for sql in sqls:
            cursor.execute(sql)
            cursor.fetchall()


def test_read_only_and_single_writer_transactions_skip_two_phase_commit(
    shop_proxy: ProxyProcess, mariadb_cluster: Cluster
) -> None:
    conn = shop_proxy.connect()
    _run(conn, "DROP TABLE IF EXISTS users", "CREATE TABLE users (id BIGINT PRIMARY KEY, v INT)")
    try:
        _run(conn, "INSERT INTO users VALUES (1, 1), (2, 2)")  # ds0 and ds1: two phases
        before = _prepares(mariadb_cluster)
        # Reads on both backends only.
        _run(conn, "BEGIN", "SELECT * FROM users WHERE id = 1", "SELECT * FROM users WHERE id = 2")
        _run(conn, "COMMIT")
        # A write on ds0 (id 1) and a read on ds1 (id 2): one writer, one phase.
        _run(
            conn,
            "BEGIN",
            "UPDATE users SET v = 10 WHERE id = 1",
            "SELECT v FROM users WHERE id = 2",
        )
        _run(conn, "COMMIT")
        assert _prepares(mariadb_cluster) == before
        on_ds0 = mariadb_cluster.instances[0].execute("SELECT v FROM shop_0.users_1 WHERE id = 1")
        assert on_ds0 == [(10,)]
        # Writes on both: two phases. ds0 holds the decision log, so its branch carries the
        # decision and commits in one phase: ds1's is the one PREPARE.
        _run(conn, "BEGIN", "UPDATE users SET v = 3 WHERE id IN (1, 2)", "COMMIT")
        assert _prepares(mariadb_cluster) == before + 1
    finally:
        _run(conn, "DROP TABLE users")
        conn.close()

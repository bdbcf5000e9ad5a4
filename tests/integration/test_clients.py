"""Real clients connect and query as they would against MySQL: the mariadb CLI (batch and on a
terminal, with the options that send extra statements on connect), PyMySQL and
mysql-connector-python (pure); the server version they see; multi-statement batches."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pymysql
import pytest
from pymysql.constants import CLIENT
from shop_helpers import ShopTables, assert_proxy_serves, cli, connector_connect, parse_batch

if TYPE_CHECKING:
    from conftest import Cluster, ProxyProcess


@pytest.fixture
def users(shop_proxy: ProxyProcess, mariadb_cluster: Cluster) -> Iterator[ShopTables]:
    """users 1..8 (two per shard)."""
    shop = ShopTables(shop_proxy, mariadb_cluster)
    shop.create("users")
    conn = shop_proxy.connect()
    with conn.cursor() as cursor:
        cursor.execute(
            "INSERT INTO users (id, name) VALUES "
            + ", ".join(f"({k}, 'user {k}')" for k in range(1, 9))
        )
    conn.close()
    yield shop
    shop.cleanup()


@pytest.fixture(scope="module")
def backend_handshake_version(mariadb_cluster: Cluster) -> str:
    """The version string the backend itself sends in its handshake."""
    conn = mariadb_cluster.connect(0)
    try:
        return conn.get_server_info()
    finally:
        conn.close()


# --- versions and plain connects ---------------------------------------------------------


def test_pymysql_connects_queries_and_sees_the_backend_version(
    users: ShopTables, shop_proxy: ProxyProcess, backend_handshake_version: str
) -> None:
    conn = pymysql.connect(
        host=shop_proxy.host, port=shop_proxy.port, user="app", password="app", database="shop"
    )
    try:
        assert conn.get_server_info() == backend_handshake_version + "-shardproxy"
        with conn.cursor() as cursor:
            cursor.execute("SELECT id, name FROM users WHERE id = 5")
            assert cursor.fetchall() == ((5, "user 5"),)
            assert [d[0] for d in cursor.description] == ["id", "name"]
        conn.ping()
    finally:
        conn.close()


def test_mysql_connector_pure_connects_queries_and_sees_the_backend_version(
    users: ShopTables, shop_proxy: ProxyProcess, backend_handshake_version: str
) -> None:
    conn = connector_connect(shop_proxy, autocommit=False)  # its default: sends autocommit=0
    try:
        assert conn.get_server_info() == backend_handshake_version + "-shardproxy"
        cursor = conn.cursor()
        cursor.execute("SELECT id, name FROM users WHERE id IN (3, 4)")
        assert sorted(cursor.fetchall()) == [(3, "user 3"), (4, "user 4")]
        assert cursor.column_names == ("id", "name")
        cursor.execute("SELECT COUNT(*) FROM users WHERE id = 8")
        assert cursor.fetchall() == [(1,)]
        conn.commit()
        assert conn.is_connected()
        conn.cmd_ping()
    finally:
        conn.close()


def test_mariadb_cli_batch_query(
    users: ShopTables, shop_proxy: ProxyProcess, backend_handshake_version: str
) -> None:
    result = cli(shop_proxy, "SELECT id, name FROM users WHERE id = 7; SELECT 'ok' AS status")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["id\tname", "7\tuser 7", "status", "ok"]

    result = cli(shop_proxy, "SELECT id FROM users", "--skip-column-names")
    assert result.returncode == 0, result.stderr
    assert sorted(int(line) for line in result.stdout.split()) == list(range(1, 9))

    # \s (status) shows the handshake version, without MariaDB's "5.5.5-" compatibility prefix.
    result = cli(shop_proxy, "status")
    assert result.returncode == 0, result.stderr
    version = backend_handshake_version.removeprefix("5.5.5-") + "-shardproxy"
    assert re.search(r"Server version:\s+" + re.escape(version), result.stdout), result.stdout


def test_mariadb_cli_without_database_then_use(users: ShopTables, shop_proxy: ProxyProcess) -> None:
    result = cli(
        shop_proxy, "SHOW DATABASES; USE shop; SELECT name FROM users WHERE id = 2", database=None
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "Database"
    assert "shop" in lines
    assert lines[-2:] == ["name", "user 2"]


def test_mariadb_cli_safe_updates_and_select_limit(
    users: ShopTables, shop_proxy: ProxyProcess
) -> None:
    """--safe-updates sends SET SQL_SAFE_UPDATES=1, SQL_SELECT_LIMIT=2, MAX_JOIN_SIZE=... on
    connect; the session keeps them."""
    result = cli(
        shop_proxy,
        "SELECT @@sql_safe_updates, @@sql_select_limit; "
        "SELECT id FROM users WHERE id IN (1, 5); "
        "UPDATE users SET name = 'x' WHERE name = 'user 1'",
        "--safe-updates",
        "--select-limit=1",
        "--skip-column-names",
    )
    lines = result.stdout.splitlines()
    assert lines[0] == "1\t1"
    assert len(lines) == 2, lines  # one row of users 1 and 5 (same shard), then the UPDATE fails
    assert lines[1] in ("1", "5")
    assert "ERROR 1175 (HY000)" in result.stderr  # safe update mode refuses the key-less UPDATE


def read_pty(fd: int, proc: subprocess.Popen[bytes], until: bytes, timeout: float) -> bytes:
    out = b""
    deadline = time.monotonic() + timeout
    while until not in out and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    return out


def test_mariadb_cli_interactive_with_auto_rehash(
    users: ShopTables, shop_proxy: ProxyProcess, backend_handshake_version: str
) -> None:
    """On a terminal, with --auto-rehash the CLI reads table and column names on connect."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [
            "mariadb",
            "--no-defaults",
            "--protocol=tcp",
            f"-h{shop_proxy.host}",
            f"-P{shop_proxy.port}",
            "-uapp",
            "-papp",
            "--auto-rehash",
            "--default-character-set=utf8mb4",
            "shop",
        ],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env={**os.environ, "TERM": "dumb", "HOME": "/nonexistent"},
    )
    os.close(slave)
    try:
        banner = read_pty(master, proc, b"MariaDB [shop]> ", 10)
        assert b"MariaDB [shop]> " in banner, banner.decode(errors="replace")
        assert b"ERROR" not in banner, banner.decode(errors="replace")
        version = backend_handshake_version.removeprefix("5.5.5-") + "-shardproxy"
        assert f"Server version: {version}".encode() in banner
        os.write(master, b"SELECT id, name FROM users WHERE id = 3;\n")
        out = read_pty(master, proc, b"MariaDB [shop]> ", 10)
        text = out.decode(errors="replace")
        assert re.search(r"\|\s+3 \| user 3 \|", text), text
        assert "1 row in set" in text
        os.write(master, b"quit\n")
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


# --- multi-statements ----------------------------------------------------------------------


def multi_conn(proxy: ProxyProcess) -> pymysql.Connection:
    return proxy.connect(client_flag=CLIENT.MULTI_STATEMENTS)


def test_multi_statements_return_every_result_set(
    users: ShopTables, shop_proxy: ProxyProcess
) -> None:
    conn = multi_conn(shop_proxy)
    with conn.cursor() as cursor:
        cursor.execute("SELECT 1; SELECT 2")
        assert cursor.fetchall() == ((1,),)
        assert cursor.nextset()
        assert cursor.fetchall() == ((2,),)
        assert not cursor.nextset()

        cursor.execute(
            "SELECT name FROM users WHERE id = 1; "
            "UPDATE users SET name = 'two' WHERE id = 2; "
            "SELECT name FROM users WHERE id = 2"
        )
        assert cursor.fetchall() == (("user 1",),)
        assert cursor.nextset()
        assert cursor.rowcount == 1  # the UPDATE's OK packet
        assert cursor.nextset()
        assert cursor.fetchall() == (("two",),)
        assert not cursor.nextset()

        cursor.execute("SELECT 'after'")  # the connection is in sync
        assert cursor.fetchall() == (("after",),)
    conn.close()


def test_an_error_in_the_second_statement_stops_the_batch(
    users: ShopTables, shop_proxy: ProxyProcess, mariadb_cluster: Cluster
) -> None:
    conn = multi_conn(shop_proxy)
    with conn.cursor() as cursor:
        cursor.execute(
            "SELECT 1; SELECT * FROM nosuch; INSERT INTO users (id, name) VALUES (100, 'never')"
        )
        assert cursor.fetchall() == ((1,),)
        with pytest.raises(pymysql.err.ProgrammingError) as excinfo:
            cursor.nextset()
        assert excinfo.value.args[0] == 1146
        cursor.execute("SELECT 'still in sync'")
        assert cursor.fetchall() == (("still in sync",),)
        cursor.execute("SELECT id FROM users WHERE id = 100")
        assert cursor.fetchall() == ()
    conn.close()
    assert not mariadb_cluster.instances[0].execute("SELECT id FROM shop_0.users_0 WHERE id = 100")

    # An error in the first statement: nothing after it runs either.
    conn = multi_conn(shop_proxy)
    with conn.cursor() as cursor:
        with pytest.raises(pymysql.err.ProgrammingError):
            cursor.execute("SELEC 1; INSERT INTO users (id, name) VALUES (101, 'never')")
        cursor.execute("SELECT id FROM users WHERE id = 101")
        assert cursor.fetchall() == ()
    conn.close()
    assert_proxy_serves(shop_proxy)


def test_without_the_multi_statements_flag_a_batch_is_a_syntax_error(
    shop_proxy: ProxyProcess,
) -> None:
    conn = shop_proxy.connect()
    with conn.cursor() as cursor:
        with pytest.raises(pymysql.err.ProgrammingError) as excinfo:
            cursor.execute("SELECT 1; SELECT 2")
        assert excinfo.value.args[0] == 1064
        cursor.execute("SELECT 3")
        assert cursor.fetchall() == ((3,),)
    conn.close()


def test_cli_sends_a_semicolon_batch_as_separate_statements(
    users: ShopTables, shop_proxy: ProxyProcess
) -> None:
    result = cli(shop_proxy, "SELECT 1 AS a; SELECT 2 AS b;")
    assert result.returncode == 0, result.stderr
    assert parse_batch(result.stdout) == (["a"], [["1"], ["b"], ["2"]])

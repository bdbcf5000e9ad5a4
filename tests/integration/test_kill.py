"""KILL QUERY and KILL with the proxy's connection ids."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pymysql
import pytest
from mariadb_instances import MariaDBInstance, free_port
from xa_helpers import wait_until

if TYPE_CHECKING:
    from conftest import ProxyFactory, ProxyProcess


def _one(conn: pymysql.Connection, sql: str) -> object:
    with conn.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchone()[0]


def _session_id(conn: pymysql.Connection) -> int:
    """The proxy's connection id of `conn` (CONNECTION_ID() answers the proxy's own)."""
    return int(_one(conn, "SELECT CONNECTION_ID()"))


def _in_thread(conn: pymysql.Connection, sql: str) -> tuple[threading.Thread, list[object]]:
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(_one(conn, sql))
        except pymysql.err.MySQLError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(0.5)
    return thread, outcome


def test_kill_query_stops_a_long_statement_and_keeps_the_session(shop_proxy: ProxyProcess):
    victim = shop_proxy.connect()
    victim_id = _session_id(victim)
    thread, outcome = _in_thread(victim, "SELECT SLEEP(20)")
    killer = shop_proxy.connect()
    started = time.monotonic()
    with killer.cursor() as cursor:
        cursor.execute(f"KILL QUERY {victim_id}")
    thread.join(10)
    assert time.monotonic() - started < 5
    # MariaDB answers an interrupted SLEEP with 1 (or error 1317); either way it stopped early.
    assert outcome and (outcome[0] == 1 or getattr(outcome[0], "args", [None])[0] == 1317)
    assert _one(victim, "SELECT 'alive'") == "alive"


def test_kill_ends_the_session_and_rolls_back_its_transaction(shop_proxy: ProxyProcess):
    victim = shop_proxy.connect()
    victim_id = _session_id(victim)
    killer = shop_proxy.connect()
    created = not _rows(killer, "SHOW TABLES LIKE 'countries'")
    if created:
        _rows(killer, "CREATE TABLE countries (code CHAR(2) PRIMARY KEY, name VARCHAR(100))")
    try:
        with victim.cursor() as cursor:
            cursor.execute("DELETE FROM countries WHERE code = 'KL'")
            cursor.execute("BEGIN")
            cursor.execute("INSERT INTO countries VALUES ('KL', 'Killed')")
        with killer.cursor() as cursor:
            cursor.execute(f"KILL {victim_id}")
        with pytest.raises(pymysql.err.MySQLError):
            _one(victim, "SELECT 1")
        time.sleep(0.3)
        assert _one(killer, "SELECT COUNT(*) FROM countries WHERE code = 'KL'") == 0
    finally:
        if created:
            _rows(killer, "DROP TABLE countries")


def test_kill_of_an_unknown_or_foreign_session_is_refused(shop_proxy: ProxyProcess):
    conn = shop_proxy.connect()
    with pytest.raises(pymysql.err.MySQLError) as unknown:
        _one(conn, "KILL 999999")
    assert unknown.value.args[0] == 1094
    admin = shop_proxy.connect(user="admin", password="admin")
    admin_id = _session_id(admin)
    with pytest.raises(pymysql.err.MySQLError) as foreign:
        _one(conn, f"KILL {admin_id}")
    assert foreign.value.args[0] == 1095


def test_kill_of_its_own_session_answers_as_mariadb(shop_proxy: ProxyProcess):
    """KILL QUERY of one's own id interrupts the KILL itself (1317) and the session goes on;
    KILL of one's own id answers 1927 before the connection closes, and its transaction is
    rolled back."""
    conn = shop_proxy.connect()
    own = _session_id(conn)
    with pytest.raises(pymysql.err.MySQLError) as query:
        _one(conn, f"KILL QUERY {own}")
    assert query.value.args[0] == 1317
    assert _one(conn, "SELECT 'still here'") == "still here"
    other = shop_proxy.connect()
    created = not _rows(other, "SHOW TABLES LIKE 'countries'")
    if created:
        _rows(other, "CREATE TABLE countries (code CHAR(2) PRIMARY KEY, name VARCHAR(100))")
    try:
        with conn.cursor() as cursor:
            cursor.execute("DELETE FROM countries WHERE code = 'KO'")
            cursor.execute("BEGIN")
            cursor.execute("INSERT INTO countries VALUES ('KO', 'Killed own')")
        with pytest.raises(pymysql.err.MySQLError) as connection:
            _one(conn, f"KILL {own}")
        assert connection.value.args[0] == 1927
        with pytest.raises(pymysql.err.MySQLError):
            _one(conn, "SELECT 1")
        assert _one(other, "SELECT COUNT(*) FROM countries WHERE code = 'KO'") == 0
    finally:
        if created:
            _rows(other, "DROP TABLE countries")


def _rows(conn: pymysql.Connection, sql: str) -> list[tuple]:
    with conn.cursor() as cursor:
        cursor.execute(sql)
        return list(cursor.fetchall())


def test_com_process_kill_ends_a_session(shop_proxy: ProxyProcess):
    """mysql_kill() sends COM_PROCESS_KILL, the command form of KILL CONNECTION."""
    victim = shop_proxy.connect()
    victim_id = _session_id(victim)
    killer = shop_proxy.connect()
    killer.kill(victim_id)
    with pytest.raises(pymysql.err.MySQLError):
        _one(victim, "SELECT 1")
    assert _one(killer, "SELECT 'still here'") == "still here"


FROZEN_CONFIG = """\
users: [{name: app, password: app}]
backends:
  k0: {host: 127.0.0.1, port: PORT, user: root, password: "", database: kill_0, pool: {min: 0, max: 1}}
databases:
  shop:
    default_backend: k0
    tables:
      items: {backend: k0}
"""  # noqa: E501
# What the victim runs: it waits for a row lock, which only a KILL QUERY ends early (the
# server does not notice a closed connection while it waits).
LOCK_WAIT = "SELECT name AS victim FROM items WHERE id = 1 FOR UPDATE"


@pytest.fixture
def frozen_server(mariadb_base_dir: Path) -> Iterator[MariaDBInstance]:
    """A private server this test may stop (SIGSTOP) while the proxy waits on it."""
    server = MariaDBInstance("kill-frozen", free_port(), mariadb_base_dir)
    server.start()
    server.execute("CREATE DATABASE kill_0")
    server.execute("CREATE TABLE kill_0.items (id INT PRIMARY KEY, name VARCHAR(10))")
    server.execute("INSERT INTO kill_0.items VALUES (1, 'one'), (2, 'two')")
    yield server
    pid = server.pid()
    if pid is not None:
        os.kill(pid, signal.SIGCONT)
    server.stop()


def test_kill_ends_the_session_at_once_while_its_backend_is_unresponsive(
    frozen_server: MariaDBInstance, proxy_server: ProxyFactory
) -> None:
    """MySQL closes a killed connection at once. The proxy's KILL QUERY to the backend may
    wait (here the server is stopped): the KILL still returns at once and the victim's
    client is cut off; once the server runs again the KILL QUERY lands, and the victim's
    backend connection, which held the pool's only slot mid-statement, was closed, not
    pooled: the next statements get a fresh connection and their own answers."""
    config = FROZEN_CONFIG.replace("PORT", str(frozen_server.port))
    proxy = proxy_server(config, name="kill-frozen")
    try:
        _kill_while_frozen(frozen_server, proxy)
    finally:
        proxy.terminate()


def _kill_while_frozen(server: MariaDBInstance, proxy: ProxyProcess) -> None:
    holder = server.connect("kill_0", autocommit=False)
    with holder.cursor() as cursor:
        cursor.execute("SELECT * FROM items WHERE id = 1 FOR UPDATE")
    victim, killer, other = (proxy.connect() for _ in range(3))
    victim_id = _session_id(victim)
    waiting = (
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST "
        "WHERE INFO LIKE '%AS victim%' AND ID <> CONNECTION_ID()"
    )
    thread, outcome = _in_thread(victim, LOCK_WAIT)
    wait_until(lambda: _one(holder, waiting), 5, "the victim's lock wait")
    pid = server.pid()
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        killer.kill(victim_id)  # COM_PROCESS_KILL; a KILL statement takes the same path
        took = time.monotonic() - started
        thread.join(2)
        cut_off = time.monotonic() - started
    finally:
        os.kill(pid, signal.SIGCONT)
    assert took < 1, took
    assert not thread.is_alive() and cut_off < 2, cut_off
    assert isinstance(outcome[0], pymysql.err.OperationalError), outcome
    assert outcome[0].args[0] in (2013, 2006), outcome
    # The lock wait ends well before innodb_lock_wait_timeout (50 s): the KILL QUERY landed.
    wait_until(lambda: not _one(holder, waiting), 5, "the victim's statement to stop")
    # With the victim's connection pooled, these would read its interrupted answer.
    assert _one(other, "SELECT name FROM items WHERE id = 2") == "two"
    assert _one(killer, "SELECT name FROM items WHERE id = 1") == "one"
    holder.rollback()
    assert _one(other, "SELECT name FROM items WHERE id = 1 FOR UPDATE") == "one"
    for conn in (holder, killer, other):
        conn.close()

"""KILL QUERY and KILL with the proxy's connection ids."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

import pymysql
import pytest

if TYPE_CHECKING:
    from conftest import ProxyProcess


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

"""Admin SQL, hot reload (SIGHUP and RELOAD SHARDPROXY CONFIG) and graceful shutdown (SIGTERM)."""

from __future__ import annotations

import signal
import threading
import time
from typing import TYPE_CHECKING

import pymysql
import pytest
import yaml

if TYPE_CHECKING:
    from conftest import Cluster, ProxyFactory, ProxyProcess

CONFIG = """\
listen: {host: 127.0.0.1, port: 3307, shutdown_grace: 3}
users:
  - {name: app, password: app}
  - {name: admin, password: admin, admin: true}
backends:
  ds0: {host: 127.0.0.1, port: 13306, user: root, password: "", database: life_0}
  ds1: {host: 127.0.0.1, port: 13307, user: root, password: "", database: life_1}
transactions: {abort_after: 4, recovery_interval: 1}
databases:
  life:
    default_backend: ds0
    tables:
      users:  {shard_key: id, algorithm: mod, backends: [ds0, ds1], tables_per_backend: 2}
      orders: {shard_key: user_id, algorithm: mod, backends: [ds0, ds1], tables_per_backend: 2}
      countries: {broadcast: true}
    binding: [[users, orders]]
"""


def _rows(conn: pymysql.Connection, sql: str) -> list[tuple]:
    with conn.cursor() as cursor:
        cursor.execute(sql)
        return list(cursor.fetchall())


@pytest.fixture
def life(proxy_server: ProxyFactory, mariadb_cluster: Cluster) -> ProxyProcess:
    from conftest import retarget_config

    for i in (0, 1):
        mariadb_cluster.instances[i].execute(f"DROP DATABASE IF EXISTS life_{i}")
    proxy = proxy_server(retarget_config(CONFIG, mariadb_cluster), name="life")
    conn = proxy.connect(database="life")
    _rows(conn, "CREATE TABLE users (id BIGINT PRIMARY KEY, v VARCHAR(20))")
    _rows(conn, "CREATE TABLE orders (id BIGINT PRIMARY KEY, user_id BIGINT, v VARCHAR(20))")
    _rows(conn, "CREATE TABLE countries (code CHAR(2) PRIMARY KEY, name VARCHAR(20))")
    conn.close()
    yield proxy
    proxy.kill()


def _on_backend(cluster: Cluster, index: int, sql: str) -> list[tuple]:
    return [tuple(r) for r in cluster.instances[index].execute(sql)]


def test_explain_shards_shows_routed_scatter_broadcast_and_binding_plans(life: ProxyProcess):
    admin = life.connect(user="admin", password="admin", database="life")
    routed = _rows(admin, "EXPLAIN SHARDS SELECT * FROM users WHERE id = 7")
    assert routed == [("single read", "ds1", "SELECT * FROM users_3 WHERE id = 7", "none")]
    scatter = _rows(admin, "EXPLAIN SHARDS SELECT v FROM users")
    assert [(r[0], r[1], r[2]) for r in scatter] == [
        ("scatter read", "ds0", "SELECT v FROM users_0"),
        ("scatter read", "ds0", "SELECT v FROM users_1"),
        ("scatter read", "ds1", "SELECT v FROM users_2"),
        ("scatter read", "ds1", "SELECT v FROM users_3"),
    ]
    broadcast = _rows(admin, "EXPLAIN SHARDS INSERT INTO countries VALUES ('FR', 'France')")
    assert [(r[0], r[1]) for r in broadcast] == [
        ("broadcast write", "ds0"),
        ("broadcast write", "ds1"),
    ]
    join = _rows(
        admin,
        "EXPLAIN SHARDS SELECT u.v, o.v FROM users u JOIN orders o ON o.user_id = u.id "
        "WHERE u.id = 6",
    )
    assert join == [
        (
            "single read",
            "ds1",
            "SELECT u.v, o.v FROM users_2 u JOIN orders_2 o ON o.user_id = u.id WHERE u.id = 6",
            "none",
        )
    ]
    # Nothing ran: the broadcast INSERT left no row.
    assert _rows(admin, "SELECT COUNT(*) FROM countries") == [(0,)]


def test_admin_statements_need_an_admin_user(life: ProxyProcess):
    app = life.connect(database="life")
    for sql in ("EXPLAIN SHARDS SELECT 1", "SHOW SHARDPROXY RULES", "RELOAD SHARDPROXY CONFIG"):
        with pytest.raises(pymysql.err.OperationalError) as error:
            _rows(app, sql)
        assert error.value.args[0] == 1227
    admin = life.connect(user="admin", password="admin", database="life")
    rules = _rows(admin, "SHOW SHARDPROXY RULES")
    assert rules[0][:4] == ("life", "users", "sharded", "id")
    backends = _rows(admin, "SHOW SHARDPROXY BACKENDS")
    assert [b[0] for b in backends] == ["ds0", "ds1"]
    sessions = _rows(admin, "SHOW SHARDPROXY SESSIONS")
    assert {s[1] for s in sessions} >= {"app", "admin"}


def _rewrite_config(proxy: ProxyProcess, change) -> None:
    config = yaml.safe_load(proxy.config_path.read_text())
    change(config)
    proxy.config_path.write_text(yaml.safe_dump(config, sort_keys=False))


def _wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("condition not reached")


def test_sighup_applies_a_new_table_rule_to_a_connected_client(life: ProxyProcess):
    conn = life.connect(database="life")
    with pytest.raises(pymysql.err.ProgrammingError):
        _rows(conn, "SELECT * FROM notes")
    _rewrite_config(
        life, lambda c: c["databases"]["life"]["tables"].update(notes={"backend": "ds1"})
    )
    life.send_signal(signal.SIGHUP)

    def notes_known() -> bool:
        try:
            _rows(conn, "CREATE TABLE IF NOT EXISTS notes (id INT PRIMARY KEY)")
        except pymysql.err.MySQLError:
            return False
        return True

    _wait_for(notes_known)
    _rows(conn, "INSERT INTO notes VALUES (1)")
    assert _rows(conn, "SELECT id FROM notes") == [(1,)]


def test_a_bad_file_is_rejected_and_the_proxy_keeps_serving(life: ProxyProcess, mariadb_cluster):
    conn = life.connect(database="life")
    life.config_path.write_text(life.config_path.read_text() + "\nbogus_key: [\n")
    life.send_signal(signal.SIGHUP)
    _wait_for(lambda: "config reload refused" in life.log_tail(80))
    _rows(conn, "INSERT INTO users (id, v) VALUES (7, 'still')")
    assert _rows(conn, "SELECT v FROM users WHERE id = 7") == [("still",)]
    admin = life.connect(user="admin", password="admin", database="life")
    with pytest.raises(pymysql.err.MySQLError) as error:
        _rows(admin, "RELOAD SHARDPROXY CONFIG")
    assert "Config reload refused" in str(error.value)


def test_a_rule_change_that_would_move_rows_is_refused(life: ProxyProcess):
    conn = life.connect(database="life")
    _rows(conn, "INSERT INTO countries VALUES ('FR', 'France')")
    _rewrite_config(
        life, lambda c: c["databases"]["life"]["tables"].update(countries={"backend": "ds1"})
    )
    admin = life.connect(user="admin", password="admin", database="life")
    with pytest.raises(pymysql.err.MySQLError) as error:
        _rows(admin, "RELOAD SHARDPROXY CONFIG")
    assert "would move existing rows" in str(error.value)
    assert _rows(conn, "SELECT name FROM countries") == [("France",)]


def test_sigterm_lets_a_running_transaction_finish(life: ProxyProcess, mariadb_cluster):
    conn = life.connect(database="life")
    _rows(conn, "BEGIN")
    _rows(conn, "INSERT INTO users (id, v) VALUES (1, 'a')")  # ds0
    _rows(conn, "INSERT INTO users (id, v) VALUES (2, 'b')")  # ds1
    life.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert life.is_running(), "the proxy must wait for the open transaction"
    with pytest.raises(pymysql.err.OperationalError) as refused:
        life.connect(database="life", connect_timeout=1)
    assert refused.value.args[0] == 2003  # no longer accepting
    _rows(conn, "COMMIT")
    assert life.wait(10) == 0
    assert _on_backend(mariadb_cluster, 0, "SELECT id FROM life_0.users_1") == [(1,)]
    assert _on_backend(mariadb_cluster, 1, "SELECT id FROM life_1.users_2") == [(2,)]


def test_sigterm_rolls_back_what_outlives_the_grace_period(life: ProxyProcess, mariadb_cluster):
    conn = life.connect(database="life")
    _rows(conn, "BEGIN")
    _rows(conn, "INSERT INTO users (id, v) VALUES (1, 'a')")
    _rows(conn, "INSERT INTO users (id, v) VALUES (2, 'b')")
    idle = life.connect(database="life")
    life.send_signal(signal.SIGTERM)
    assert life.wait(15) == 0  # grace is 3 s
    for sql, index in (("SELECT id FROM life_0.users_1", 0), ("SELECT id FROM life_1.users_2", 1)):
        assert _on_backend(mariadb_cluster, index, sql) == []
    for index in (0, 1):
        assert _on_backend(mariadb_cluster, index, "XA RECOVER") == []
    for client in (conn, idle):
        with pytest.raises(pymysql.err.MySQLError):
            _rows(client, "SELECT 1")


def test_sigterm_waits_for_a_running_statement(life: ProxyProcess):
    conn = life.connect(database="life")
    result: list[object] = []

    def slow() -> None:
        result.append(_rows(conn, "SELECT SLEEP(1.5) AS s, 'done'"))

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.3)
    life.send_signal(signal.SIGTERM)
    thread.join(10)
    assert result == [[(0, "done")]]
    assert life.wait(10) == 0

"""listen.workers: 2 — two worker processes on one port behave as one proxy.

Connection ids say which worker a client landed on (worker k hands out k+1, k+1+2, ...), so
each test picks connections on a given worker and checks that KILL, the session listings,
reloads and /metrics reach across workers, and that the supervisor restarts a dead worker and
stops them all on SIGTERM.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pymysql
import pytest
import yaml
from mariadb_instances import free_port
from test_observability import delta, http_get, scrape, value, wait_for_ready

if TYPE_CHECKING:
    from conftest import Cluster, ProxyFactory, ProxyProcess

WORKERS = 2
CONFIG = """\
listen: {host: 127.0.0.1, port: 3307, shutdown_grace: 3, workers: 2}
users:
  - {name: app, password: app}
  - {name: other, password: other}
  - {name: admin, password: admin, admin: true}
backends:
  ds0: {host: 127.0.0.1, port: 13306, user: root, password: "", database: wk_0}
  ds1: {host: 127.0.0.1, port: 13307, user: root, password: "", database: wk_1}
transactions: {abort_after: 4, recovery_interval: 1}
databases:
  wk:
    default_backend: ds0
    tables:
      users: {shard_key: id, algorithm: mod, backends: [ds0, ds1]}
      notes: {shard_key: id, algorithm: mod, backends: [ds0, ds1], generated_key: {column: id}}
"""


def rows(conn: pymysql.Connection, sql: str) -> list[tuple[Any, ...]]:
    with conn.cursor() as cursor:
        cursor.execute(sql)
        return list(cursor.fetchall())


def connection_id(conn: pymysql.Connection) -> int:
    return int(rows(conn, "SELECT CONNECTION_ID()")[0][0])


def owner(conn: pymysql.Connection) -> int:
    return (connection_id(conn) - 1) % WORKERS


class Workers:
    """The proxy under test, and connections to it sorted by the worker they landed on."""

    def __init__(self, proxy: ProxyProcess, http_port: int):
        self.proxy = proxy
        self.http_port = http_port
        self.opened: list[pymysql.Connection] = []

    def on(self, worker: int, user: str = "app", timeout: float = 30.0) -> pymysql.Connection:
        """A new connection served by `worker` (others opened on the way are closed)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                conn = self.proxy.connect(user=user, password=user, database="wk")
            except pymysql.err.OperationalError:
                time.sleep(0.1)  # the port is between workers
                continue
            if owner(conn) == worker:
                self.opened.append(conn)
                return conn
            conn.close()
        raise AssertionError(f"no connection landed on worker {worker} within {timeout} s")

    def close(self) -> None:
        for conn in self.opened:
            with contextlib.suppress(Exception):
                conn.close()
        self.opened.clear()


def _workers_config(cluster: Cluster, http_port: int) -> str:
    from conftest import retarget_config

    for i in (0, 1):
        cluster.instances[i].execute(f"DROP DATABASE IF EXISTS wk_{i}")
    config = yaml.safe_load(retarget_config(CONFIG, cluster))
    config["http"] = {"host": "127.0.0.1", "port": http_port}
    return yaml.safe_dump(config, sort_keys=False)


@pytest.fixture(scope="module")
def workers_proxy(proxy_server: ProxyFactory, mariadb_cluster: Cluster) -> ProxyProcess:
    port = free_port()
    proxy = proxy_server(_workers_config(mariadb_cluster, port), name="workers")
    proxy.http_port = port  # type: ignore[attr-defined]
    wait_for_ready(port, 200)
    conn = proxy.connect(database="wk")
    rows(conn, "CREATE TABLE users (id BIGINT PRIMARY KEY, name VARCHAR(20))")
    rows(conn, "INSERT INTO users VALUES (1, 'one'), (2, 'two'), (3, 'three'), (4, 'four')")
    conn.close()
    return proxy


@pytest.fixture
def workers(workers_proxy: ProxyProcess) -> Iterator[Workers]:
    if not workers_proxy.is_running():
        workers_proxy.start()
    w = Workers(workers_proxy, workers_proxy.http_port)  # type: ignore[attr-defined]
    yield w
    w.close()


def worker_pids(proxy: ProxyProcess) -> list[int]:
    """The supervisor's child processes (the workers)."""
    assert proxy._proc is not None
    pid = proxy._proc.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return sorted(int(child) for child in children)


def wait_for(predicate: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("condition not reached")


# --- spread and plain queries ---------------------------------------------------------------


def test_connections_spread_over_both_workers_and_each_answers(workers: Workers) -> None:
    conns = [workers.proxy.connect(database="wk") for _ in range(24)]
    try:
        ids = [connection_id(c) for c in conns]
        assert len(set(ids)) == len(ids)
        assert {(i - 1) % WORKERS for i in ids} == {0, 1}
        for conn in conns:
            assert rows(conn, "SELECT name FROM users WHERE id = 3") == [("three",)]
            assert rows(conn, "SELECT COUNT(*) FROM users") == [(4,)]
    finally:
        for conn in conns:
            conn.close()


def test_generated_keys_of_both_workers_never_collide(workers: Workers) -> None:
    """Each worker has its own worker id in snowflake keys (table without the shard key)."""
    admin = workers.on(0, user="admin")
    rows(admin, "CREATE TABLE notes (id BIGINT PRIMARY KEY, body VARCHAR(20))")
    try:
        worker_ids = set()
        for k in (0, 1):
            conn = workers.on(k)
            rows(conn, "INSERT INTO notes (body) VALUES ('a'), ('b')")
            worker_ids.add(conn.insert_id() >> 12 & 1023)
        assert len(worker_ids) == 2
        assert rows(admin, "SELECT COUNT(DISTINCT id) FROM notes") == [(4,)]
    finally:
        rows(admin, "DROP TABLE notes")


# --- KILL across workers --------------------------------------------------------------------


def _sleep_in_thread(conn: pymysql.Connection) -> tuple[threading.Thread, list[object]]:
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(rows(conn, "SELECT SLEEP(20)")[0][0])
        except pymysql.err.MySQLError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(0.5)
    return thread, outcome


@pytest.mark.parametrize("victim_worker", [0, 1])
def test_kill_query_stops_a_sleep_on_the_other_worker(workers: Workers, victim_worker: int):
    victim = workers.on(victim_worker)
    killer = workers.on(1 - victim_worker)
    thread, outcome = _sleep_in_thread(victim)
    started = time.monotonic()
    rows(killer, f"KILL QUERY {victim.thread_id()}")  # the handshake's id
    thread.join(10)
    assert time.monotonic() - started < 5
    assert outcome and (outcome[0] == 1 or getattr(outcome[0], "args", [None])[0] == 1317)
    assert rows(victim, "SELECT 'alive'") == [("alive",)]


def test_kill_closes_a_session_of_the_other_worker(workers: Workers) -> None:
    victim = workers.on(0)
    killer = workers.on(1)
    rows(killer, f"KILL {connection_id(victim)}")
    with pytest.raises(pymysql.err.MySQLError):
        rows(victim, "SELECT 1")
    admin = workers.on(1, user="admin")
    listed = {int(row[0]) for row in rows(admin, "SHOW SHARDPROXY SESSIONS")}
    assert victim.thread_id() not in listed


def test_com_process_kill_reaches_the_other_worker(workers: Workers) -> None:
    victim = workers.on(1)
    killer = workers.on(0)
    killer.kill(victim.thread_id())
    with pytest.raises(pymysql.err.MySQLError):
        rows(victim, "SELECT 1")
    assert rows(killer, "SELECT 'still here'") == [("still here",)]


def test_kill_across_workers_keeps_mysql_errors(workers: Workers) -> None:
    app = workers.on(0)
    foreign = workers.on(1, user="other")
    with pytest.raises(pymysql.err.MySQLError) as not_owner:
        rows(app, f"KILL {foreign.thread_id()}")
    assert not_owner.value.args[0] == 1095
    unknown = 1_000_000
    assert (unknown - 1) % WORKERS == 1  # worker 1's, if it had that many
    with pytest.raises(pymysql.err.MySQLError) as missing:
        rows(app, f"KILL {unknown}")
    assert missing.value.args[0] == 1094
    assert rows(foreign, "SELECT 'untouched'") == [("untouched",)]


# --- listings and reloads -------------------------------------------------------------------


def test_sessions_and_processlist_list_both_workers(workers: Workers) -> None:
    mine = {workers.on(k).thread_id() for k in (0, 1, 0, 1)}
    other = workers.on(1, user="other")
    admin = workers.on(0, user="admin")
    sessions = rows(admin, "SHOW SHARDPROXY SESSIONS")
    listed = [int(row[0]) for row in sessions]
    assert len(listed) == len(set(listed))
    assert mine | {other.thread_id(), admin.thread_id()} <= set(listed)
    assert listed == sorted(listed)
    processlist = {int(row[0]) for row in rows(admin, "SHOW PROCESSLIST")}
    assert mine | {other.thread_id()} <= processlist
    # Without admin rights, your own account's sessions only, on every worker.
    app = workers.on(1)
    own = {int(row[0]) for row in rows(app, "SHOW PROCESSLIST")}
    assert mine | {app.thread_id()} <= own
    assert other.thread_id() not in own
    backends = rows(admin, "SHOW SHARDPROXY BACKENDS")
    assert [row[0] for row in backends] == ["ds0", "ds1"]
    assert all(int(row[6]) == 2 * 32 for row in backends)  # pool_max: both workers' pools


def _add_table(proxy: ProxyProcess, name: str) -> None:
    config = yaml.safe_load(proxy.config_path.read_text())
    config["databases"]["wk"]["tables"][name] = {"broadcast": True}
    proxy.config_path.write_text(yaml.safe_dump(config, sort_keys=False))


def _drop_table(proxy: ProxyProcess, name: str) -> None:
    config = yaml.safe_load(proxy.config_path.read_text())
    del config["databases"]["wk"]["tables"][name]
    proxy.config_path.write_text(yaml.safe_dump(config, sort_keys=False))


def _is_broadcast(conn: pymysql.Connection, table: str) -> bool:
    rules = rows(conn, "SHOW SHARDPROXY RULES")
    return any(row[1] == table and row[2] == "broadcast" for row in rules)


@pytest.mark.parametrize("how", ["sighup", "statement"])
def test_a_reload_reaches_every_worker(workers: Workers, how: str) -> None:
    table = f"flags_{how}"
    admins = [workers.on(k, user="admin") for k in (0, 1)]
    assert not any(_is_broadcast(a, table) for a in admins)
    _add_table(workers.proxy, table)
    try:
        if how == "sighup":
            workers.proxy.send_signal(signal.SIGHUP)
        else:
            rows(admins[1], "RELOAD SHARDPROXY CONFIG")
        wait_for(lambda: all(_is_broadcast(a, table) for a in admins), timeout=10)
    finally:
        _drop_table(workers.proxy, table)
        rows(admins[0], "RELOAD SHARDPROXY CONFIG")
    assert not any(_is_broadcast(a, table) for a in admins)


# --- HTTP -----------------------------------------------------------------------------------


def test_ready_and_metrics_cover_both_workers(workers: Workers) -> None:
    status, _, body = http_get(workers.http_port, "/ready")
    assert status == 200, body
    assert http_get(workers.http_port, "/health")[0] == 200
    conns = [workers.on(k) for k in (0, 1)]
    before = scrape(workers.http_port)
    for conn, count in zip(conns, (3, 5), strict=True):
        for _ in range(count):
            rows(conn, "SELECT name FROM users WHERE id = 2")
    after = scrape(workers.http_port)
    assert delta(before, after, "shardproxy_queries_total", kind="select", route="single") == 8
    assert value(after, "shardproxy_workers") == 2
    assert value(after, "shardproxy_backend_up", backend="ds0") == 1
    for k in ("0", "1", "supervisor"):
        assert value(after, "process_cpu_seconds_total", worker=k) > 0


# --- crashes and shutdown -------------------------------------------------------------------


def test_a_killed_worker_is_restarted(workers: Workers) -> None:
    before = scrape(workers.http_port)
    victim = workers.on(1)
    rows(victim, "SELECT name FROM users WHERE id = 1")
    counted = scrape(workers.http_port)  # the dead worker's counts so far are carried on
    pids = worker_pids(workers.proxy)
    assert len(pids) == WORKERS
    victim_pid = next(pid for pid in pids if _serves(workers, pid, victim.thread_id()))
    os.kill(victim_pid, signal.SIGKILL)
    with pytest.raises(pymysql.err.MySQLError):
        rows(victim, "SELECT 1")
    wait_for(
        lambda: (
            len(worker_pids(workers.proxy)) == WORKERS
            and victim_pid not in worker_pids(workers.proxy)
        )
    )
    wait_for_ready(workers.http_port, 200)
    assert rows(workers.on(1), "SELECT name FROM users WHERE id = 4") == [("four",)]
    assert rows(workers.on(0), "SELECT name FROM users WHERE id = 4") == [("four",)]
    after = scrape(workers.http_port)
    select = {"kind": "select", "route": "single"}
    assert value(after, "shardproxy_queries_total", **select) >= value(
        counted, "shardproxy_queries_total", **select
    )
    assert delta(before, after, "shardproxy_worker_restarts_total", worker="1") == 1
    assert "died (signal 9); restarting it" in workers.proxy.log_tail(200)


def _serves(workers: Workers, pid: int, connection: int) -> bool:
    """Whether worker process `pid` holds the client socket of `connection`: its peer port
    is the client's local port."""
    for conn in workers.opened:
        if conn.thread_id() == connection:
            port = conn._sock.getsockname()[1]  # type: ignore[union-attr]
            break
    else:
        raise AssertionError("not one of ours")
    sockets = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
    inodes = {link[8:-1] for link in sockets if link.startswith("socket:[")}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote_port = int(fields[2].split(":")[1], 16)
        if remote_port == port and fields[9] in inodes:
            return True
    return False


def test_sigterm_lets_both_workers_finish_their_transactions(
    proxy_server: ProxyFactory, mariadb_cluster: Cluster
) -> None:
    http_port = free_port()
    proxy = proxy_server(_workers_config(mariadb_cluster, http_port), name="workers-stop")
    wait_for_ready(http_port, 200)
    setup = proxy.connect(database="wk")
    rows(setup, "CREATE TABLE users (id BIGINT PRIMARY KEY, name VARCHAR(20))")
    setup.close()
    w = Workers(proxy, http_port)
    try:
        in_txn = [w.on(k) for k in (0, 1)]
        idle = [w.on(k) for k in (0, 1)]
        for k, conn in enumerate(in_txn):
            rows(conn, "BEGIN")
            rows(conn, f"INSERT INTO users VALUES ({10 + k}, 'w{k}')")
        pids = worker_pids(proxy)
        proxy.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert proxy.is_running(), "the supervisor waits for its workers' transactions"
        for conn in idle:
            with pytest.raises(pymysql.err.MySQLError):
                rows(conn, "SELECT 1")  # idle sessions are closed at once
        for conn in in_txn:
            rows(conn, "COMMIT")
        assert proxy.wait(15) == 0
        assert not any(Path(f"/proc/{pid}").exists() for pid in pids)
        for index, expected in ((0, [(10,)]), (1, [(11,)])):
            found = mariadb_cluster.instances[index].execute(f"SELECT id FROM wk_{index}.users")
            assert [tuple(r) for r in found] == expected
    finally:
        w.close()

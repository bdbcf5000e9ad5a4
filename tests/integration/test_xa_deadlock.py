"""Deadlocks that span backends (proxy/deadlock.py): a cycle of lock waits through both
servers ends within seconds with 1213 for one victim, whose whole transaction is rolled back,
instead of innodb_lock_wait_timeout for everyone; plain lock waits are left alone; a backend
that is down does not disturb anyone.

Accounts K live on shard K % 4: 1 and 5 on x0 (server 0), 2 and 6 on x1 (server 1). Clients set
innodb_lock_wait_timeout = 30 s, so an error well before that is the detector's doing."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

import mysql.connector
import pymysql
import xa_helpers
import yaml
from xa_helpers import (
    ACCOUNTS,
    balances,
    create_tables,
    new_db_name,
    row_locked,
    xa_config,
)

if TYPE_CHECKING:
    from conftest import Cluster, ProxyProcess
    from xa_helpers import Proxies

pair = xa_helpers.pair
proxies = xa_helpers.proxies

CHECK_AFTER = 0.5  # transactions.deadlock_check_after in these tests
LOCK_WAIT_TIMEOUT = 30
DEADLOCK = (1213, "40001", "Deadlock found when trying to get lock; try restarting transaction")


def bank(proxies: Proxies, pair: Cluster, keys: tuple[int, ...]) -> tuple[ProxyProcess, str]:
    """A proxy checking for deadlocks after CHECK_AFTER, and accounts `keys` at balance 0."""
    db = new_db_name("xadeadlock")
    config = yaml.safe_load(xa_config(pair, db))
    config["transactions"]["deadlock_check_after"] = CHECK_AFTER
    proxy = proxies.start(yaml.safe_dump(config), "deadlock")
    create_tables(proxy, ACCOUNTS)
    conn = proxy.connect(database="bank")
    with conn.cursor() as cursor:
        for key in keys:
            cursor.execute(f"INSERT INTO accounts (id, balance) VALUES ({key}, 0)")
    conn.close()
    return proxy, db


def client(proxy: ProxyProcess) -> pymysql.Connection:
    conn = proxy.connect(database="bank")
    run(conn, f"SET innodb_lock_wait_timeout = {LOCK_WAIT_TIMEOUT}")
    return conn


def run(conn: Any, *statements: str) -> None:
    cursor = conn.cursor()
    for sql in statements:
        cursor.execute(sql)
        if cursor.description:
            cursor.fetchall()
    cursor.close()


class Pending:
    """A statement running in a thread of its own (it may wait for a lock)."""

    def __init__(self, name: str, conn: Any, sql: str):
        self.name = name
        self.conn = conn
        self.error: BaseException | None = None
        self.ended: float | None = None
        self.started = time.monotonic()
        self._thread = threading.Thread(target=self._run, args=(sql,))
        self._thread.start()

    def _run(self, sql: str) -> None:
        try:
            run(self.conn, sql)
        except (pymysql.MySQLError, mysql.connector.Error) as exc:
            self.error = exc
        finally:
            self.ended = time.monotonic()

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return self.ended is not None


def waiting(pair: Cluster, count: int) -> bool:
    """Whether `count` transactions wait for locks, over both servers."""
    found = 0
    for instance in pair.instances:
        ((waits,),) = instance.execute("SELECT COUNT(*) FROM information_schema.INNODB_LOCK_WAITS")
        found += waits
    return found >= count


def proxy_log(proxy: ProxyProcess) -> str:
    return proxy.log_path.read_text(errors="replace")


def test_a_cycle_through_two_backends_ends_in_1213_for_one_victim(
    pair: Cluster, proxies: Proxies
) -> None:
    """a locks 1 (x0) and waits for 2 (x1); b locks 2 and waits for 1. One gets MySQL's
    deadlock error with its whole transaction rolled back on both servers; the other goes on
    and commits; the victim's session restarts its transaction and commits too."""
    proxy, db = bank(proxies, pair, (1, 2))
    conns = {}
    for name in ("a", "b"):
        conns[name] = mysql.connector.connect(
            host=proxy.host, port=proxy.port, user="app", password="app", database="bank",
            use_pure=True, autocommit=True, connection_timeout=5,
        )  # fmt: skip
        run(conns[name], f"SET innodb_lock_wait_timeout = {LOCK_WAIT_TIMEOUT}")
    # a moves 10 from 1 to 2, b moves 20 from 2 to 1, each taking its first row first.
    run(conns["a"], "BEGIN", "UPDATE accounts SET balance = balance - 10 WHERE id = 1")
    run(conns["b"], "BEGIN", "UPDATE accounts SET balance = balance - 20 WHERE id = 2")
    first = Pending("a", conns["a"], "UPDATE accounts SET balance = balance + 10 WHERE id = 2")
    xa_helpers.wait_until(lambda: waiting(pair, 1), 10, "a to wait for b's lock on x1")
    second = Pending("b", conns["b"], "UPDATE accounts SET balance = balance + 20 WHERE id = 1")
    assert first.join(20) and second.join(20), "the deadlock was not broken"
    failed = [p for p in (first, second) if p.error is not None]
    assert len(failed) == 1, [p.error for p in (first, second)]
    (victim,) = failed
    survivor = second if victim is first else first
    error = victim.error
    assert isinstance(error, mysql.connector.Error)
    assert (error.errno, error.sqlstate, error.msg) == DEADLOCK
    assert victim.ended is not None and victim.ended - second.started < 20  # timeout: 30 s
    assert "deadlock across backends" in proxy_log(proxy)

    run(survivor.conn, "COMMIT")
    expected = {1: -10, 2: 10} if survivor.name == "a" else {1: 20, 2: -20}
    assert balances(pair, db) == expected  # what one MariaDB has after the survivor's commit
    # Nothing of the victim's is left behind on either server: no lock, no branch.
    assert not row_locked(pair.instances[0], f"{db}_0", "accounts_1", 1)
    assert not row_locked(pair.instances[1], f"{db}_1", "accounts_2", 2)
    assert not xa_helpers.prepared_everywhere(pair, db)

    # The victim is out of its transaction and may run it again.
    cursor = victim.conn.cursor()
    cursor.execute("SELECT balance FROM accounts WHERE id = 1")
    assert cursor.fetchall() == [(expected[1],)]
    cursor.close()
    if victim.name == "a":
        again = ("UPDATE accounts SET balance = balance - 10 WHERE id = 1",
                 "UPDATE accounts SET balance = balance + 10 WHERE id = 2")  # fmt: skip
    else:
        again = ("UPDATE accounts SET balance = balance - 20 WHERE id = 2",
                 "UPDATE accounts SET balance = balance + 20 WHERE id = 1")  # fmt: skip
    run(victim.conn, "BEGIN", *again, "COMMIT")
    assert balances(pair, db) == {1: 10, 2: -10}
    for conn in conns.values():
        conn.close()


def test_a_cycle_of_three_sessions_loses_one(pair: Cluster, proxies: Proxies) -> None:
    """a holds 1 and waits for 2 (x1, b); b holds 2 and waits for 5 (x0, c); c holds 5 and
    waits for 1 (x0, a). Neither server alone sees a cycle. One victim; the other two finish
    and commit in the order their locks free up."""
    proxy, db = bank(proxies, pair, (1, 2, 5))
    amounts = {"a": 1, "b": 10, "c": 100}
    rows = {"a": (1, 2), "b": (2, 5), "c": (5, 1)}  # (held, then wanted)
    conns = {name: client(proxy) for name in amounts}
    for name, (held, _) in rows.items():
        run(
            conns[name], "BEGIN", f"UPDATE accounts SET balance = {amounts[name]} WHERE id = {held}"
        )
    pending = {}
    for count, name in enumerate(amounts, start=1):
        wanted = rows[name][1]
        sql = f"UPDATE accounts SET balance = balance + {amounts[name]} WHERE id = {wanted}"
        pending[name] = Pending(name, conns[name], sql)
        if count < 3:
            xa_helpers.wait_until(lambda n=count: waiting(pair, n), 10, f"{name} to wait")
    victim = xa_helpers.wait_until(
        lambda: next((p for p in pending.values() if p.error is not None), None),
        20,
        "a victim",
    )
    error = victim.error
    assert isinstance(error, pymysql.MySQLError) and error.args == (DEADLOCK[0], DEADLOCK[2])
    assert victim.ended is not None and victim.ended - pending["c"].started < 20
    survivors = [p for p in pending.values() if p is not victim]
    committed = []
    while survivors:
        done = xa_helpers.wait_until(
            lambda: next((p for p in survivors if p.ended is not None), None), 20, "a survivor"
        )
        assert done.error is None, done.error
        run(done.conn, "COMMIT")
        committed.append(done.name)
        survivors.remove(done)
    # A row's holder set it before its waiter added to it; the victim did neither.
    expected = {1: 0, 2: 0, 5: 0}
    for name in committed:
        for key in rows[name]:
            expected[key] += amounts[name]
    assert balances(pair, db) == expected
    assert proxy_log(proxy).count("deadlock across backends") == 1
    for conn in conns.values():
        conn.close()


def test_an_autocommit_write_over_both_backends_can_be_in_a_cycle(
    pair: Cluster, proxies: Proxies
) -> None:
    """b's autocommit UPDATE of 1 and 2 (one XA transaction over x0 and x1) locks 1 and waits
    for a's lock on 2, while a waits for 1. Whichever loses, the survivor's work is all there
    and the victim's none: an autocommit write is all or nothing here too."""
    proxy, db = bank(proxies, pair, (1, 2))
    a, b = client(proxy), client(proxy)
    run(a, "BEGIN", "UPDATE accounts SET balance = 5 WHERE id = 2")
    write = Pending("b", b, "UPDATE accounts SET balance = balance + 100 WHERE id IN (1, 2)")
    xa_helpers.wait_until(lambda: waiting(pair, 1), 10, "b to wait for a's lock on x1")
    update = Pending("a", a, "UPDATE accounts SET balance = 7 WHERE id = 1")
    assert write.join(20) and update.join(20), "the deadlock was not broken"
    failed = [p for p in (write, update) if p.error is not None]
    assert [p.error.args for p in failed if p.error is not None] == [(DEADLOCK[0], DEADLOCK[2])]
    if failed[0] is update:  # b's write committed; a's transaction is gone
        assert balances(pair, db) == {1: 100, 2: 100}
    else:  # b wrote nothing; a's transaction goes on
        run(a, "COMMIT")
        assert balances(pair, db) == {1: 7, 2: 5}
    assert not xa_helpers.prepared_everywhere(pair, db)
    a.close()
    b.close()


def test_a_plain_lock_wait_is_left_alone(pair: Cluster, proxies: Proxies) -> None:
    """b waits for a's lock past several checks, with no cycle: it is not killed, and it goes
    on when a commits."""
    proxy, db = bank(proxies, pair, (1, 2))
    a, b = client(proxy), client(proxy)
    run(a, "BEGIN", "UPDATE accounts SET balance = 1 WHERE id = 1")
    run(b, "BEGIN", "UPDATE accounts SET balance = 2 WHERE id = 2")  # b has a branch on x1 too
    wait = Pending("b", b, "UPDATE accounts SET balance = balance + 2 WHERE id = 1")
    assert not wait.join(CHECK_AFTER * 6), wait.error
    run(a, "COMMIT")
    assert wait.join(10) and wait.error is None
    run(b, "COMMIT")
    assert balances(pair, db) == {1: 3, 2: 2}
    assert "deadlock across backends" not in proxy_log(proxy)
    a.close()
    b.close()


def test_a_backend_that_is_down_does_not_disturb(pair: Cluster, proxies: Proxies) -> None:
    """b has a branch on x1 and waits on x0 for a; x1 dies. The checks that follow can't reach
    x1 (logged once), nobody is killed, other sessions run, and b goes on once a is done."""
    proxy, db = bank(proxies, pair, (1, 2))
    a, b, other = client(proxy), client(proxy), client(proxy)
    run(a, "BEGIN", "UPDATE accounts SET balance = 1 WHERE id = 1")
    run(b, "BEGIN", "SELECT balance FROM accounts WHERE id = 2")  # a read-only branch on x1
    pair.instances[1].kill()
    wait = Pending("b", b, "UPDATE accounts SET balance = balance + 2 WHERE id = 1")
    assert not wait.join(CHECK_AFTER * 6), wait.error
    cursor = other.cursor()
    cursor.execute("SELECT balance FROM accounts WHERE id = 5")  # x0 answers meanwhile
    cursor.close()
    run(a, "ROLLBACK")
    assert wait.join(10) and wait.error is None
    run(b, "COMMIT")  # the lost branch only read: the x0 branch commits
    text = proxy_log(proxy)
    assert text.count("control query on backend 'x1' failed") == 1
    assert "deadlock across backends" not in text
    assert pair.instances[0].execute(f"SELECT balance FROM `{db}_0`.accounts_1") == [(2,)]
    for conn in (a, b, other):
        conn.close()

"""KILL of a session in the middle of its COMMIT, and a carrier branch whose session state would
change what the decision row's INSERT does (proxy/xa.py, Session.end_transaction).

MariaDB finishes a COMMIT it has started even when its connection is killed; so does the proxy.
What matters as much: no connection goes back to a pool with an answer still unread or an XA
branch still attached, so the clients that come next get right answers."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

import pymysql
import pytest
import xa_helpers
from xa_helpers import (
    ACCOUNTS,
    balances,
    decisions,
    prepared_everywhere,
    two_accounts,
    wait_until,
)

if TYPE_CHECKING:
    from conftest import Cluster, ProxyProcess
    from xa_helpers import Proxies

pair = xa_helpers.pair
proxies = xa_helpers.proxies

# Account 1 is on x0 (server 0), account 2 on x1 (server 1). With log x0, x0's branch carries
# the decision; with xlog, the decision is inserted on its own.
LOGS = pytest.mark.parametrize("log", ["x0", "xlog"])


def commit_in_background(proxy: ProxyProcess) -> tuple[int, threading.Thread, dict[str, object]]:
    """Start a transfer of 10 from account 1 to 2 whose COMMIT runs in a thread:
    (the session's connection id, the thread, what its COMMIT got)."""
    conn = proxy.connect(database="bank")
    cursor = conn.cursor()
    cursor.execute("SELECT CONNECTION_ID()")
    ((connection_id,),) = cursor.fetchall()
    cursor.execute("BEGIN")
    cursor.execute("UPDATE accounts SET balance = balance - 10 WHERE id = 1")
    cursor.execute("UPDATE accounts SET balance = balance + 10 WHERE id = 2")
    outcome: dict[str, object] = {}

    def commit() -> None:
        try:
            cursor.execute("COMMIT")
            outcome["result"] = "OK"
        except pymysql.MySQLError as exc:
            outcome["result"] = exc.args[0]
        finally:
            conn.close()

    thread = threading.Thread(target=commit)
    thread.start()
    return connection_id, thread, outcome


def kill(proxy: ProxyProcess, connection_id: int) -> None:
    admin = proxy.connect(user="admin", password="admin", database="bank")
    with admin.cursor() as cursor:
        cursor.execute(f"KILL {connection_id}")
    admin.close()


def assert_others_get_right_answers(proxy: ProxyProcess, allowed: dict[int, set[int]]) -> None:
    """Fresh clients read both accounts, several times each (pools hand out their most
    recently returned connections first); every answer is one of `allowed`."""
    for _ in range(3):
        conn = proxy.connect(database="bank")
        with conn.cursor() as cursor:
            for account, values in allowed.items():
                for _ in range(3):
                    cursor.execute(f"SELECT id, balance FROM accounts WHERE id = {account}")
                    ((key, balance),) = cursor.fetchall()
                    assert key == account and balance in values, (account, balance)
        conn.close()


@LOGS
def test_kill_during_commit_lets_it_finish_and_others_get_right_answers(
    pair: Cluster, proxies: Proxies, log: str
) -> None:
    """KILL while the commit pauses after its decision (every branch prepared, or committed
    for the carrier): the commit still completes on every backend, nothing stays prepared, and
    the next clients get right answers straight away, during the pause too."""
    proxy, db = two_accounts(proxies, pair, "xakill", log, SHARDPROXY_DELAY_AT="after_decision:3")
    connection_id, thread, outcome = commit_in_background(proxy)
    wait_until(lambda: decisions(pair, db), 5, "the COMMIT decision")
    kill(proxy, connection_id)
    thread.join(10)
    assert outcome["result"] in (2013, 2006), outcome  # the killed client's connection
    # During the pause x1's branch is prepared: others read the committed values before it.
    assert_others_get_right_answers(proxy, {1: {90, 100}, 2: {100, 110}})
    # Well before recovery would roll back a prepared branch (abort_after = 3 s after seeing it).
    wait_until(lambda: not prepared_everywhere(pair, db), 5, "nothing prepared")
    assert balances(pair, db) == {1: 90, 2: 110}
    assert_others_get_right_answers(proxy, {1: {90}, 2: {110}})


def test_kill_while_the_carrier_insert_waits_on_a_lock(pair: Cluster, proxies: Proxies) -> None:
    """The carrier's INSERT of the decision row waits for a lock on the log table when the
    session is killed; once the lock is released the commit completes, and no pooled
    connection is left with the carrier's answers unread."""
    proxy, db = two_accounts(proxies, pair, "xakill", "x0")
    blocker = pair.instances[0].connect(f"{db}_0", autocommit=False)
    with blocker.cursor() as cursor:
        cursor.execute("SELECT * FROM shardproxy_xa_log FOR UPDATE")
    connection_id, thread, outcome = commit_in_background(proxy)
    wait_until(
        lambda: pair.instances[0].execute(
            "SELECT 1 FROM information_schema.PROCESSLIST "
            "WHERE INFO LIKE 'INSERT INTO%shardproxy_xa_log%'"
        ),
        5,
        "the carrier's INSERT to wait",
    )
    kill(proxy, connection_id)
    thread.join(10)
    assert outcome["result"] in (2013, 2006), outcome
    time.sleep(0.5)  # the killed session's task has ended
    blocker.rollback()
    blocker.close()
    wait_until(lambda: balances(pair, db) == {1: 90, 2: 110}, 5, "the commit to complete")
    wait_until(lambda: not prepared_everywhere(pair, db), 5, "nothing prepared")
    assert_others_get_right_answers(proxy, {1: {90}, 2: {110}})


@pytest.mark.parametrize(
    "setup",
    [
        ["SET SESSION TRANSACTION READ ONLY", "BEGIN"],
        ["SET autocommit = 0", "SET TRANSACTION READ ONLY"],
        ["SET TRANSACTION READ ONLY", "BEGIN"],
    ],
    ids=["session-read-only", "next-transaction-read-only", "read-only-then-begin"],
)
def test_read_only_transaction_with_failed_writes_commits_as_on_mariadb(
    pair: Cluster, proxies: Proxies, setup: list[str]
) -> None:
    """Writes refused in a READ ONLY transaction (1792), then COMMIT: MariaDB answers OK. The
    branch on the log backend is read only too, so it must not carry the decision row."""
    proxy, db = two_accounts(proxies, pair, "xakill", "x0")
    updates = [f"UPDATE accounts SET balance = 0 WHERE id = {account}" for account in (1, 2)]

    def run(conn: pymysql.Connection) -> list[object]:
        answers: list[object] = []
        with conn.cursor() as cursor:
            for sql in [*setup, *updates, "COMMIT"]:
                try:
                    cursor.execute(sql)
                    answers.append("OK")
                except pymysql.MySQLError as exc:
                    answers.append(exc.args[0])
        conn.close()
        return answers

    # The same on one unsharded table.
    pair.instances[1].execute(ACCOUNTS, database=f"{db}_1")
    pair.instances[1].execute(f"INSERT INTO `{db}_1`.accounts VALUES (1, 100), (2, 100)")
    expected = run(pair.instances[1].connect(f"{db}_1"))
    assert expected == ["OK"] * len(setup) + [1792, 1792, "OK"]
    assert run(proxy.connect(database="bank")) == expected
    assert balances(pair, db) == {1: 100, 2: 100}


def test_a_client_gone_mid_result_in_a_transaction_leaves_no_locks(
    pair: Cluster, proxies: Proxies
) -> None:
    """The client vanishes while a locking read streams to it: its transaction is rolled back
    at once (branch connections with rows still in flight are closed, never spoken over), so
    its row locks don't outlive it and the proxy keeps serving."""
    proxy, db = two_accounts(proxies, pair, "xakill", "x0")
    admin = proxy.connect(database="bank")
    with admin.cursor() as cursor:
        for start in range(3, 20_003, 1000):
            values = ", ".join(f"({i}, 100)" for i in range(start, start + 1000))
            cursor.execute(f"INSERT INTO accounts (id, balance) VALUES {values}")
    victim = proxy.connect(database="bank", cursorclass=pymysql.cursors.SSCursor)
    cursor = victim.cursor()
    cursor.execute("BEGIN")
    # About 20 MB: more than the sockets between the proxy and the client hold.
    cursor.execute("SELECT id, REPEAT('x', 1000) FROM accounts FOR UPDATE")
    assert cursor.fetchone() is not None
    victim._sock.close()  # type: ignore[attr-defined]  # gone, mid-result
    with admin.cursor() as other:
        other.execute("SET innodb_lock_wait_timeout = 10")
        other.execute("UPDATE accounts SET balance = 0 WHERE id IN (1, 2)")
        assert other.rowcount == 2
    admin.close()
    wait_until(lambda: not prepared_everywhere(pair, db), 5, "nothing prepared")

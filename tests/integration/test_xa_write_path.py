"""The cheaper cross-shard write path (proxy/xa.py): XA START sent with a branch's first
statement, the decision carried by the log backend's branch, group-committed decision inserts.
Each case checks the data on the backends, not just what the client was told."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import pymysql
import pytest
import xa_helpers
from xa_helpers import (
    balances,
    decisions,
    prepared_everywhere,
    two_accounts,
)

if TYPE_CHECKING:
    from conftest import Cluster
    from xa_helpers import Proxies

pair = xa_helpers.pair
proxies = xa_helpers.proxies

# Account 1 is on x0 (server 0), account 2 on x1 (server 1).
LOGS = pytest.mark.parametrize("log", ["x0", "xlog"])


def test_first_statement_of_a_branch_runs_inside_it(pair: Cluster, proxies: Proxies) -> None:
    """XA START rides with the first statement: ROLLBACK must undo that statement too."""
    proxy, db = two_accounts(proxies, pair, "xawrite")
    conn = proxy.connect(database="bank")
    with conn.cursor() as cursor:
        cursor.execute("BEGIN")
        cursor.execute("UPDATE accounts SET balance = 1 WHERE id = 1")
        cursor.execute("UPDATE accounts SET balance = 2 WHERE id = 2")
        cursor.execute("SELECT id, balance FROM accounts ORDER BY id")
        assert cursor.fetchall() == ((1, 1), (2, 2))  # its own writes, on both shards
        cursor.execute("ROLLBACK")
    assert balances(pair, db) == {1: 100, 2: 100}
    conn.close()


def test_error_in_the_first_statement_of_a_branch(pair: Cluster, proxies: Proxies) -> None:
    """The branch's first statement fails after XA START succeeded in the same packet: the
    client gets that statement's error, the branch stays usable and commits with the rest."""
    proxy, db = two_accounts(proxies, pair, "xawrite")
    conn = proxy.connect(database="bank")
    with conn.cursor() as cursor:
        cursor.execute("BEGIN")
        cursor.execute("UPDATE accounts SET balance = balance - 10 WHERE id = 1")
        with pytest.raises(pymysql.err.IntegrityError) as excinfo:
            cursor.execute("INSERT INTO accounts (id, balance) VALUES (2, 5)")  # x1's first
        assert excinfo.value.args[0] == 1062
        cursor.execute("UPDATE accounts SET balance = balance + 10 WHERE id = 2")
        cursor.execute("COMMIT")
    assert balances(pair, db) == {1: 90, 2: 110}
    assert prepared_everywhere(pair, db) == []
    conn.close()


@LOGS
def test_a_refused_decision_rolls_back_every_branch(
    pair: Cluster, proxies: Proxies, log: str
) -> None:
    """The decision log refuses the insert (here a CHECK constraint): carried by x0's branch
    or inserted alone, the transaction is rolled back everywhere and the client told so."""
    proxy, db = two_accounts(proxies, pair, "xawrite", log)
    pair.instances[0].execute(
        f"ALTER TABLE `{db}_0`.shardproxy_xa_log "
        "ADD CONSTRAINT no_decisions CHECK (decision = 'ABORT')"
    )
    conn = proxy.connect(database="bank")
    with conn.cursor() as cursor:
        cursor.execute("BEGIN")
        cursor.execute("UPDATE accounts SET balance = balance - 10 WHERE id = 1")
        cursor.execute("UPDATE accounts SET balance = balance + 10 WHERE id = 2")
        with pytest.raises(pymysql.err.OperationalError) as excinfo:
            cursor.execute("COMMIT")
        assert excinfo.value.args[0] == 1614
        assert "rolled back" in excinfo.value.args[1]
    assert balances(pair, db) == {1: 100, 2: 100}
    assert prepared_everywhere(pair, db) == []
    assert decisions(pair, db) == {}
    conn.close()


@LOGS
def test_concurrent_commits_all_land(pair: Cluster, proxies: Proxies, log: str) -> None:
    """Eight clients transferring between their own accounts at once (decisions group-committed,
    or carried): every transfer commits on both shards, and no decision row or prepared branch
    is left once they are done."""
    proxy, db = two_accounts(proxies, pair, "xawrite", log)
    clients = range(1, 9)
    conn = proxy.connect(database="bank")
    with conn.cursor() as cursor:
        for k in clients:  # 4k+1 on x0, 4k+2 on x1
            cursor.execute(f"INSERT INTO accounts (id, balance) VALUES ({4 * k + 1}, 100)")
            cursor.execute(f"INSERT INTO accounts (id, balance) VALUES ({4 * k + 2}, 100)")
    conn.close()

    def transfers(k: int) -> None:
        client = proxy.connect(database="bank")
        with client.cursor() as cursor:
            for _ in range(20):
                cursor.execute("BEGIN")
                cursor.execute(f"UPDATE accounts SET balance = balance - 1 WHERE id = {4 * k + 1}")
                cursor.execute(f"UPDATE accounts SET balance = balance + 1 WHERE id = {4 * k + 2}")
                cursor.execute("COMMIT")
        client.close()

    threads = [threading.Thread(target=transfers, args=(k,)) for k in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    expected = {1: 100, 2: 100}
    for k in clients:
        expected |= {4 * k + 1: 80, 4 * k + 2: 120}
    assert balances(pair, db) == expected
    assert prepared_everywhere(pair, db) == []
    xa_helpers.wait_until(lambda: decisions(pair, db) == {}, 10, "finished decisions deleted")

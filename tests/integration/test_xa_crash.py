"""Crashes during a cross-shard commit, checked on the backends directly.

The proxy SIGKILLs itself at a failpoint of the two-phase commit (SHARDPROXY_CRASH_AT), or a
backend is SIGKILLed in the middle of a transaction or of its commit (SHARDPROXY_DELAY_AT holds
the commit at a point long enough to do it). Recovery runs every second and rolls back a prepared
branch without a decision after 3 s, so every test ends within seconds.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import pymysql
import pytest
import xa_helpers
from xa_helpers import (
    ABORT_AFTER,
    ACCOUNTS,
    RECOVERY_INTERVAL,
    Proxies,
    balances,
    create_tables,
    decisions,
    new_db_name,
    no_failpoints,
    prepared,
    prepared_everywhere,
    row_locked,
    wait_until,
    xa_config,
)

if TYPE_CHECKING:
    from conftest import Cluster, ProxyProcess

# Fixtures: the module's two servers, and the proxies a test starts.
pair = xa_helpers.pair
proxies = xa_helpers.proxies

# Account 1 lives in shard 1 on x0 (server 0), account 2 in shard 2 on x1 (server 1).
X0_ACCOUNT, X1_ACCOUNT = 1, 2
RECOVERED_WITHIN = ABORT_AFTER + 4 * RECOVERY_INTERVAL + 5


def open_accounts(proxy: ProxyProcess) -> None:
    create_tables(proxy, ACCOUNTS)
    conn = proxy.connect(database="bank")
    with conn.cursor() as cursor:
        # One backend per statement: one-phase commits, which the failpoints leave alone.
        for account in (X0_ACCOUNT, X1_ACCOUNT):
            cursor.execute(f"INSERT INTO accounts (id, balance) VALUES ({account}, 100)")
    conn.close()


def transfer(conn: Any, form: str, amount: int = 10) -> None:
    """Move `amount` from the account on x0 to the one on x1, in one transaction."""
    with conn.cursor() as cursor:
        if form == "transaction":
            cursor.execute("BEGIN")
            cursor.execute(f"UPDATE accounts SET balance = balance - {amount} WHERE id = 1")
            cursor.execute(f"UPDATE accounts SET balance = balance + {amount} WHERE id = 2")
            cursor.execute("COMMIT")
        else:  # one autocommit statement over both backends
            cursor.execute(
                f"UPDATE accounts SET balance = balance + IF(id = 1, -{amount}, {amount}) "
                "WHERE id IN (1, 2)"
            )


def assert_lost_connection(exc: pytest.ExceptionInfo[pymysql.MySQLError]) -> None:
    assert exc.value.args[0] in (2013, 2006), exc.value


# --- 1. the proxy killed between PREPARE and the decision, or after it ------------------------


# x0 holds the decision log: as `x0` its branch carries the decision (it commits in one phase with
# it, and is never prepared); as `xlog` both branches prepare and the decision is inserted alone.
LOGS = pytest.mark.parametrize("log", ["x0", "xlog"])


def prepared_branches(log: str) -> list[tuple[int, str]]:
    """(server, branch) prepared between PREPARE and the end of a transfer's commit."""
    return [(1, "x1")] if log == "x0" else [(0, "x0"), (1, "x1")]


def wait_for_prepare(pair: Cluster, db: str, log: str) -> None:
    """Until a commit has prepared every branch it prepares (it is held after that)."""
    wait_until(
        lambda: [(i, b) for i, _, b in prepared_everywhere(pair, db)] == prepared_branches(log),
        5,
        "the branches prepared",
    )


def crash_during_transfer(
    pair: Cluster, proxies: Proxies, point: str, form: str, log: str
) -> tuple[ProxyProcess, str, str]:
    """Run a transfer through a proxy that kills itself at `point`; (proxy, db, gtrid), once
    the expected branches are prepared."""
    db = new_db_name("xacrash")
    proxy = proxies.start(xa_config(pair, db, log=log), f"crash-{point}", SHARDPROXY_CRASH_AT=point)
    open_accounts(proxy)

    conn = proxy.connect(database="bank")
    with pytest.raises(pymysql.err.OperationalError) as excinfo:
        transfer(conn, form)
    assert_lost_connection(excinfo)
    wait_until(lambda: not proxy.is_running(), 10, "the proxy to kill itself")

    # Prepared branches survive their connections; an unprepared one died with its connection.
    branches = prepared_everywhere(pair, db)
    assert [(server, bqual) for server, _, bqual in branches] == prepared_branches(log)
    assert len({gtrid for _, gtrid, _ in branches}) == 1
    return proxy, db, branches[0][1]


@LOGS
@pytest.mark.parametrize("form", ["transaction", "autocommit"])
def test_proxy_killed_after_every_prepare_rolls_every_branch_back(
    pair: Cluster, proxies: Proxies, monkeypatch: pytest.MonkeyPatch, form: str, log: str
) -> None:
    proxy, db, gtrid = crash_during_transfer(pair, proxies, "after_prepare", form, log)
    assert decisions(pair, db) == {}
    assert balances(pair, db) == {1: 100, 2: 100}

    with no_failpoints(monkeypatch):
        proxy.start()
    wait_until(lambda: not prepared_everywhere(pair, db), RECOVERED_WITHIN, "recovery to roll back")
    assert balances(pair, db) == {1: 100, 2: 100}
    assert decisions(pair, db) == {gtrid: ("ABORT", "A")}
    # Nothing stays locked: the same transfer goes through now.
    conn = proxy.connect(database="bank")
    transfer(conn, form)
    conn.close()
    assert balances(pair, db) == {1: 90, 2: 110}


@LOGS
@pytest.mark.parametrize("form", ["transaction", "autocommit"])
def test_proxy_killed_after_the_decision_commits_every_branch(
    pair: Cluster, proxies: Proxies, monkeypatch: pytest.MonkeyPatch, form: str, log: str
) -> None:
    proxy, db, gtrid = crash_during_transfer(pair, proxies, "after_decision", form, log)
    assert decisions(pair, db) == {gtrid: ("COMMIT", "A")}
    # x1's branch is prepared, not committed yet; x0's committed with the decision it carried.
    assert balances(pair, db) == {1: 90 if log == "x0" else 100, 2: 100}

    with no_failpoints(monkeypatch):
        proxy.start()
    # Recovery at start applies the decision before the proxy even listens.
    assert prepared_everywhere(pair, db) == []
    assert balances(pair, db) == {1: 90, 2: 110}


# --- 2. a backend killed in the middle of a cross-shard transaction ---------------------------


def test_backend_killed_mid_transaction_rolls_back_the_other_branch(
    pair: Cluster, proxies: Proxies
) -> None:
    db = new_db_name("xacrash")
    proxy = proxies.start(xa_config(pair, db), "kill-backend")
    open_accounts(proxy)

    conn = proxy.connect(database="bank")
    cursor = conn.cursor()
    cursor.execute("BEGIN")
    cursor.execute("UPDATE accounts SET balance = balance - 10 WHERE id = 1")  # x0
    cursor.execute("UPDATE accounts SET balance = balance + 10 WHERE id = 2")  # x1
    assert row_locked(pair.instances[0], f"{db}_0", "accounts_1", X0_ACCOUNT)
    pair.instances[1].kill()

    with pytest.raises(pymysql.err.OperationalError) as excinfo:
        cursor.execute("UPDATE accounts SET balance = balance + 1 WHERE id = 6")  # x1 again
    code, message = excinfo.value.args
    assert code == 2013
    assert "x1" in message and "rolled back" in message
    # The x0 branch is rolled back at once, not when the client gets round to it.
    assert not row_locked(pair.instances[0], f"{db}_0", "accounts_1", X0_ACCOUNT)
    assert prepared(pair.instances[0]) == []
    # The transaction is over, and the client can't mistake it for committed.
    with pytest.raises(pymysql.err.OperationalError) as excinfo:
        cursor.execute("UPDATE accounts SET balance = balance - 5 WHERE id = 1")
    assert excinfo.value.args[0] == 1614
    with pytest.raises(pymysql.err.OperationalError) as excinfo:
        cursor.execute("COMMIT")
    assert excinfo.value.args[0] == 1614
    assert "rolled back" in excinfo.value.args[1]
    # ... and then the session goes on as usual.
    cursor.execute("SELECT balance FROM accounts WHERE id = 1")
    assert cursor.fetchall() == ((100,),)

    pair.instances[1].start()
    assert prepared_everywhere(pair, db) == []
    assert balances(pair, db) == {1: 100, 2: 100}
    conn.close()


def test_backend_killed_before_commit_fails_the_commit_and_rolls_back(
    pair: Cluster, proxies: Proxies
) -> None:
    db = new_db_name("xacrash")
    proxy = proxies.start(xa_config(pair, db), "kill-before-commit")
    open_accounts(proxy)

    conn = proxy.connect(database="bank")
    cursor = conn.cursor()
    cursor.execute("BEGIN")
    cursor.execute("UPDATE accounts SET balance = balance - 10 WHERE id = 1")
    cursor.execute("UPDATE accounts SET balance = balance + 10 WHERE id = 2")
    pair.instances[1].kill()
    with pytest.raises(pymysql.err.OperationalError) as excinfo:
        cursor.execute("COMMIT")
    assert excinfo.value.args[0] == 1614
    assert "rolled back" in excinfo.value.args[1]
    assert not row_locked(pair.instances[0], f"{db}_0", "accounts_1", X0_ACCOUNT)
    assert prepared(pair.instances[0]) == []

    pair.instances[1].start()
    assert prepared_everywhere(pair, db) == []
    assert balances(pair, db) == {1: 100, 2: 100}
    conn.close()


def commit_in_thread(conn: Any) -> tuple[threading.Thread, dict[str, Any]]:
    """Start COMMIT on `conn` in a thread; the dict gets 'ok' or 'error' when it returns."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            with conn.cursor() as cursor:
                cursor.execute("COMMIT")
            outcome["ok"] = True
        except pymysql.MySQLError as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def begin_transfer(proxy: ProxyProcess) -> Any:
    conn = proxy.connect(database="bank", read_timeout=30)
    with conn.cursor() as cursor:
        cursor.execute("BEGIN")
        cursor.execute("UPDATE accounts SET balance = balance - 10 WHERE id = 1")
        cursor.execute("UPDATE accounts SET balance = balance + 10 WHERE id = 2")
    return conn


@LOGS
def test_log_backend_killed_between_prepare_and_decision_rolls_everything_back(
    pair: Cluster, proxies: Proxies, log: str
) -> None:
    """x0 holds the decision log: the COMMIT decision can't be written, so nothing commits.
    When the proxy saw x0 gone before sending the decision, the client is told it was rolled
    back (1614); when the loss shows only after sending, the outcome is unknown to it (2013)."""
    db = new_db_name("xacrash")
    config = xa_config(pair, db, abort_after=6, log=log)
    proxy = proxies.start(config, "kill-log", SHARDPROXY_DELAY_AT="after_prepare:2")
    open_accounts(proxy)

    conn = begin_transfer(proxy)
    thread, outcome = commit_in_thread(conn)
    wait_for_prepare(pair, db, log)
    pair.instances[0].kill()
    thread.join(30)

    error = outcome.get("error")
    assert error is not None, outcome
    assert error.args[0] in (1614, 2013), error
    if error.args[0] == 2013:
        assert "may or may not have committed" in error.args[1]
    pair.instances[0].start()
    # x0's branch survived the crash prepared, or (carrying the decision) died unprepared with
    # it; with no decision, recovery rolls back what is prepared.
    wait_until(
        lambda: not prepared_everywhere(pair, db), 6 + 4 * RECOVERY_INTERVAL + 10, "rollback"
    )
    assert balances(pair, db) == {1: 100, 2: 100}
    assert {d for d, _ in decisions(pair, db).values()} <= {"ABORT"}
    conn.close()


@LOGS
def test_backend_killed_after_the_decision_still_commits_there(
    pair: Cluster, proxies: Proxies, log: str
) -> None:
    """x1 dies after preparing; the decision (on x0) is durable, so the client is told OK and
    x1's branch commits when it comes back."""
    db = new_db_name("xacrash")
    config = xa_config(pair, db, abort_after=6, log=log)
    proxy = proxies.start(config, "kill-after-decision", SHARDPROXY_DELAY_AT="after_prepare:1")
    open_accounts(proxy)

    conn = begin_transfer(proxy)
    thread, outcome = commit_in_thread(conn)
    wait_for_prepare(pair, db, log)
    pair.instances[1].kill()
    thread.join(30)

    assert outcome == {"ok": True}
    assert dict(pair.instances[0].execute(f"SELECT id, balance FROM `{db}_0`.accounts_1")) == {
        1: 90
    }
    pair.instances[1].start()
    wait_until(lambda: not prepared_everywhere(pair, db), RECOVERED_WITHIN, "recovery to commit")
    assert balances(pair, db) == {1: 90, 2: 110}
    conn.close()

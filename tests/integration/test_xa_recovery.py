"""Two proxy instances (A and B) on the same backends and the same decision log: whichever
survives finishes the other's transactions, and no branch is ever decided twice or differently.

Each proxy's log names every branch its recovery finished ("recovery: XA COMMIT <gtrid> on
<backend>"), so the tests can count who did what; the backends say what actually happened.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import TYPE_CHECKING, Any

import pymysql
import pytest
import xa_helpers
from xa_helpers import (
    ABORT_AFTER,
    ACCOUNTS,
    RECOVERY_INTERVAL,
    Proxies,
    create_tables,
    decisions,
    new_db_name,
    no_failpoints,
    prepared_everywhere,
    recovered,
    table_rows,
    wait_until,
    xa_config,
)

if TYPE_CHECKING:
    from conftest import Cluster, ProxyProcess

# Fixtures: the module's two servers, and the proxies a test starts.
pair = xa_helpers.pair
proxies = xa_helpers.proxies

RECOVERED_WITHIN = ABORT_AFTER + 4 * RECOVERY_INTERVAL + 5


def open_accounts(proxy: ProxyProcess, pairs: int) -> None:
    """Accounts 4k+1 (on x0) and 4k+2 (on x1) for k < pairs, 100 each."""
    create_tables(proxy, ACCOUNTS)
    conn = proxy.connect(database="bank")
    with conn.cursor() as cursor:
        for k in range(pairs):
            for account in (4 * k + 1, 4 * k + 2):
                cursor.execute(f"INSERT INTO accounts (id, balance) VALUES ({account}, 100)")
    conn.close()


def begin_transfer(proxy: ProxyProcess, k: int) -> Any:
    """A transaction moving 1 from account 4k+1 (x0) to 4k+2 (x1), not committed yet."""
    conn = proxy.connect(database="bank", read_timeout=30)
    with conn.cursor() as cursor:
        cursor.execute("BEGIN")
        cursor.execute(f"UPDATE accounts SET balance = balance - 1 WHERE id = {4 * k + 1}")
        cursor.execute(f"UPDATE accounts SET balance = balance + 1 WHERE id = {4 * k + 2}")
    return conn


def commit_all(conns: list[Any]) -> list[Any]:
    """COMMIT every connection at once; each one's outcome: 'ok' or the error."""
    outcomes: list[Any] = [None] * len(conns)
    barrier = threading.Barrier(len(conns))

    def run(i: int) -> None:
        barrier.wait()
        try:
            with conns[i].cursor() as cursor:
                cursor.execute("COMMIT")
            outcomes[i] = "ok"
        except pymysql.MySQLError as exc:
            outcomes[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(conns))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return outcomes


def transfer_states(pair: Cluster, db: str, pairs: int) -> list[str]:
    """For each pair of accounts: 'moved', 'untouched', or what half-applied looks like."""
    balances = dict(table_rows(pair, db, "accounts", "id, balance"))
    states = []
    for k in range(pairs):
        both = (balances[4 * k + 1], balances[4 * k + 2])
        states.append({(99, 101): "moved", (100, 100): "untouched"}.get(both, f"HALF {both}"))
    return states


def assert_each_branch_finished_once(*proxies: ProxyProcess) -> list[tuple[str, str, str, str]]:
    lines = recovered(*proxies)
    per_branch = Counter((gtrid, backend) for _, _, gtrid, backend in lines)
    assert all(n == 1 for n in per_branch.values()), per_branch
    verbs: dict[str, set[str]] = {}
    for _, verb, gtrid, _ in lines:
        verbs.setdefault(gtrid, set()).add(verb)
    assert all(len(v) == 1 for v in verbs.values()), verbs
    return lines


def test_survivor_commits_what_a_killed_instance_decided(pair: Cluster, proxies: Proxies) -> None:
    db = new_db_name("xarecov")
    a = proxies.start(xa_config(pair, db, "A"), "instance-a", SHARDPROXY_CRASH_AT="after_decision")
    b = proxies.start(xa_config(pair, db, "B"), "instance-b")
    open_accounts(a, 1)

    outcome = commit_all([begin_transfer(a, 0)])
    assert isinstance(outcome[0], pymysql.err.OperationalError), outcome
    wait_until(lambda: not a.is_running(), 10, "A to kill itself")
    ((gtrid, (decision, decider)),) = decisions(pair, db).items()
    assert (decision, decider) == ("COMMIT", "A")
    assert gtrid.split("-")[2] == "A"

    # A stays down: B's periodic recovery applies A's decision.
    wait_until(lambda: not prepared_everywhere(pair, db), RECOVERED_WITHIN, "B to commit")
    assert transfer_states(pair, db, 1) == ["moved"]
    lines = assert_each_branch_finished_once(a, b)
    assert sorted(lines) == [
        ("instance-b", "COMMIT", gtrid, "x0"),
        ("instance-b", "COMMIT", gtrid, "x1"),
    ]


def test_survivor_rolls_back_what_a_killed_instance_left_undecided(
    pair: Cluster, proxies: Proxies
) -> None:
    db = new_db_name("xarecov")
    a = proxies.start(xa_config(pair, db, "A"), "instance-a", SHARDPROXY_CRASH_AT="after_prepare")
    b = proxies.start(xa_config(pair, db, "B"), "instance-b")
    open_accounts(a, 1)

    outcome = commit_all([begin_transfer(a, 0)])
    assert isinstance(outcome[0], pymysql.err.OperationalError), outcome
    wait_until(lambda: not a.is_running(), 10, "A to kill itself")
    branches = prepared_everywhere(pair, db)
    assert len(branches) == 2
    gtrid = branches[0][1]
    assert decisions(pair, db) == {}

    wait_until(lambda: not prepared_everywhere(pair, db), RECOVERED_WITHIN, "B to roll back")
    assert transfer_states(pair, db, 1) == ["untouched"]
    assert decisions(pair, db) == {gtrid: ("ABORT", "B")}
    lines = assert_each_branch_finished_once(a, b)
    assert sorted(lines) == [
        ("instance-b", "ROLLBACK", gtrid, "x0"),
        ("instance-b", "ROLLBACK", gtrid, "x1"),
    ]


@pytest.mark.parametrize("log", ["x0", "xlog"])
def test_recovery_never_overrides_a_live_coordinator(
    pair: Cluster, proxies: Proxies, log: str
) -> None:
    """A stalls between PREPARE and its decision for longer than abort_after: recovery records
    ABORT first (it can't roll back branches still attached to A's connections), and A, on
    waking, finds ABORT standing (x0's branch carrying the decision gets its duplicate key),
    or, inserting alone, sees its XA timeout passed; it rolls back and tells its client so."""
    db = new_db_name("xarecov")
    stall = f"before_decision:{ABORT_AFTER + 3}"
    config = xa_config(pair, db, "A", log=log)
    a = proxies.start(config, "instance-a", SHARDPROXY_DELAY_AT=stall)
    b = proxies.start(xa_config(pair, db, "B"), "instance-b")
    open_accounts(a, 1)

    outcome = commit_all([begin_transfer(a, 0)])
    error = outcome[0]
    assert isinstance(error, pymysql.err.OperationalError), outcome
    assert error.args[0] == 1614
    expected = "rolled back by recovery" if log == "x0" else "past the XA timeout"
    assert expected in error.args[1]
    assert prepared_everywhere(pair, db) == []
    assert transfer_states(pair, db, 1) == ["untouched"]
    assert [d for d, _ in decisions(pair, db).values()] == ["ABORT"]
    assert all(verb == "ROLLBACK" for _, verb, _, _ in recovered(a, b))


def test_two_instances_recovering_the_same_crash_decide_each_branch_once(
    pair: Cluster, proxies: Proxies, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Six commits race into A's crash; A restarts at once while B is running: both recover
    the same transactions, and every pair of accounts ends moved or untouched, never half."""
    db = new_db_name("xarecov")
    pairs = 6
    a = proxies.start(xa_config(pair, db, "A"), "instance-a", SHARDPROXY_CRASH_AT="after_decision")
    b = proxies.start(xa_config(pair, db, "B"), "instance-b")
    open_accounts(a, pairs)

    outcomes = commit_all([begin_transfer(a, k) for k in range(pairs)])
    wait_until(lambda: not a.is_running(), 10, "A to kill itself")
    assert all(isinstance(o, pymysql.err.OperationalError) for o in outcomes), outcomes
    with no_failpoints(monkeypatch):
        a.start()

    wait_until(lambda: not prepared_everywhere(pair, db), RECOVERED_WITHIN, "recovery")
    states = transfer_states(pair, db, pairs)
    assert all(state in ("moved", "untouched") for state in states), states
    assert "moved" in states  # at least the transaction that reached the failpoint
    log = decisions(pair, db)
    lines = assert_each_branch_finished_once(a, b)
    for _, verb, gtrid, _ in lines:
        if gtrid in log:
            assert log[gtrid][0] == ("COMMIT" if verb == "COMMIT" else "ABORT")
    # Both servers agree: a committed branch on x0 means a committed branch on x1.
    committed = {gtrid for _, verb, gtrid, _ in lines if verb == "COMMIT"}
    assert len(committed) == states.count("moved")


def show_transactions(proxy: ProxyProcess, user: str = "admin") -> list[tuple]:
    conn = proxy.connect(user=user, password=user, database="bank")
    try:
        with conn.cursor() as cursor:
            cursor.execute("SHOW SHARDPROXY TRANSACTIONS")
            assert [d[0] for d in cursor.description] == [
                "backend",
                "gtrid",
                "branch",
                "instance",
                "decision",
                "age_seconds",
                "state",
            ]
            return list(cursor.fetchall())
    finally:
        conn.close()


@pytest.mark.parametrize("crash_at", ["after_prepare", "after_decision"])
def test_admin_statement_lists_in_doubt_branches(
    pair: Cluster, proxies: Proxies, crash_at: str
) -> None:
    """B recovers only at start (recovery_interval 60), so A's branches stay in doubt."""
    db = new_db_name("xarecov")
    b = proxies.start(xa_config(pair, db, "B", abort_after=60, recovery_interval=60), "lazy-b")
    a = proxies.start(xa_config(pair, db, "A"), "instance-a", SHARDPROXY_CRASH_AT=crash_at)
    open_accounts(a, 1)
    assert show_transactions(b) == []

    commit_all([begin_transfer(a, 0)])
    wait_until(lambda: not a.is_running(), 10, "A to kill itself")
    rows = show_transactions(b)
    decision = "COMMIT" if crash_at == "after_decision" else None
    ((gtrid, _),) = {(row[1], 0) for row in rows}
    assert [(r[0], r[2], r[3], r[4], r[6]) for r in rows] == [
        ("x0", "x0", "A", decision, "prepared"),
        ("x1", "x1", "A", decision, "prepared"),
    ]
    assert all(0 <= float(r[5]) < 60 for r in rows)
    assert gtrid.startswith("sp-") and "-A-" in gtrid

    with pytest.raises(pymysql.err.OperationalError) as excinfo:
        show_transactions(b, user="app")
    assert excinfo.value.args[0] == 1227

    if decision == "COMMIT":
        b.restart()  # recovery at start applies the decision
        assert show_transactions(b) == []
        assert transfer_states(pair, db, 1) == ["moved"]

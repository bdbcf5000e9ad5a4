"""The bank test: money moves between accounts on every shard while proxies and backends crash.

40 accounts over 4 shards on two private MariaDB servers, served by two proxy instances. Eight
clients move random amounts between random accounts for 60 s, each transfer one transaction
that also inserts a row with a unique id into `transfers` (sharded by that id, so most
transfers touch both servers). Meanwhile a chaos thread SIGKILLs a proxy or a backend every few
seconds and restarts it. At the end, once recovery has finished every prepared branch:

- the total is what it was;
- every transfer a client saw COMMIT acknowledge is in `transfers`;
- every account's balance is its opening balance plus what `transfers` says it received minus
  what it sent: each committed transfer was applied whole, and nothing else was.

A transfer whose COMMIT got an error may or may not have committed; the last check covers both.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pymysql
import pytest
import xa_helpers
from xa_helpers import (
    ACCOUNTS,
    TRANSFERS,
    Proxies,
    create_tables,
    new_db_name,
    prepared_everywhere,
    table_rows,
    wait_until,
    xa_config,
)

if TYPE_CHECKING:
    from conftest import Cluster, ProxyFactory, ProxyProcess

pair = xa_helpers.pair  # fixture: the module's two servers

DURATION = 60.0  # seconds of transfers under chaos (the number)
CLIENTS = 8
ACCOUNT_COUNT = 40
OPENING_BALANCE = 1000
CHAOS_EVERY = (2.0, 4.0)  # seconds between two crashes
DOWN_FOR = (0.3, 1.5)  # seconds a crashed process stays down


@dataclass
class Ledger:
    """What one client saw."""

    acknowledged: list[tuple[int, int, int, int]] = field(default_factory=list)
    uncertain: list[int] = field(default_factory=list)  # COMMIT answered with an error
    failed: int = 0  # an error before COMMIT: rolled back
    errors: Counter[int] = field(default_factory=Counter)


def connect_any(
    proxies: list[ProxyProcess], start: int, stop: threading.Event
) -> tuple[Any, int] | None:
    """A connection to whichever proxy answers first, trying them in turn from `start`;
    None once the test is over."""
    attempt = start
    while not stop.is_set():
        proxy = proxies[attempt % len(proxies)]
        try:
            conn = proxy.connect(database="bank", connect_timeout=2, read_timeout=30)
            with conn.cursor() as cursor:
                cursor.execute("SET innodb_lock_wait_timeout = 10")
            return conn, attempt
        except pymysql.MySQLError:
            attempt += 1
            time.sleep(0.05)
    return None


def run_client(
    number: int, proxies: list[ProxyProcess], stop: threading.Event, ledger: Ledger
) -> None:
    rng = random.Random(number)
    # Half the clients use BEGIN ... COMMIT, the other half autocommit=0 and COMMIT.
    explicit = number % 2 == 0
    conn = None
    turn = number
    sequence = 0
    while not stop.is_set():
        if conn is None:
            connected = connect_any(proxies, turn, stop)
            if connected is None:
                return
            conn, turn = connected
            turn += 1
            if not explicit:
                try:
                    with conn.cursor() as cursor:
                        cursor.execute("SET autocommit = 0")
                except pymysql.MySQLError:
                    conn = None
                    continue
        sequence += 1
        transfer_id = (number + 1) * 10_000_000 + sequence
        src, dst = rng.sample(range(1, ACCOUNT_COUNT + 1), 2)
        amount = rng.randint(1, 50)
        committing = False
        try:
            with conn.cursor() as cursor:
                if explicit:
                    cursor.execute("BEGIN")
                # Lock both accounts in id order, so transfers never deadlock on each other.
                for account in sorted((src, dst)):
                    cursor.execute(f"SELECT balance FROM accounts WHERE id = {account} FOR UPDATE")
                cursor.execute(f"UPDATE accounts SET balance = balance - {amount} WHERE id = {src}")
                cursor.execute(f"UPDATE accounts SET balance = balance + {amount} WHERE id = {dst}")
                cursor.execute(
                    "INSERT INTO transfers (id, src, dst, amount) "
                    f"VALUES ({transfer_id}, {src}, {dst}, {amount})"
                )
                committing = True
                cursor.execute("COMMIT")
            ledger.acknowledged.append((transfer_id, src, dst, amount))
        except pymysql.MySQLError as exc:
            code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
            ledger.errors[code] += 1
            if committing:
                ledger.uncertain.append(transfer_id)
            else:
                ledger.failed += 1
            with contextlib.suppress(Exception):
                conn.close()
            conn = None
            time.sleep(rng.uniform(0.02, 0.2))
    if conn is not None:
        with contextlib.suppress(Exception):
            conn.close()


def run_chaos(pair: Cluster, proxies: list[ProxyProcess], until: float, events: list[str]) -> None:
    """Alternately crash a proxy and a backend (chosen at random), then bring it back.

    Runs in the test's own thread: the harness gives every server and proxy a parent-death
    signal, which Linux sends when the *thread* that started the process ends."""
    rng = random.Random(20261126)
    while True:
        time.sleep(rng.uniform(*CHAOS_EVERY))
        if time.monotonic() > until:
            return
        if len(events) % 2 == 0:
            victim = rng.choice(proxies)
            victim.kill()
            events.append(f"kill proxy {victim.name}")
            time.sleep(rng.uniform(*DOWN_FOR))
            victim.start()
        else:
            index = rng.randrange(len(pair.instances))
            pair.instances[index].kill()
            events.append(f"kill backend {index}")
            time.sleep(rng.uniform(*DOWN_FOR))
            pair.instances[index].start()


def test_bank_transfers_survive_proxy_and_backend_crashes(
    pair: Cluster, proxy_server: ProxyFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = new_db_name("bank")
    started = Proxies(proxy_server, monkeypatch)
    try:
        proxies = [
            # One decision log both ways: A's x0 branches carry their decisions, B inserts
            # its decisions on their own (group-committed).
            started.start(xa_config(pair, db, "A", log="x0"), "bank-a"),
            started.start(xa_config(pair, db, "B", log="xlog"), "bank-b"),
        ]
        create_tables(proxies[0], ACCOUNTS, TRANSFERS)
        conn = proxies[0].connect(database="bank")
        with conn.cursor() as cursor:
            rows = ", ".join(f"({i}, {OPENING_BALANCE})" for i in range(1, ACCOUNT_COUNT + 1))
            cursor.execute(f"INSERT INTO accounts (id, balance) VALUES {rows}")
        conn.close()
        total = OPENING_BALANCE * ACCOUNT_COUNT

        stop = threading.Event()
        ledgers = [Ledger() for _ in range(CLIENTS)]
        events: list[str] = []
        clients = [
            threading.Thread(target=run_client, args=(i, proxies, stop, ledgers[i]))
            for i in range(CLIENTS)
        ]
        for thread in clients:
            thread.start()
        try:
            run_chaos(pair, proxies, time.monotonic() + DURATION, events)
        finally:
            stop.set()
            for thread in clients:
                thread.join(60)
        assert not any(thread.is_alive() for thread in clients), "a client is stuck"

        for instance in pair.instances:
            if not instance.is_running():
                instance.start()
        for proxy in proxies:
            if not proxy.is_running():
                proxy.start()
        wait_until(lambda: not prepared_everywhere(pair, db), 60, "recovery to finish")

        acknowledged = [t for ledger in ledgers for t in ledger.acknowledged]
        uncertain = [t for ledger in ledgers for t in ledger.uncertain]
        errors = sum((ledger.errors for ledger in ledgers), Counter())
        summary = (
            f"{len(acknowledged)} acknowledged, {len(uncertain)} uncertain, "
            f"{sum(ledger.failed for ledger in ledgers)} rolled back; errors {dict(errors)}; "
            f"chaos: {events}"
        )
        print(summary)
        balances = dict(table_rows(pair, db, "accounts", "id, balance"))
        transfers = table_rows(pair, db, "transfers", "id, src, dst, amount")

        assert sum(balances.values()) == total, summary
        committed = {row[0] for row in transfers}
        missing = [t for t in acknowledged if t[0] not in committed]
        assert missing == [], f"acknowledged transfers lost: {missing[:10]}; {summary}"
        expected = dict.fromkeys(range(1, ACCOUNT_COUNT + 1), OPENING_BALANCE)
        for _, src, dst, amount in transfers:
            expected[src] -= amount
            expected[dst] += amount
        assert balances == expected, f"a transfer was half applied; {summary}"
        unexplained = committed - {t[0] for t in acknowledged} - set(uncertain)
        assert unexplained == set(), f"transfers nobody committed: {sorted(unexplained)[:10]}"
        assert any("proxy" in e for e in events) and any("backend" in e for e in events)
        assert len(acknowledged) >= 100, summary
    finally:
        started.stop_all()

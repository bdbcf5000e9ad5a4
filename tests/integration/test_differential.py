"""Differential test: every SELECT through the proxy answers as one MariaDB holding the same
rows would, or is refused with 1235. A wrong answer fails the test.

The same generated rows go into a reference database on a plain MariaDB and, through the
proxy, into 2 backends x 2 physical tables per sharded table (diff_data.CONFIG). The corpus
(diff_corpus.py) covers the shapes cross-shard reads must get right; a seeded generator adds
random queries. Refusals are allowed, counted and listed in the report printed at the end.
"""

from __future__ import annotations

import collections
import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import mysql.connector
import pymysql
import pytest
from diff_corpus import CORPUS, REFUSED, WIDE, random_queries
from diff_data import CONFIG, SCHEMA, Query, generate, load, same_result

if TYPE_CHECKING:
    from conftest import Cluster, ProxyFactory, ProxyProcess
    from mariadb_instances import MariaDBInstance

REFERENCE_DB = "diff_reference"


@dataclass
class Setup:
    proxy: ProxyProcess
    reference_server: MariaDBInstance
    reference: pymysql.Connection
    client: pymysql.Connection


@dataclass
class Report:
    passed: list[str] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)
    wrong: list[tuple[str, str]] = field(default_factory=list)

    def summary(self, title: str, seconds: float) -> str:
        lines = [
            f"{title}: {len(self.passed)} passed, {len(self.refused)} refused (1235), "
            f"{len(self.wrong)} wrong, in {seconds:.1f} s"
        ]
        lines += [f"  refused: {sql}\n      -> {why}" for sql, why in self.refused]
        lines += [f"  WRONG: {sql}\n      -> {why}" for sql, why in self.wrong]
        return "\n".join(lines)


@pytest.fixture(scope="module")
def setup(
    proxy_server: ProxyFactory, mariadb_cluster: Cluster, reference_server: MariaDBInstance
) -> Iterator[Setup]:
    from conftest import retarget_config

    for instance in mariadb_cluster.instances:
        for name in ("diff_0", "diff_1"):
            instance.execute(f"DROP DATABASE IF EXISTS {name}")
    reference_server.execute(f"DROP DATABASE IF EXISTS {REFERENCE_DB}")
    reference_server.execute(f"CREATE DATABASE {REFERENCE_DB}")
    proxy = proxy_server(retarget_config(CONFIG, mariadb_cluster), name="differential")
    data = generate()
    reference = reference_server.connect(REFERENCE_DB)
    client = proxy.connect(database="diff")
    for conn in (reference, client):
        with conn.cursor() as cursor:
            for ddl in SCHEMA:
                cursor.execute(ddl)
        load(conn, data)
    yield Setup(proxy, reference_server, reference, client)
    for conn in (reference, client):
        with contextlib.suppress(Exception):
            conn.close()


# Column types whose `decimals` means nothing: MariaDB sends 0 or 39 depending on the plan.
_STRING_TYPES = {15, 245, 247, 248, 249, 250, 251, 252, 253, 254}


def _run(conn: pymysql.Connection, sql: str) -> tuple[list[tuple], list[tuple[Any, ...]]]:
    """The result's columns (name, type, scale: what MySQL says about each) and rows."""
    with conn.cursor() as cursor:
        cursor.execute(sql)
        columns = [
            (d[0], d[1], None if d[1] in _STRING_TYPES else d[5]) for d in cursor.description or ()
        ]
        return columns, list(cursor.fetchall())


def check(setup: Setup, query: Query, report: Report, client: Any = None, run: Any = None) -> None:
    run = run or _run
    expected_names, expected = run(setup.reference, query.sql)
    try:
        names, got = run(client or setup.client, query.sql)
    except (pymysql.MySQLError, mysql.connector.Error) as error:
        code = getattr(error, "errno", None) or (error.args[0] if error.args else None)
        if code == 1235:
            report.refused.append((query.sql, str(error)))
            return
        report.wrong.append((query.sql, f"error {error}"))
        return
    problem = same_result(query, expected, got)
    if problem is None and names != expected_names:
        problem = f"columns {names} instead of {expected_names}"
    if problem is None:
        report.passed.append(query.sql)
    else:
        report.wrong.append((query.sql, problem))


def test_corpus(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    """At least 200 SELECTs of every cross-shard shape: none may be answered wrongly."""
    report = Report()
    started = time.monotonic()
    for query in CORPUS:
        check(setup, query, report)
    with capsys.disabled():
        print("\n" + report.summary("differential corpus", time.monotonic() - started))
    assert not report.wrong, report.summary("differential corpus", 0)
    assert len(CORPUS) >= 200


def test_random_queries(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    """Seeded random SELECTs over the same data: none may be answered wrongly."""
    report = Report()
    started = time.monotonic()
    for query in random_queries(seed=7, count=400):
        check(setup, query, report)
    with capsys.disabled():
        print("\n" + report.summary("random queries", time.monotonic() - started))
    assert not report.wrong, report.summary("random queries", 0)


def test_corpus_inside_a_transaction(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    """In a transaction each backend has one pinned connection, so the units of one backend
    take turns (a unit still needed is read ahead): the answers must not change."""
    report = Report()
    started = time.monotonic()
    client = setup.proxy.connect(database="diff")
    try:
        with client.cursor() as cursor:
            cursor.execute("BEGIN")
        for query in CORPUS[::2]:
            check(setup, query, report, client)
        with client.cursor() as cursor:
            cursor.execute("COMMIT")
    finally:
        client.close()
    with capsys.disabled():
        print("\n" + report.summary("corpus in a transaction", time.monotonic() - started))
    assert not report.wrong, report.summary("corpus in a transaction", 0)


def _run_prepared(conn: Any, sql: str) -> tuple[list[tuple], list[tuple[Any, ...]]]:
    """Through the binary protocol: a server-side prepared statement, executed once."""
    cursor = conn.cursor(prepared=True)
    try:
        cursor.execute(sql)
        columns = [(d[0], d[1]) for d in cursor.description or ()]
        rows = [
            tuple(v.decode() if isinstance(v, bytearray | bytes) else v for v in row)
            for row in cursor.fetchall()
        ]
        return columns, rows
    finally:
        cursor.close()


def test_prepared_statements(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    """Binary-protocol results are merged too (rows decoded and encoded in that protocol)."""
    options = {"use_pure": True, "autocommit": True, "charset": "utf8mb4"}
    client = mysql.connector.connect(
        host=setup.proxy.host, port=setup.proxy.port, user="app", password="app",
        database="diff", **options,
    )  # fmt: skip
    server = setup.reference_server
    reference = mysql.connector.connect(
        host=server.host, port=server.port, user="root", password="",
        database=REFERENCE_DB, **options,
    )  # fmt: skip
    report = Report()
    started = time.monotonic()
    prepared = Setup(setup.proxy, server, reference, client)
    try:
        for query in CORPUS[1::3] + WIDE:
            check(prepared, query, report, client, _run_prepared)
    finally:
        client.close()
        reference.close()
    with capsys.disabled():
        print("\n" + report.summary("prepared statements", time.monotonic() - started))
    assert not report.wrong, report.summary("prepared statements", 0)


def test_refused_shapes_are_refused(setup: Setup) -> None:
    """The corpus's inexact shapes get 1235 with a message naming what is not supported."""
    for query in REFUSED:
        with pytest.raises(pymysql.MySQLError) as error:
            _run(setup.client, query.sql)
        code, message = error.value.args[0], error.value.args[1]
        assert code == 1235, (query.sql, message)
        assert "doesn't yet support" in message


def test_memory_cap_ends_an_oversized_merge_cleanly(setup: Setup) -> None:
    """Grouping 7200 groups across shards holds them all: over limits.max_merge_rows (5000)
    the statement ends with 1104 and the session goes on. A merge sort over the same rows
    holds one row per shard, so it is not limited."""
    big = (
        "SELECT o.amount, k.code, COUNT(*) FROM orders o JOIN countries k ON 1 = 1 "
        "GROUP BY o.amount, k.code"
    )
    with pytest.raises(pymysql.MySQLError) as error:
        _run(setup.client, big)
    assert error.value.args[0] == 1104
    assert "limits.max_merge_rows" in error.value.args[1]
    sorted_rows = (
        "SELECT o.id, k.code FROM orders o JOIN countries k ON 1 = 1 ORDER BY o.id, k.code"
    )
    _, rows = _run(setup.client, sorted_rows)
    assert len(rows) == 900 * 8
    assert _run(setup.client, "SELECT COUNT(*) FROM customers")[1] == [(240,)]
    # A DISTINCT of those rows (6824 distinct): the shards sort by the select list, so the merge
    # compares neighbours and holds nothing (it used to keep every row seen, and end in 1104).
    distinct = "SELECT DISTINCT o.amount, k.code FROM orders o JOIN countries k ON 1 = 1"
    _, rows = _run(setup.client, distinct)
    reference = setup.reference_server.connect(REFERENCE_DB)
    try:
        _, expected = _run(reference, distinct)
    finally:
        reference.close()
    assert len(rows) > 5000 and collections.Counter(rows) == collections.Counter(expected)


def test_session_variables_shape_merged_values(setup: Setup) -> None:
    """group_concat_max_len cuts merged GROUP_CONCATs and div_precision_increment sets the scale
    of merged AVG and divisions, as the session set them."""
    client = setup.proxy.connect(database="diff")
    reference = setup.reference_server.connect(REFERENCE_DB)
    queries = [
        Query("SELECT tier, AVG(age), SUM(balance) / COUNT(*) FROM customers GROUP BY tier", True),
        Query("SELECT AVG(amount) * 3, AVG(qty) FROM orders"),
    ]
    try:
        for conn in (client, reference):
            with conn.cursor() as cursor:
                cursor.execute("SET div_precision_increment = 7, group_concat_max_len = 25")
        for query in queries:
            _, expected = _run(reference, query.sql)
            _, got = _run(client, query.sql)
            assert same_result(query, expected, got) is None, (query.sql, expected, got)
        # GROUP_CONCAT parts come in any order, so the cut falls anywhere: check its length,
        # never more than the limit, and never more than a character short of it.
        for sql in (
            "SELECT tier, GROUP_CONCAT(name) FROM customers GROUP BY tier",
            "SELECT GROUP_CONCAT(note SEPARATOR '🎁') FROM orders",
        ):
            for conn in (reference, client):
                for row in _run(conn, sql)[1]:
                    size = len(row[-1].encode())
                    assert 25 - 3 <= size <= 25, (sql, row)
    finally:
        client.close()
        reference.close()


def test_bit_aggregates_are_exact_or_refused(setup: Setup) -> None:
    """MariaDB sends MAX() of a BIT column as its bytes or as its decimal text, by plan
    (b'\\xff' or b'255'): `MAX(b) + 0` was merged as 3290421 (the bytes of '255')."""
    rows = [(i, [9, 64, 255, 0, None][i % 5], i % 3) for i in range(1, 41)]
    for conn in (setup.reference, setup.client):
        with conn.cursor() as cursor:
            cursor.execute("DROP TABLE IF EXISTS flags")
            cursor.execute("CREATE TABLE flags (id INT PRIMARY KEY, b BIT(8), k INT)")
            cursor.executemany("INSERT INTO flags VALUES (%s, %s, %s)", rows)
    for sql in (
        "SELECT MAX(b) + 0, MIN(b) + 0 FROM flags",
        "SELECT COUNT(*) FROM flags HAVING MAX(b) > 1000",
        "SELECT k, MAX(b), MIN(b) FROM flags GROUP BY k",
    ):
        expected = _run(setup.reference, sql)
        try:
            got = _run(setup.client, sql)
        except pymysql.MySQLError as error:
            assert error.args[0] == 1235, (sql, error)
            continue
        assert got == expected, sql

"""Differential test: every SELECT through the proxy answers as one MariaDB holding the same
rows would, or is refused with 1235. A wrong answer fails the test.

The same generated rows go into a reference database on a plain MariaDB and, through the
proxy, into 2 backends x 2 physical tables per sharded table (diff_data.CONFIG). The corpus
(diff_corpus.py) covers the shapes cross-shard reads must get right; a seeded generator adds
random queries. Refusals are allowed, counted and listed in the report printed at the end.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pymysql
import pytest
from diff_corpus import CORPUS, random_queries
from diff_data import CONFIG, SCHEMA, Query, generate, load, same_result

if TYPE_CHECKING:
    from conftest import Cluster, ProxyFactory, ProxyProcess
    from mariadb_instances import MariaDBInstance

REFERENCE_DB = "diff_reference"


@dataclass
class Setup:
    proxy: ProxyProcess
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
    yield Setup(proxy, reference, client)
    for conn in (reference, client):
        with contextlib.suppress(Exception):
            conn.close()


def _run(conn: pymysql.Connection, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    with conn.cursor() as cursor:
        cursor.execute(sql)
        names = [d[0] for d in cursor.description or ()]
        return names, list(cursor.fetchall())


def check(setup: Setup, query: Query, report: Report) -> None:
    expected_names, expected = _run(setup.reference, query.sql)
    try:
        names, got = _run(setup.client, query.sql)
    except pymysql.MySQLError as error:
        code = error.args[0] if error.args else None
        if code == 1235:
            report.refused.append((query.sql, str(error.args[1])))
            return
        report.wrong.append((query.sql, f"error {error.args}"))
        return
    problem = same_result(query, expected, got)
    if problem is None and names != expected_names:
        problem = f"column names {names} instead of {expected_names}"
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

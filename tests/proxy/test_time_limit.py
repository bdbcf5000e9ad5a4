"""MySQL's max_execution_time on backends: which limit applies, and the SQL each backend gets."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from proxy.executor import time_limit, with_time_limit
from router.plan import Unit


@pytest.mark.parametrize(
    ("statement", "session", "expected"),
    [
        ("SELECT 1", 0, 0),
        ("SELECT 1", 250, 250),
        ("SELECT /*+ MAX_EXECUTION_TIME(100) */ 1", 0, 100),
        ("SELECT /*+ BKA(t) max_execution_time ( 5 ) */ 1", 900, 5),  # the hint wins
        ("SELECT /* MAX_EXECUTION_TIME(100) */ 1", 0, 0),  # a plain comment is no hint
    ],
)
def test_time_limit(statement: str, session: int, expected: int) -> None:
    assert time_limit(statement, session) == expected


class FakeConn:
    def __init__(self, version: str):
        self.server_version = version


def sent_sql(version: str, sql: str, milliseconds: int) -> str:
    seen: list[Any] = []

    async def send(conn: Any, unit: Unit) -> None:
        seen.append(unit)

    asyncio.run(with_time_limit(send, milliseconds)(FakeConn(version), Unit("ds0", sql)))
    (unit,) = seen
    assert unit.backend == "ds0"
    return unit.sql


def test_mariadb_backends_get_max_statement_time_for_the_statement() -> None:
    assert (
        sent_sql("10.11.19-MariaDB-0+deb12u1", "SELECT k FROM t_0 WHERE k = /*?0*/?", 1500)
        == "SET STATEMENT max_statement_time=1.500 FOR SELECT k FROM t_0 WHERE k = /*?0*/?"
    )


def test_mysql_backends_get_the_optimizer_hint() -> None:
    assert (
        sent_sql("8.0.36", "(SELECT k FROM t_0) UNION ALL (SELECT k FROM t_1)", 20)
        == "(SELECT /*+ MAX_EXECUTION_TIME(20) */ k FROM t_0) UNION ALL (SELECT k FROM t_1)"
    )

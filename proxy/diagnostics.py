"""The session's diagnostics area: what SHOW WARNINGS / SHOW ERRORS and @@warning_count show.

A pooled backend connection serves other sessions between statements, so asking a backend
later would show someone else's warnings. The proxy keeps each session's own: when a
statement's answer (OK or EOF packet) reports warnings, the connections that ran it are asked
for SHOW WARNINGS before they go back to the pool; an answer without warnings costs nothing.
An error is recorded as MariaDB records it: the only condition, of level Error.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from proxy.backend import BackendConnection
from router.plan import QueryPlan, Route

_FROM = re.compile(r"\bFROM\b", re.IGNORECASE)


@dataclass(frozen=True)
class Condition:
    """One row of SHOW WARNINGS."""

    level: str  # Note | Warning | Error
    code: int
    message: str


@dataclass
class Diagnostics:
    """The conditions of the session's last statement that had any, as MariaDB keeps them."""

    conditions: list[Condition] = field(default_factory=list)
    # @@warning_count: the count the statement's answer reported, which may exceed the rows
    # kept (a backend lists at most max_error_count; see docs/decisions.md).
    count: int = 0

    @property
    def errors(self) -> int:
        """@@error_count."""
        return sum(1 for c in self.conditions if c.level == "Error")

    def replace(self, conditions: list[Condition], count: int) -> None:
        """The conditions of a statement whose answer reported `count` warnings (each copy of
        a broadcast table lists the same ones: the first `count` are kept)."""
        self.conditions = conditions[:count]
        self.count = count

    def error(self, code: int, message: str) -> None:
        self.replace([Condition("Error", code, message)], 1)

    def clear(self) -> None:
        self.conditions = []
        self.count = 0


async def fetch_conditions(conn: BackendConnection) -> list[Condition]:
    """The warnings of the last statement `conn` ran (physical names as the backend wrote)."""
    rows = await conn.query("SHOW WARNINGS")
    return [Condition(str(level), int(code or 0), str(message)) for level, code, message in rows]


async def fetch_all(conns: Iterable[BackendConnection]) -> list[Condition]:
    """The warnings of a statement that ran on several connections, in connection order."""
    results = await asyncio.gather(*(fetch_conditions(c) for c in dict.fromkeys(conns)))
    return [condition for found in results for condition in found]


def clears(plan: QueryPlan) -> bool:
    """Whether a statement with no warnings empties the diagnostics area.

    MariaDB clears it for statements that use tables; a table-less SELECT (SELECT
    @@warning_count, SELECT FOUND_ROWS()) keeps the previous statement's warnings. Table-less
    statements are routed unsharded and have no FROM."""
    if plan.is_write or plan.implicit_commit or plan.route is not Route.UNSHARDED:
        return True
    return any(_FROM.search(unit.sql) for unit in plan.units)

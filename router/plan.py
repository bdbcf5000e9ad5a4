"""Plans: what the router decided, as small frozen dataclasses that print as EXPLAIN text.

`router` builds these; `proxy` runs them and knows nothing about SQL analysis.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Route(Enum):
    """How a statement was routed, for EXPLAIN and metrics."""

    SINGLE = "single"  # exactly one data node, chosen by the shard key
    MULTI = "multi"  # several data nodes chosen by the shard key
    SCATTER = "scatter"  # every data node: no usable shard-key predicate
    BROADCAST = "broadcast"  # a broadcast table: read from one copy, written to all
    UNSHARDED = "unsharded"  # single tables or no table: one backend, passed through whole


@dataclass(frozen=True)
class Unit:
    """One physical statement for one backend."""

    backend: str
    sql: str

    def __str__(self) -> str:
        return f"{self.backend}: {self.sql}"


@dataclass(frozen=True)
class Concat:
    """Results of all units, one after another, with the first unit's columns."""

    def __str__(self) -> str:
        return "Concat"


Merge = Concat


@dataclass(frozen=True)
class QueryPlan:
    """A statement that runs on backends."""

    units: tuple[Unit, ...]
    route: Route
    is_write: bool = False
    # DDL commits an open transaction first, as MySQL does.
    implicit_commit: bool = False
    merge: Merge = Concat()

    def __str__(self) -> str:
        kind = "write" if self.is_write else "read"
        lines = [f"{self.route.value} {kind}, {len(self.units)} unit(s), merge: {self.merge}"]
        lines += [f"  {unit}" for unit in self.units]
        return "\n".join(lines)


@dataclass(frozen=True)
class UsePlan:
    """USE db: switch the session's logical database."""

    database: str


@dataclass(frozen=True)
class SetVar:
    """One assignment of a SET statement.

    name is lower case; 'names' and 'character set' stand for SET NAMES / SET CHARACTER SET,
    '@x' for a user variable. value_sql is the value as SQL text to replay on a backend.
    """

    name: str
    value_sql: str


@dataclass(frozen=True)
class SetPlan:
    """SET of session or user variables: the proxy records them and replays them on every
    backend connection the session uses; autocommit is the proxy's own."""

    assignments: tuple[SetVar, ...]


class TxnAction(Enum):
    BEGIN = "begin"
    COMMIT = "commit"
    ROLLBACK = "rollback"


@dataclass(frozen=True)
class TransactionPlan:
    action: TxnAction


class ShowWhat(Enum):
    DATABASES = "databases"
    TABLES = "tables"


@dataclass(frozen=True)
class ShowPlan:
    """SHOW answered by the proxy from the config, with logical names."""

    what: ShowWhat
    full: bool = False
    like: str | None = None  # LIKE pattern, MySQL wildcards
    database: str | None = None  # SHOW TABLES FROM db; None: the session's database


Plan = QueryPlan | UsePlan | SetPlan | TransactionPlan | ShowPlan

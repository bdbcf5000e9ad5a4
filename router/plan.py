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


# --- merging rows of several units (a Vitess-like tree of primitives) -----------------------
#
# Columns are numbered in the rows the units return: the client's select list first, then the
# hidden columns the planner appended (sort keys that were not selected, WEIGHT_STRING() of
# string keys, the SUM and COUNT behind an AVG...). A negative number counts from the end, for
# statements whose width is known only at run time (`SELECT *, ...`).


def _col(index: int) -> str:
    return f"#{index}"


@dataclass(frozen=True)
class Param:
    """The value of literal slot `slot` of the statement; replaced by a Lit when bound."""

    slot: int
    negate: bool = False

    def __str__(self) -> str:
        return f"{'-' if self.negate else ''}:{self.slot}"


@dataclass(frozen=True)
class Lit:
    """A constant: int, Decimal, float, str or None (NULL)."""

    value: object

    def __str__(self) -> str:
        return "NULL" if self.value is None else repr(self.value)


@dataclass(frozen=True)
class Col:
    """The value of a (merged) column."""

    index: int

    def __str__(self) -> str:
        return _col(self.index)


@dataclass(frozen=True)
class Op:
    """An operator or function over values, with MySQL semantics (router.values)."""

    name: str  # '+', '-', '*', '/', 'DIV', '%', 'NEG', '=', '<=>', '<', ..., 'AND', 'IFNULL'...
    args: tuple[Expr, ...]

    def __str__(self) -> str:
        if len(self.args) == 2 and not self.name.isalpha():
            return f"({self.args[0]} {self.name} {self.args[1]})"
        if self.name in ("AND", "OR", "XOR") and len(self.args) == 2:
            return f"({self.args[0]} {self.name} {self.args[1]})"
        return f"{self.name}({', '.join(str(a) for a in self.args)})"


Expr = Param | Lit | Col | Op


@dataclass(frozen=True)
class Key:
    """A value compared as MySQL compares it: a string by `weight` (its WEIGHT_STRING()) under
    the PAD rules of `collation` (its COLLATION()), anything else by the value itself."""

    column: int
    weight: int | None = None
    collation: int | None = None

    def __str__(self) -> str:
        text = _col(self.column)
        if self.weight is not None:
            text += f" ws {_col(self.weight)}"
        if self.collation is not None:
            text += f" coll {_col(self.collation)}"
        return text


@dataclass(frozen=True)
class SortKey:
    key: Key
    desc: bool = False

    def __str__(self) -> str:
        return f"{self.key}{' DESC' if self.desc else ''}"


# Aggregate rules: how a column's values from several rows of one group become one value.
# Columns without a rule keep the group's first row's value.


@dataclass(frozen=True)
class Sum:
    """SUM of partial sums (NULLs skipped; NULL if all are)."""

    def __str__(self) -> str:
        return "SUM"


@dataclass(frozen=True)
class Count:
    """Sum of partial counts (0 if there are none)."""

    def __str__(self) -> str:
        return "COUNT"


@dataclass(frozen=True)
class MinMax:
    """MIN or MAX of partial minima or maxima, compared as `key` (this column and its weight)."""

    key: Key
    is_max: bool

    def __str__(self) -> str:
        return f"{'MAX' if self.is_max else 'MIN'}({self.key})"


@dataclass(frozen=True)
class BitAgg:
    """BIT_AND / BIT_OR / BIT_XOR of partial results."""

    op: str  # 'AND', 'OR', 'XOR'

    def __str__(self) -> str:
        return f"BIT_{self.op}"


@dataclass(frozen=True)
class GroupConcat:
    """Partial GROUP_CONCAT strings joined by the separator, cut at group_concat_max_len
    (whose value the units return in column `max_len`)."""

    separator: Param | Lit
    max_len: int

    def __str__(self) -> str:
        return f"GROUP_CONCAT(SEPARATOR {self.separator}, max_len {_col(self.max_len)})"


@dataclass(frozen=True)
class CountDistinct:
    """COUNT(DISTINCT ...): the units group by the arguments too; count distinct non-NULL
    argument tuples across the group's rows."""

    keys: tuple[Key, ...]

    def __str__(self) -> str:
        return f"COUNT(DISTINCT {', '.join(str(k) for k in self.keys)})"


@dataclass(frozen=True)
class Computed:
    """A value computed from the group's merged columns once the group is complete."""

    expr: Expr

    def __str__(self) -> str:
        return f"= {self.expr}"


Rule = Sum | Count | MinMax | BitAgg | GroupConcat | CountDistinct | Computed


@dataclass(frozen=True)
class MergeSort:
    """Leaf: a k-way merge of the units' rows, each unit already sorted by `keys`."""

    keys: tuple[SortKey, ...]

    def __str__(self) -> str:
        return f"MergeSort({', '.join(str(k) for k in self.keys)})"


@dataclass(frozen=True)
class Aggregate:
    """One row per group of `group` keys, columns merged by their rules.

    `scalar`: no GROUP BY, so exactly one row comes out even when no rows come in.
    """

    source: Merge
    group: tuple[Key, ...]
    rules: tuple[tuple[int, Rule], ...]
    scalar: bool = False

    def __str__(self) -> str:
        group = ", ".join(str(k) for k in self.group) if self.group else "()"
        rules = ", ".join(f"{_col(i)} {rule}" for i, rule in self.rules)
        return _tree(f"Aggregate(group {group}; {rules})", self.source)


@dataclass(frozen=True)
class Filter:
    """HAVING evaluated on merged groups: rows where `condition` is true."""

    source: Merge
    condition: Expr

    def __str__(self) -> str:
        return _tree(f"Filter({self.condition})", self.source)


@dataclass(frozen=True)
class Sort:
    """Sort all rows in the proxy (after grouping)."""

    source: Merge
    keys: tuple[SortKey, ...]

    def __str__(self) -> str:
        return _tree(f"Sort({', '.join(str(k) for k in self.keys)})", self.source)


@dataclass(frozen=True)
class Distinct:
    """The first row of each distinct value of `keys`, in input order."""

    source: Merge
    keys: tuple[Key, ...]

    def __str__(self) -> str:
        return _tree(f"Distinct({', '.join(str(k) for k in self.keys)})", self.source)


@dataclass(frozen=True)
class Limit:
    source: Merge
    offset: int | Param
    count: int | Param

    def __str__(self) -> str:
        return _tree(f"Limit(offset {self.offset}, count {self.count})", self.source)


@dataclass(frozen=True)
class Project:
    """Drop the `hidden` columns at the end of each row: the client sees the rest."""

    source: Merge
    hidden: int

    def __str__(self) -> str:
        return _tree(f"Project(hide last {self.hidden})", self.source)


def _tree(head: str, source: object) -> str:
    return head + "\n" + "\n".join("  " + line for line in str(source).splitlines())


Merge = Concat | MergeSort | Aggregate | Filter | Sort | Distinct | Limit | Project


@dataclass(frozen=True)
class Note:
    """A note (SHOW WARNINGS level Note) the router adds to a statement it still runs, such as
    MySQL's for the unknown tables of DROP TABLE IF EXISTS."""

    code: int
    message: str

    def __str__(self) -> str:
        return f"note {self.code}: {self.message}"


@dataclass(frozen=True)
class QueryPlan:
    """A statement that runs on backends (on none when notes are all it answers)."""

    units: tuple[Unit, ...]
    route: Route
    is_write: bool = False
    # DDL commits an open transaction first, as MySQL does.
    implicit_commit: bool = False
    merge: Merge = Concat()
    # Keys generated for an INSERT that left out its table's generated key column, one per row
    # in statement order; the first is the statement's LAST_INSERT_ID().
    generated_ids: tuple[int, ...] = ()
    # Conditions the statement reports besides the backends' own.
    notes: tuple[Note, ...] = ()
    # A read of no table (SELECT 1, SELECT @@x): with autocommit off, it starts no transaction.
    tableless: bool = False

    def __str__(self) -> str:
        kind = "write" if self.is_write else "read"
        head = f"{self.route.value} {kind}, {len(self.units)} unit(s), merge: "
        merge = str(self.merge).splitlines()
        lines = [head + merge[0], *("  " + line for line in merge[1:])]
        if self.generated_ids:
            lines.append(f"  generated keys: {', '.join(map(str, self.generated_ids))}")
        lines += [f"  {note}" for note in self.notes]
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
    # START TRANSACTION READ ONLY / READ WRITE: the access mode of this transaction only.
    access: str | None = None
    # COMMIT / ROLLBACK AND CHAIN: a new transaction with the same characteristics follows.
    chain: bool = False


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


@dataclass(frozen=True)
class MetadataPlan:
    """A metadata statement (router/metadata.py): `unit`'s result with logical names only.

    The proxy rewrites every physical and catalog name in the result's values and column
    metadata. `catalog`: the unit reads the catalog schemas, which must be in step first;
    `stats`: row counts and sizes of this logical database's tables, summed over their data
    nodes, replace the catalog's (SHOW TABLE STATUS); `fallback`: the answer from the config
    when the catalog can't be reached.
    """

    unit: Unit
    databases: tuple[str, ...] = ()  # logical databases it describes (access check)
    catalog: bool = False
    stats: str | None = None
    fallback: ShowPlan | None = None

    def __str__(self) -> str:
        source = "catalog" if self.catalog else "first data node"
        return f"metadata from {source}\n  {self.unit}"


@dataclass(frozen=True)
class ProxyShow:
    """SHOW PROCESSLIST / SHOW GRANTS: the proxy's own sessions and account, not a backend's."""

    what: str  # 'processlist' | 'grants'
    full: bool = False


@dataclass(frozen=True)
class TableLocks:
    """LOCK TABLES / UNLOCK TABLES: accepted (dump tools send them) but no lock is taken;
    see docs/decisions.md."""

    tables: tuple[str, ...]  # the logical tables named; empty for UNLOCK TABLES


class AdminWhat(Enum):
    BACKENDS = "backends"
    RULES = "rules"
    SESSIONS = "sessions"
    TRANSACTIONS = "transactions"  # XA branches prepared on the backends (in doubt)


@dataclass(frozen=True)
class AdminShow:
    """SHOW SHARDPROXY BACKENDS | RULES | SESSIONS | TRANSACTIONS: the proxy's own state."""

    what: AdminWhat


@dataclass(frozen=True)
class ExplainShards:
    """EXPLAIN SHARDS <statement>: the plan of the statement, shown instead of run."""

    plan: object  # a Plan; typed loosely because Plan is defined below


@dataclass(frozen=True)
class ReloadConfig:
    """RELOAD SHARDPROXY CONFIG: read the config file again, as SIGHUP does."""


ADMIN_PLANS = (AdminShow, ExplainShards, ReloadConfig)


@dataclass(frozen=True)
class DiagnosticsPlan:
    """SHOW WARNINGS / SHOW ERRORS [LIMIT] / SHOW COUNT(*) WARNINGS|ERRORS: the session's own
    record of its last statement's conditions (a backend connection has another session's)."""

    errors: bool  # SHOW ERRORS: only conditions of level Error
    count: bool  # SHOW COUNT(*) ...: the number, as @@session.warning_count / error_count
    offset: int = 0
    limit: int | None = None


@dataclass(frozen=True)
class KillPlan:
    """KILL [QUERY] id: stop another session's statement, or the session itself."""

    connection_id: int
    query_only: bool


Plan = (
    QueryPlan
    | UsePlan
    | SetPlan
    | TransactionPlan
    | ShowPlan
    | MetadataPlan
    | ProxyShow
    | TableLocks
    | AdminShow
    | ExplainShards
    | ReloadConfig
    | KillPlan
    | DiagnosticsPlan
)

METADATA_PLANS = (MetadataPlan, ProxyShow, TableLocks)

"""Analysis of a parsed statement: which logical tables it uses, in which scopes, and what its
WHERE clause says about their shard keys.

Runs on a cache miss only, so clarity wins over speed here. Nothing in the result depends on
literal values: literals are referred to by slot, which is what lets a plan be reused.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from types import MappingProxyType

from sqlglot import exp

from router.config import Config, Database, Table, TableKind
from router.errors import NoDatabaseSelected, NotSupported, UnknownDatabase, UnknownTable
from router.predicates import AllOf, AnyOf, Between, Condition, Const, Equals, Slot, Source

SYSTEM_SCHEMAS = frozenset({"information_schema", "mysql", "performance_schema", "sys"})
# The one system schema a session may USE: its tables are the proxy's logical metadata.
INFORMATION_SCHEMA = "information_schema"

# Nodes that open a name scope: tables and aliases inside one are visible to its columns.
_SCOPES = (exp.Select, exp.Update, exp.Delete, exp.Insert)
# Literal nodes whose text the tokenizer turned into one slot.
_LITERALS = (exp.Literal, exp.HexString, exp.BitString, exp.National, exp.Introducer, exp.Concat)
# `DATE '2024-01-01'` and friends: the key value is the string literal inside.
_TEMPORAL = frozenset(
    {
        exp.DataType.Type.DATE,
        exp.DataType.Type.DATETIME,
        exp.DataType.Type.TIMESTAMP,
        exp.DataType.Type.TIMESTAMPTZ,
        exp.DataType.Type.TIME,
    }
)
# Comparison -> (the left operand is the smaller one, inclusive).
_RANGE_OPS = MappingProxyType(
    {
        exp.GT: (False, False),
        exp.GTE: (False, True),
        exp.LT: (True, False),
        exp.LTE: (True, True),
    }
)


@dataclass(frozen=True)
class Session:
    """What planning needs to know about the client's session."""

    config: Config
    database: str | None

    @property
    def in_information_schema(self) -> bool:
        """After USE information_schema: unqualified table names are its tables."""
        return self.database is not None and self.database.lower() == INFORMATION_SCHEMA

    def schema(self) -> str | None:
        """What DATABASE() answers: the logical database, information_schema, or NULL."""
        if self.in_information_schema:
            return INFORMATION_SCHEMA
        current = self.current()
        return current.name if current is not None else None

    def current(self) -> Database | None:
        """The session's logical database (None in information_schema); UnknownDatabase if
        it left the config."""
        if self.database is None or self.in_information_schema:
            return None
        found = find_database(self.config, self.database)
        if found is None:
            raise UnknownDatabase(self.database)
        return found

    def default_backend(self) -> str:
        """Where statements without tables go: the session database's default backend."""
        current = self.current()
        if current is not None:
            return current.default_backend
        for database in self.config.databases.values():
            return database.default_backend
        raise NotSupported("statements without a configured database")


def find_database(config: Config, name: str) -> Database | None:
    """A logical database by name, matching case-insensitively if not exactly."""
    found = config.database(name)
    if found is not None:
        return found
    lower = name.lower()
    matches = [db for key, db in config.databases.items() if key.lower() == lower]
    return matches[0] if len(matches) == 1 else None


@dataclass(eq=False)
class TableUse:
    """One occurrence of a logical table in the statement."""

    node: exp.Table
    database: Database
    table: Table
    scope: exp.Expression | None
    alias: str | None  # lower case
    right_joined: bool = False  # its scope has a RIGHT or FULL join

    @property
    def sharded(self) -> bool:
        return self.table.kind is TableKind.SHARDED

    @property
    def label(self) -> str:
        return self.table.name


@dataclass
class Tables:
    """Everything the statement's FROM clauses (and DML targets) name."""

    uses: list[TableUse] = field(default_factory=list)
    system: list[exp.Table] = field(default_factory=list)  # information_schema & co
    references: list[exp.Table] = field(default_factory=list)  # DELETE t1, t2 FROM ... targets
    cte_refs: list[exp.Table] = field(default_factory=list)
    ctes: dict[str, exp.Expression] = field(default_factory=dict)  # name -> body
    # scope -> visible source name -> the table use, or None for a derived table / CTE alias
    names: dict[int, dict[str, TableUse | None]] = field(default_factory=dict)

    @property
    def sharded(self) -> list[TableUse]:
        return [use for use in self.uses if use.sharded]

    def use_named(self, node: exp.Expression, name: str) -> TableUse | None:
        """The table use that `name` (alias or table name) means where `node` stands."""
        scope = scope_of(node)
        while scope is not None:
            visible = self.names.get(id(scope), {})
            if name in visible:
                return visible[name]
            scope = scope_of(scope)
        return None

    def in_scope(self, scope: exp.Expression) -> list[TableUse]:
        return [use for use in self.uses if use.scope is scope]


def scope_of(node: exp.Expression) -> exp.Expression | None:
    """The nearest enclosing SELECT / UPDATE / DELETE / INSERT."""
    parent = node.parent
    while parent is not None and not isinstance(parent, _SCOPES):
        parent = parent.parent
    return parent


def collect_tables(
    tree: exp.Expression, session: Session, ignore: Iterable[exp.Table] = ()
) -> Tables:
    """Resolve every table the statement names against the config; raise on unknown ones.

    `ignore`: table nodes that name something else (DROP INDEX puts the index name in one).
    """
    found = Tables()
    for cte in tree.find_all(exp.CTE):
        found.ctes[cte.alias_or_name.lower()] = cte.this
    found.references = _delete_references(tree)
    skip = {id(node) for node in (*found.references, *ignore)}
    right_joined = {
        id(scope_of(join)) for join in tree.find_all(exp.Join) if join.side in ("RIGHT", "FULL")
    }
    for node in tree.find_all(exp.Table):
        if id(node) in skip:
            continue
        if not isinstance(node.this, exp.Identifier):
            raise NotSupported(f"table expression {node.sql(dialect='mysql')}")
        scope = scope_of(node)
        visible = found.names.setdefault(id(scope), {})
        name = node.name.lower()
        alias = node.alias.lower() if node.alias else None
        qualifier = node.args.get("db")
        if node.args.get("catalog") is not None:
            raise NotSupported(f"three-part table name {node.sql(dialect='mysql')}")
        if qualifier is None and name in found.ctes:
            found.cte_refs.append(node)
            visible[alias or name] = None
            continue
        if qualifier is None and name == "dual":
            continue
        if (qualifier is not None and qualifier.name.lower() in SYSTEM_SCHEMAS) or (
            qualifier is None and session.in_information_schema
        ):
            found.system.append(node)
            visible[alias or name] = None
            continue
        database = database_for(session, qualifier.name if qualifier is not None else None)
        table = database.tables.get(name)
        if table is None:
            raise UnknownTable(database.name, node.name)
        use = TableUse(node, database, table, scope, alias, id(scope) in right_joined)
        found.uses.append(use)
        visible[alias or name] = use
    for subquery in tree.find_all(exp.Subquery):
        if subquery.alias and isinstance(subquery.parent, exp.From | exp.Join):
            found.names.setdefault(id(scope_of(subquery)), {})[subquery.alias.lower()] = None
    return found


def database_for(session: Session, qualifier: str | None) -> Database:
    """The logical database a table name means: its qualifier's, else the session's."""
    if qualifier is None:
        current = session.current()
        if current is None:
            raise NoDatabaseSelected()
        return current
    database = find_database(session.config, qualifier)
    if database is None:
        raise UnknownDatabase(qualifier)
    return database


def lookup_table(session: Session, qualifier: str | None, name: str) -> Table:
    """A logical table by (optional database qualifier and) name; UnknownTable if none."""
    database = database_for(session, qualifier)
    table = database.tables.get(name.lower())
    if table is None:
        raise UnknownTable(database.name, name)
    return table


def _delete_references(tree: exp.Expression) -> list[exp.Table]:
    """Table nodes of a multi-table DELETE that only name targets (`DELETE a, b FROM ...`)."""
    if not isinstance(tree, exp.Delete):
        return []
    if tree.args.get("tables"):
        return list(tree.args["tables"])
    if tree.args.get("using"):
        return list(tree.this.find_all(exp.Table))
    return []


def top_scopes(tree: exp.Expression) -> list[exp.Expression]:
    """The scopes whose rows are the statement's result: the branches of a UNION, or the root."""
    if isinstance(tree, exp.SetOperation):
        return top_scopes(tree.this) + top_scopes(tree.expression)
    if isinstance(tree, exp.Subquery):
        return top_scopes(tree.this)
    return [tree]


def conjuncts(condition: exp.Expression | None) -> Iterator[exp.Expression]:
    """The top-level AND parts of a condition."""
    if condition is None:
        return
    condition = condition.unnest()
    if isinstance(condition, exp.And):
        yield from conjuncts(condition.this)
        yield from conjuncts(condition.expression)
    else:
        yield condition


def scope_conditions(scope: exp.Expression) -> Iterator[exp.Expression]:
    """The scope's WHERE conjuncts and its JOIN ... ON conjuncts."""
    where = scope.args.get("where")
    yield from conjuncts(where.this if where is not None else None)
    for join in scope.find_all(exp.Join):
        if scope_of(join) is scope:
            yield from conjuncts(join.args.get("on"))


def is_nullable(use: TableUse) -> bool:
    """Whether the table is on the NULL-extended side of an outer join.

    Its WHERE predicates then don't restrict the statement's rows (`WHERE b.key IS NULL` after
    `a LEFT JOIN b` finds rows of `a` on every shard). A RIGHT join makes every table of its
    scope count as nullable: simpler, and only costs narrowing.
    """
    node: exp.Expression | None = use.node
    while node is not None and node is not use.scope:
        if isinstance(node, exp.Join) and node.side in ("LEFT", "RIGHT", "FULL"):
            return True
        node = node.parent
    return use.right_joined


class KeyResolver:
    """Finds which sharded table use a column reference names, when it is that table's key."""

    def __init__(self, tables: Tables):
        self.tables = tables

    def key_use(self, node: exp.Expression) -> TableUse | None:
        if not isinstance(node, exp.Column) or isinstance(node.this, exp.Star):
            return None
        column = node.name.lower()
        if node.table:
            use = self.tables.use_named(node, node.table.lower())
            if use is None:
                return self._through_derived(node)
            candidates = [use]
        else:
            scope = scope_of(node)
            candidates = [u for u in self.tables.uses if u.scope is scope and u.sharded]
            candidates = [u for u in candidates if u.table.shard_key == column]
        if len(candidates) != 1:
            return None
        use = candidates[0]
        return use if use.sharded and use.table.shard_key == column else None

    def _through_derived(self, node: exp.Column) -> TableUse | None:
        """`d.k` where d is a derived table or CTE whose column k is a shard key of a table
        inside it (`(SELECT user_id, SUM(x) ... GROUP BY user_id) d`): that table's use."""
        name = node.table.lower()
        body = None
        scope = scope_of(node)
        while scope is not None and body is None:
            for subquery in scope.find_all(exp.Subquery):
                if (
                    scope_of(subquery) is scope
                    and isinstance(subquery.parent, exp.From | exp.Join)
                    and subquery.alias.lower() == name
                ):
                    body = subquery.this
            if body is None and name in self.tables.names.get(id(scope), {}):
                body = self.tables.ctes.get(name)
            scope = scope_of(scope)
        if not isinstance(body, exp.Select):
            return None
        for item in body.expressions:
            if item.alias_or_name.lower() != node.name.lower():
                continue
            target = item.this if isinstance(item, exp.Alias) else item
            use = self.key_use(target)
            return use if use is not None and not is_nullable(use) else None
        return None


def check_colocated(tables: Tables, tree: exp.Expression) -> None:
    """Refuse statements whose sharded tables can't be answered shard by shard.

    Several sharded tables work only when they are in one binding group and every occurrence is
    tied to the others by equality of shard keys (join conditions, correlated subqueries,
    `key IN (SELECT key ...)`): then matching rows always live on the same shard.
    """
    sharded = tables.sharded
    if len(sharded) < 2:
        return
    first = sharded[0]
    names = ", ".join(sorted({f"'{use.label}'" for use in sharded}))
    group = first.database.binding_group_of(first.table.name) or frozenset({first.table.name})
    for use in sharded:
        if use.database is not first.database or use.table.name not in group:
            raise NotSupported(f"joining sharded tables {names} that are not in one binding group")
        if len(use.table.nodes) != len(first.table.nodes):
            raise NotSupported(f"joining sharded tables {names} with different shard counts")
    parent = {id(use): id(use) for use in sharded}

    def root(key: int) -> int:
        while parent[key] != key:
            key = parent[key]
        return key

    def join(a: TableUse | None, b: TableUse | None) -> None:
        if a is not None and b is not None:
            parent[root(id(a))] = root(id(b))

    resolver = KeyResolver(tables)
    for scope in tree.find_all(*_SCOPES):
        for condition in scope_conditions(scope):
            if isinstance(condition, exp.EQ):
                join(resolver.key_use(condition.this), resolver.key_use(condition.expression))
            elif isinstance(condition, exp.In) and condition.args.get("query") is not None:
                inner = condition.args["query"].unnest()
                if isinstance(inner, exp.Select) and len(inner.expressions) == 1:
                    join(resolver.key_use(condition.this), resolver.key_use(inner.expressions[0]))
        for join_node in scope.find_all(exp.Join):
            if scope_of(join_node) is scope:
                for column in join_node.args.get("using") or ():
                    name = column.name.lower()
                    keyed = [u for u in tables.in_scope(scope) if u.table.shard_key == name]
                    for other in keyed[1:]:
                        join(keyed[0], other)
    # Branches of a UNION read their shards independently: only uses within one branch must
    # be tied together.
    branches: dict[int, set[int]] = {}
    tops = top_scopes(tree)
    for use in sharded:
        branch = _branch_of(use.node, tops)
        branches.setdefault(id(branch), set()).add(root(id(use)))
    if any(len(roots) > 1 for roots in branches.values()):
        raise NotSupported(f"joining sharded tables {names} other than on their shard keys")


def _branch_of(node: exp.Expression, tops: list[exp.Expression]) -> exp.Expression | None:
    """The top scope (UNION branch or the statement) a node belongs to."""
    ids = {id(top) for top in tops}
    current: exp.Expression | None = node
    while current is not None and id(current) not in ids:
        current = current.parent
    return current


def is_driven(tree: exp.Expression, tables: Tables) -> bool:
    """Whether every result row comes from a sharded table's row (so no shard duplicates it)."""
    if isinstance(tree, exp.SetOperation):
        return is_driven(tree.this, tables) and is_driven(tree.expression, tables)
    if isinstance(tree, exp.Subquery):
        return is_driven(tree.this, tables)
    if not isinstance(tree, _SCOPES):
        return False
    if any(use.sharded for use in tables.in_scope(tree)):
        return True
    for subquery in tree.find_all(exp.Subquery):
        derived = isinstance(subquery.parent, exp.From | exp.Join) and scope_of(subquery) is tree
        if derived and is_driven(subquery.this, tables):
            return True
    for ref in tables.cte_refs:
        body = tables.ctes.get(ref.name.lower())
        if scope_of(ref) is tree and body is not None and is_driven(body, tables):
            return True
    return False


class ValueReader:
    """Turns literal expressions into value sources: slots (found by text position) or NULL."""

    def __init__(self, text: str, slots: list[tuple[int, int]]):
        self.text = text
        self.slot_starts = {start: index for index, (start, _) in enumerate(slots)}

    def source(self, node: exp.Expression) -> Source | None:
        node = node.unnest()
        if isinstance(node, exp.Null):
            return Const(None)
        if isinstance(node, exp.Boolean):
            return Const(1 if node.this else 0)
        if isinstance(node, exp.Neg):
            inner = node.this.unnest()
            start = literal_start(inner) if isinstance(inner, _LITERALS) else None
            if start is not None and self.text[start - 1 : start] == "-":
                # A rendered parameter such as `-5` is one slot, sign included.
                index = self.slot_starts.get(start - 1)
                if index is not None:
                    return Slot(index)
            source = self.source(inner)
            return Slot(source.index, not source.negate) if isinstance(source, Slot) else None
        if isinstance(node, exp.Cast) and node.to.this in _TEMPORAL:
            return self.source(node.this)
        if isinstance(node, _LITERALS):
            start = literal_start(node)
            if start is not None and start in self.slot_starts:
                return Slot(self.slot_starts[start])
        return None

    def slot_of(self, node: exp.Expression) -> int | None:
        source = self.source(node)
        return source.index if isinstance(source, Slot) else None


def literal_start(node: exp.Expression) -> int | None:
    """Text offset where a literal node begins (adjacent strings: where the first begins)."""
    if isinstance(node, exp.Concat):
        parts = node.expressions
        if not parts or not all(isinstance(p, exp.Literal) and p.is_string for p in parts):
            return None
        node = parts[0]
    return node.meta.get("start")


class ConditionBuilder:
    """Builds the symbolic shard condition of one scope's WHERE clause."""

    def __init__(self, scope: exp.Expression, tables: Tables, values: ValueReader):
        self.values = values
        self.resolver = KeyResolver(tables)
        # Only keys of tables whose rows the scope's result can't do without narrow it.
        self.keyed = {
            id(use) for use in tables.in_scope(scope) if use.sharded and not is_nullable(use)
        }

    def is_key(self, node: exp.Expression) -> bool:
        use = self.resolver.key_use(node.unnest())
        return use is not None and id(use) in self.keyed

    def build(self, node: exp.Expression | None) -> Condition | None:
        if node is None:
            return None
        node = node.unnest()
        if isinstance(node, exp.And | exp.Or):
            parts = [self.build(node.this), self.build(node.expression)]
            if isinstance(node, exp.And):
                known = tuple(p for p in parts if p is not None)
                return None if not known else known[0] if len(known) == 1 else AllOf(known)
            if any(p is None for p in parts):
                return None
            return AnyOf(tuple(p for p in parts if p is not None))
        if isinstance(node, exp.EQ | exp.NullSafeEQ):
            return self._equals(node.this, node.expression) or self._equals(
                node.expression, node.this
            )
        if isinstance(node, exp.In) and node.args.get("query") is None and self.is_key(node.this):
            sources = [self.values.source(e) for e in node.expressions]
            if sources and all(s is not None for s in sources):
                return Equals(tuple(s for s in sources if s is not None))
            return None
        if isinstance(node, exp.Between) and self.is_key(node.this):
            low, high = self.values.source(node.args["low"]), self.values.source(node.args["high"])
            if low is not None and high is not None:
                return Between(low, high, True, True)
            return None
        if isinstance(node, exp.Is) and self.is_key(node.this):
            return Equals((Const(None),)) if isinstance(node.expression, exp.Null) else None
        op = _RANGE_OPS.get(type(node))
        if op is not None:
            return self._range(node, *op)
        return None

    def _equals(self, key: exp.Expression, value: exp.Expression) -> Condition | None:
        if not self.is_key(key):
            return None
        source = self.values.source(value)
        return Equals((source,)) if source is not None else None

    def _range(self, node: exp.Expression, left_smaller: bool, inclusive: bool) -> Condition | None:
        if self.is_key(node.this):  # key < v: v is the upper bound
            source, upper = self.values.source(node.expression), left_smaller
        elif self.is_key(node.expression):  # v < key: v is the lower bound
            source, upper = self.values.source(node.this), not left_smaller
        else:
            return None
        if source is None:
            return None
        if upper:
            return Between(None, source, False, inclusive)
        return Between(source, None, inclusive, False)


def shard_condition(tree: exp.Expression, tables: Tables, values: ValueReader) -> Condition | None:
    """The statement's shard condition: what its top scopes' WHERE clauses say about keys.

    Each branch of a UNION brings its own rows, so the statement needs the shards of any
    branch (a branch without a condition needs them all).
    """
    branches = []
    for scope in top_scopes(tree):
        if not any(use.sharded for use in tables.in_scope(scope)) and not _derived(scope):
            continue
        branches.append(_scope_condition(scope, tables, values))
    if not branches or any(branch is None for branch in branches):
        return None
    known = tuple(b for b in branches if b is not None)
    return known[0] if len(known) == 1 else AnyOf(known)


def _derived(scope: exp.Expression) -> list[exp.Select]:
    """Bodies of the derived tables a scope inner-joins: every row of the scope has one of
    their rows, so their conditions restrict the scope's shards too."""
    bodies = []
    for subquery in scope.find_all(exp.Subquery):
        parent = subquery.parent
        inner = isinstance(parent, exp.From) or (isinstance(parent, exp.Join) and not parent.side)
        if inner and scope_of(subquery) is scope and isinstance(subquery.this, exp.Select):
            bodies.append(subquery.this)
    return bodies


def _scope_condition(
    scope: exp.Expression, tables: Tables, values: ValueReader
) -> Condition | None:
    """What one scope's WHERE and inner-join conditions (and its derived tables') say about
    shard keys; None when they don't restrict the shards."""
    parts: list[Condition | None] = []
    if any(use.sharded for use in tables.in_scope(scope)):
        builder = ConditionBuilder(scope, tables, values)
        where = scope.args.get("where")
        if where is not None:
            parts.append(builder.build(where.this))
        for join in scope.find_all(exp.Join):
            if scope_of(join) is scope and not join.side:
                parts.append(builder.build(join.args.get("on")))
    for body in _derived(scope):
        parts.append(_scope_condition(body, tables, values))
    known = tuple(p for p in parts if p is not None)
    if not known:
        return None
    return known[0] if len(known) == 1 else AllOf(known)

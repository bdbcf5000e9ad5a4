"""Which parts of a statement stay within one shard: the checks that make running a read on
every shard and merging exact.

Every row of the result must come from exactly one shard (a row of a sharded table that is not
on the optional side of an outer join), and every subquery, derived table or CTE over sharded
rows must see all of its rows inside one shard: tied to an outer row's shard key, grouped by the
shard key, or free of grouping, DISTINCT, LIMIT and windows that span shards.
"""

from __future__ import annotations

from sqlglot import exp

from router.analyze import (
    KeyResolver,
    Tables,
    TableUse,
    conjuncts,
    is_nullable,
    scope_of,
    top_scopes,
)

# MySQL's aggregate functions, for those sqlglot reads as anonymous functions.
AGGREGATE_NAMES = frozenset(
    {
        "AVG",
        "BIT_AND",
        "BIT_OR",
        "BIT_XOR",
        "COUNT",
        "GROUP_CONCAT",
        "JSON_ARRAYAGG",
        "JSON_OBJECTAGG",
        "MAX",
        "MIN",
        "STD",
        "STDDEV",
        "STDDEV_POP",
        "STDDEV_SAMP",
        "SUM",
        "VARIANCE",
        "VAR_POP",
        "VAR_SAMP",
    }
)


def is_aggregate(node: exp.Expression) -> bool:
    if isinstance(node, exp.AggFunc):
        return True
    return isinstance(node, exp.Anonymous) and node.name.upper() in AGGREGATE_NAMES


def aggregates_in(node: exp.Expression) -> list[exp.Expression]:
    """The aggregate calls of this scope in `node`: not inside subqueries or window functions."""
    found = []
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, exp.Window | exp.Subquery | exp.Select) and current is not node:
            continue
        if is_aggregate(current) and not isinstance(current.parent, exp.Window):
            found.append(current)
            continue
        stack.extend(current.iter_expressions())
    return found


def windows_in(node: exp.Expression) -> list[exp.Window]:
    found = []
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, exp.Subquery | exp.Select) and current is not node:
            continue
        if isinstance(current, exp.Window):
            found.append(current)
        stack.extend(current.iter_expressions())
    return found


def key_uses(scope: exp.Expression, tables: Tables) -> list[TableUse]:
    """Sharded tables of a scope whose rows its result can't do without."""
    return [u for u in tables.in_scope(scope) if u.sharded and not is_nullable(u)]


def is_key_column(node: exp.Expression, tables: Tables, scope: exp.Expression) -> bool:
    """Whether `node` is the shard key column of a non-nullable sharded table of `scope`."""
    use = KeyResolver(tables).key_use(node.unnest())
    return use is not None and use.scope is scope and not is_nullable(use)


def _derived_bodies(scope: exp.Expression, tables: Tables) -> list[tuple[exp.Expression, bool]]:
    """(body, nullable) of each derived table and CTE reference in `scope`'s FROM."""
    bodies = []
    for subquery in scope.find_all(exp.Subquery):
        if isinstance(subquery.parent, exp.From | exp.Join) and scope_of(subquery) is scope:
            join = subquery.parent
            nullable = isinstance(join, exp.Join) and join.side in ("LEFT", "RIGHT", "FULL")
            bodies.append((subquery.this, nullable))
    for ref in tables.cte_refs:
        body = tables.ctes.get(ref.name.lower())
        if scope_of(ref) is scope and body is not None:
            join = ref.parent
            nullable = isinstance(join, exp.Join) and join.side in ("LEFT", "RIGHT", "FULL")
            bodies.append((body, nullable))
    return bodies


def reads_sharded(node: exp.Expression, tables: Tables) -> bool:
    """Whether a query's rows come from sharded tables (directly or through derived tables)."""
    if isinstance(node, exp.SetOperation):
        return reads_sharded(node.this, tables) or reads_sharded(node.expression, tables)
    if isinstance(node, exp.Subquery):
        return reads_sharded(node.this, tables)
    if not isinstance(node, exp.Select):
        return False
    if any(use.sharded for use in tables.in_scope(node)):
        return True
    return any(reads_sharded(body, tables) for body, _ in _derived_bodies(node, tables))


def driven(node: exp.Expression, tables: Tables) -> bool:
    """Whether every row of a query comes from a row of a sharded table that lives on exactly
    one shard (so running it on every shard neither duplicates nor invents rows)."""
    if isinstance(node, exp.SetOperation):
        return driven(node.this, tables) and driven(node.expression, tables)
    if isinstance(node, exp.Subquery):
        return driven(node.this, tables)
    if not isinstance(node, exp.Select):
        return False
    if key_uses(node, tables):
        return True
    return any(
        not nullable and driven(body, tables) for body, nullable in _derived_bodies(node, tables)
    )


def _pinned(scope: exp.Expression, tables: Tables) -> bool:
    """Whether a subquery is tied to one shard key value of an enclosing query's sharded table
    (`WHERE inner.key = outer.key`): then all its rows live on the outer row's shard."""
    resolver = KeyResolver(tables)
    where = scope.args.get("where")
    for condition in conjuncts(where.this if where is not None else None):
        if not isinstance(condition, exp.EQ):
            continue
        left = resolver.key_use(condition.this.unnest())
        right = resolver.key_use(condition.expression.unnest())
        if left is None or right is None:
            continue
        if left.scope is scope and _encloses(right.scope, scope):
            return True
        if right.scope is scope and _encloses(left.scope, scope):
            return True
    return False


def _encloses(outer: exp.Expression | None, scope: exp.Expression) -> bool:
    """Whether `outer` is a scope enclosing `scope` (not `scope` itself)."""
    current = scope_of(scope)
    while current is not None:
        if current is outer:
            return True
        current = scope_of(current)
    return False


def _predicate_context(scope: exp.Expression) -> bool:
    """Whether a subquery only tests membership (IN / EXISTS): duplicates don't matter."""
    parent = scope.parent
    while isinstance(parent, exp.Subquery | exp.Paren):
        parent = parent.parent
    return isinstance(parent, exp.In | exp.Exists) or (
        isinstance(scope.parent, exp.In) and scope.arg_key == "query"
    )


def check_scopes(tree: exp.Expression, tables: Tables) -> str | None:
    """Why some part of the statement would be wrong run shard by shard, or None.

    Every row of the result must come from exactly one shard, and every subquery, derived table
    and CTE over sharded tables must see all of its rows inside one shard.
    """
    tops = top_scopes(tree)
    for top in tops:
        if not driven(top, tables):
            if reads_sharded(top, tables):
                return (
                    "reading a sharded table on the optional side of an outer join "
                    "across several shards"
                )
            return "a subquery or UNION over a sharded table across several shards"
    top_ids = {id(top) for top in tops}
    for node in tree.find_all(exp.In):
        query = node.args.get("query")
        if query is not None and isinstance(node.parent, exp.Not) and reads_sharded(query, tables):
            return "NOT IN (subquery over a sharded table) across several shards"
    for scope in tree.find_all(exp.Select):
        if id(scope) in top_ids:
            continue
        if (
            isinstance(scope.parent, exp.SetOperation)
            and scope.parent.args.get("distinct") is not False
            and reads_sharded(scope, tables)
            and not _predicate_context(scope.parent)
        ):
            return "UNION (DISTINCT) of sharded rows inside a subquery across shards"
        if not reads_sharded(scope, tables):
            continue
        if _pinned(scope, tables):
            continue
        keyed = any(
            is_key_column(item, tables, scope)
            for item in (scope.args.get("group").expressions if scope.args.get("group") else [])
        )
        aggregated = scope.args.get("group") is not None or any(
            aggregates_in(item) for item in scope.expressions
        )
        having = scope.args.get("having")
        aggregated = aggregated or (having is not None and bool(aggregates_in(having)))
        if aggregated and not keyed:
            return "a subquery or derived table grouping sharded rows across several shards"
        if scope.args.get("limit") is not None:
            return "LIMIT in a subquery or derived table over sharded rows across several shards"
        if (
            scope.args.get("distinct") is not None
            and not keyed
            and not _predicate_context(scope)
            and not any(is_key_column(item, tables, scope) for item in scope.expressions)
        ):
            return "DISTINCT in a subquery or derived table over sharded rows across shards"
        for window in windows_in(scope):
            if not window_keyed(window, tables, scope):
                return "a window function not partitioned by the shard key across several shards"
    for cte in tree.find_all(exp.With):
        if cte.args.get("recursive"):
            return "WITH RECURSIVE over sharded tables across several shards"
    return None


def window_keyed(window: exp.Window, tables: Tables, scope: exp.Expression) -> bool:
    return any(is_key_column(item, tables, scope) for item in window.args.get("partition_by") or ())

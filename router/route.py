"""Routes: where a statement runs, decided once per statement shape and cached.

A route holds no literal values. `instantiate` is the cache-hit path: it evaluates the shard
condition (or each INSERT row's key) against this statement's literals, picks the data nodes and
fills the templates. Keep it lean: it runs for every statement.
"""

from __future__ import annotations

from dataclasses import dataclass

from router.algorithms import ShardAlgorithm
from router.config import DataNode, Table, TableKind
from router.errors import NotSupported
from router.plan import QueryPlan, Route, Unit
from router.predicates import UNKNOWN, Bindings, Condition, Source
from router.rewrite import render_name
from router.scatter import ScatterRead
from router.template import Template


@dataclass(frozen=True, slots=True)
class Target:
    """One place a unit can run: a backend and the physical name of each table slot there.

    `problem` says why the statement can't run there (a table with no copy on that backend);
    it is raised only if routing actually picks this target.
    """

    backend: str
    names: tuple[str, ...]
    problem: str | None = None


Refs = list[tuple[Table, bool]]  # table slot -> (logical table, written with backticks)


def copy_on(table: Table, backend: str) -> DataNode | None:
    """The node of a broadcast or single table on `backend`, if it has one there."""
    for node in table.nodes:
        if node.backend == backend:
            return node
    return None


def target_on_backend(backend: str, refs: Refs) -> Target:
    """A target for statements over broadcast and single tables only."""
    names = []
    problem = None
    for table, quoted in refs:
        node = copy_on(table, backend)
        if node is None:
            problem = problem or f"table '{table.name}' has no data node on backend '{backend}'"
            node = table.nodes[0]
        names.append(render_name(node.table, quoted))
    return Target(backend, tuple(names), problem)


def shard_targets(driver: Table, refs: Refs) -> tuple[Target, ...]:
    """One target per shard of `driver`: bound tables use the same shard, others the copy or
    single table on that shard's backend."""
    targets = []
    for index, shard in enumerate(driver.nodes):
        names = []
        problem = None
        for table, quoted in refs:
            if table.kind is TableKind.SHARDED:
                node = table.nodes[index]
            else:
                found = copy_on(table, shard.backend)
                node = found or table.nodes[0]
                if found is None:
                    problem = problem or (
                        f"joining sharded table '{driver.name}' (shard {index} on backend "
                        f"'{shard.backend}') with {table.kind.value} table '{table.name}', "
                        f"which has no data node there"
                    )
            if node.backend != shard.backend:
                problem = problem or f"tables '{driver.name}' and '{table.name}' are not co-located"
            names.append(render_name(node.table, quoted))
        targets.append(Target(shard.backend, tuple(names), problem))
    return tuple(targets)


def _unit(target: Target, sql: str) -> Unit:
    if target.problem is not None:
        raise NotSupported(target.problem)
    return Unit(target.backend, sql)


@dataclass(frozen=True, slots=True)
class FixedRoute:
    """Units that don't depend on literal values: unsharded, broadcast, scatter DDL."""

    route: Route
    template: Template
    targets: tuple[Target, ...]
    is_write: bool = False
    implicit_commit: bool = False
    tableless: bool = False

    def instantiate(self, bindings: Bindings) -> QueryPlan:
        texts = bindings.texts
        units = tuple(_unit(t, self.template.render(texts, t.names)) for t in self.targets)
        return QueryPlan(
            units, self.route, self.is_write, self.implicit_commit, tableless=self.tableless
        )


@dataclass(frozen=True, slots=True)
class ShardedRoute:
    """SELECT / UPDATE / DELETE over sharded tables: the shard condition picks the targets."""

    template: Template
    targets: tuple[Target, ...]  # by shard number
    algorithm: ShardAlgorithm
    condition: Condition | None  # None: no usable predicate, every shard
    is_write: bool = False
    # Set when running on several shards would give a wrong result (the reason, for the error).
    single_shard_reason: str | None = None
    # Reads: the per-shard statement and the merge, used when several shards are chosen.
    scatter: ScatterRead | None = None

    def instantiate(self, bindings: Bindings) -> QueryPlan:
        shards = None if self.condition is None else self.condition.shards(self.algorithm, bindings)
        if shards is None:
            chosen: list[int] | range = range(len(self.targets))
            route = Route.SCATTER
        elif len(shards) <= 1:
            # No shard can hold a matching row: any one shard answers with the empty result.
            chosen = list(shards) or [0]
            route = Route.SINGLE
        else:
            chosen = sorted(shards)
            route = Route.MULTI
        if self.single_shard_reason is not None and len(chosen) > 1:
            raise NotSupported(self.single_shard_reason)
        texts = bindings.texts
        template = self.template
        targets = self.targets
        if len(chosen) == 1:  # a point query: no generator for one unit
            target = targets[chosen[0]]
            unit = _unit(target, template.render(texts, target.names))
            return QueryPlan((unit,), route, self.is_write)
        if self.scatter is not None:
            scatter = self.scatter
            texts = scatter.texts(bindings)
            units = tuple(
                _unit(targets[i], scatter.template.render(texts, targets[i].names)) for i in chosen
            )
            return QueryPlan(units, route, self.is_write, merge=scatter.bind(bindings))
        units = tuple(_unit(targets[i], template.render(texts, targets[i].names)) for i in chosen)
        return QueryPlan(units, route, self.is_write)


@dataclass(frozen=True, slots=True)
class InsertRoute:
    """INSERT / REPLACE ... VALUES into a sharded table: each row goes to its key's shard."""

    table: str
    algorithm: ShardAlgorithm
    keys: tuple[Source, ...]  # each row's shard-key value
    targets: tuple[Target, ...]  # by shard number
    whole: Template  # the statement as written, used when every row goes to one shard
    prefix: Template  # up to the first row: INSERT INTO t (cols) VALUES
    rows: tuple[Template, ...]
    suffix: Template  # after the last row: ON DUPLICATE KEY UPDATE ...
    # Set when the planner added the table's generated key column: the literal slot of row 0's
    # key (row r's is generated + r), filled with keys from `bindings.new_ids` at each run.
    generated: int | None = None

    def instantiate(self, bindings: Bindings) -> QueryPlan:
        ids: tuple[int, ...] = ()
        if self.generated is not None:
            if bindings.new_ids is None:
                raise NotSupported(f"INSERT into '{self.table}' without its generated key")
            ids = tuple(bindings.new_ids(len(self.keys)))
            generated = tuple(str(i) for i in ids)
            bindings = Bindings(bindings.texts[: self.generated] + generated, bindings.params)
        groups: dict[int, list[int]] = {}
        for row, key in enumerate(self.keys):
            value = key.resolve(bindings)
            if value is UNKNOWN:
                raise NotSupported(f"INSERT into '{self.table}' with a computed shard key value")
            groups.setdefault(self.algorithm.shard_for(value), []).append(row)
        texts = bindings.texts
        if len(groups) == 1:
            (shard,) = groups
            target = self.targets[shard]
            unit = _unit(target, self.whole.render(texts, target.names))
            return QueryPlan((unit,), Route.SINGLE, True, generated_ids=ids)
        units = []
        for shard in sorted(groups):
            names = self.targets[shard].names
            rows = ", ".join(self.rows[row].render(texts, names) for row in groups[shard])
            sql = self.prefix.render(texts, names) + rows + self.suffix.render(texts, names)
            units.append(_unit(self.targets[shard], sql))
        return QueryPlan(tuple(units), Route.MULTI, True, generated_ids=ids)


CachedRoute = FixedRoute | ShardedRoute | InsertRoute

"""Answers to the admin statements (router/admin.py): rows describing the proxy itself."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from router.config import TableKind
from router.plan import AdminShow, AdminWhat, ExplainShards, QueryPlan

if TYPE_CHECKING:
    from proxy.server import Server

Rows = tuple[list[str], Sequence[Sequence[object]]]


def explain_shards(plan: ExplainShards) -> Rows:
    """One row per unit: where it runs and the physical SQL, with the route and merge."""
    inner = plan.plan
    columns = ["route", "backend", "sql", "merge"]
    if not isinstance(inner, QueryPlan):
        return columns, [("proxy", None, type(inner).__name__, None)]
    kind = f"{inner.route.value} {'write' if inner.is_write else 'read'}"
    merge = str(inner.merge) if len(inner.units) > 1 else "none"
    return columns, [(kind, unit.backend, unit.sql, merge) for unit in inner.units]


async def admin_show(plan: AdminShow, server: Server) -> Rows:
    """SHOW SHARDPROXY BACKENDS / RULES / SESSIONS; with several workers, for all of them."""
    if plan.what is AdminWhat.RULES:
        return _rules(server)  # the config: every worker has the same
    cluster = server.cluster
    if plan.what is AdminWhat.BACKENDS:
        rows = backend_rows(server)
        if cluster is not None:
            others = await cluster.from_others("SHOW SHARDPROXY BACKENDS", {"op": "backends"})
            rows = _pool_totals([rows, *others])
        return BACKEND_COLUMNS, rows
    rows = session_rows(server)
    if cluster is not None:
        for other in await cluster.from_others("SHOW SHARDPROXY SESSIONS", {"op": "sessions"}):
            rows += other
        rows.sort(key=lambda row: row[0])
    return SESSION_COLUMNS, rows


BACKEND_COLUMNS = [
    "name",
    "host",
    "port",
    "database",
    "pool_open",
    "pool_idle",
    "pool_max",
    "status",
]
SESSION_COLUMNS = ["id", "user", "database", "autocommit", "in_transaction", "command"]


def backend_rows(server: Server) -> list[list[object]]:
    rows: list[list[object]] = []
    for name, pool in server.runtime.backends.pools.items():
        b = pool.backend
        status = "error: " + pool.last_error if pool.last_error else "ok"
        rows.append([name, b.host, b.port, b.database, pool.size, pool.idle, b.pool.max, status])
    return rows


def _pool_totals(per_worker: list[list[list[object]]]) -> list[list[object]]:
    """Each worker has pools of its own: the pool columns add up; a backend's status is an
    error when any worker's pool reports one."""
    merged: dict[object, list[object]] = {}
    for rows in per_worker:
        for row in rows:
            total = merged.get(row[0])
            if total is None:
                merged[row[0]] = list(row)
                continue
            for column in (4, 5, 6):
                total[column] = _int(total[column]) + _int(row[column])
            if total[7] == "ok":
                total[7] = row[7]
    return list(merged.values())


def _rules(server: Server) -> Rows:
    columns = ["database", "table", "kind", "shard_key", "algorithm", "binding_group", "nodes"]
    rows: list[Sequence[object]] = []
    for db in server.runtime.config.databases.values():
        for table in db.tables.values():
            group = db.binding_group_of(table.name)
            rows.append(
                (
                    db.name,
                    table.name,
                    table.kind.value,
                    table.shard_key,
                    str(table.algorithm) if table.kind is TableKind.SHARDED else None,
                    ",".join(sorted(group)) if group else None,
                    " ".join(str(node) for node in table.nodes),
                )
            )
    return columns, rows


def _int(value: object) -> int:
    assert isinstance(value, int)
    return value


def session_rows(server: Server) -> list[list[object]]:
    rows: list[list[object]] = []
    for session in list(server.sessions.values()):
        rows.append(
            [
                session.connection_id,
                session.user,
                session.database,
                int(session.autocommit),
                int(session.in_txn),
                "Query" if session.busy else "Sleep",
            ]
        )
    return rows


async def xa_transactions(server: Server) -> Rows:
    """SHOW SHARDPROXY TRANSACTIONS: every XA branch prepared on a backend server whose decision
    lives in this proxy's decision log (whichever instance started it), oldest first.

    `decision` is COMMIT or ABORT once decided (recovery will finish the branch) and NULL while
    undecided: its coordinator may still be committing, or recovery will roll it back after
    `transactions.abort_after`. A server that did not answer gets a row with state
    'unreachable'."""
    columns = ["backend", "gtrid", "branch", "instance", "decision", "age_seconds", "state"]
    branches, unreachable = await server.runtime.coordinator.in_doubt()
    rows: list[Sequence[object]] = []
    for b in sorted(branches, key=lambda b: (-(b.age_seconds or 0), b.gtrid, b.bqual)):
        age = None if b.age_seconds is None else round(b.age_seconds, 1)
        instance = b.gtrid.split("-")[2]
        rows.append((b.backend, b.gtrid, b.bqual, instance, b.decision, age, "prepared"))
    rows += [(name, None, None, None, None, None, "unreachable") for name in unreachable]
    return columns, rows

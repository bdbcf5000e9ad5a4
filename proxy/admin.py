"""Answers to the admin statements (router/admin.py): rows describing the proxy itself."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from router.config import TableKind
from router.plan import AdminShow, AdminWhat, ExplainShards, QueryPlan

if TYPE_CHECKING:
    from proxy.server import Server

Rows = tuple[list[str], list[Sequence[object]]]


def explain_shards(plan: ExplainShards) -> Rows:
    """One row per unit: where it runs and the physical SQL, with the route and merge."""
    inner = plan.plan
    columns = ["route", "backend", "sql", "merge"]
    if not isinstance(inner, QueryPlan):
        return columns, [("proxy", None, type(inner).__name__, None)]
    kind = f"{inner.route.value} {'write' if inner.is_write else 'read'}"
    merge = str(inner.merge) if len(inner.units) > 1 else "none"
    return columns, [(kind, unit.backend, unit.sql, merge) for unit in inner.units]


def admin_show(plan: AdminShow, server: Server) -> Rows:
    if plan.what is AdminWhat.BACKENDS:
        return _backends(server)
    if plan.what is AdminWhat.RULES:
        return _rules(server)
    return _sessions(server)


def _backends(server: Server) -> Rows:
    columns = ["name", "host", "port", "database", "pool_open", "pool_idle", "pool_max", "status"]
    rows: list[Sequence[object]] = []
    for name, pool in server.runtime.backends.pools.items():
        b = pool.backend
        status = "error: " + pool.last_error if pool.last_error else "ok"
        rows.append((name, b.host, b.port, b.database, pool.size, pool.idle, b.pool.max, status))
    return columns, rows


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


def _sessions(server: Server) -> Rows:
    columns = ["id", "user", "database", "autocommit", "in_transaction", "command"]
    rows: list[Sequence[object]] = []
    for session in list(server.sessions.values()):
        rows.append(
            (
                session.connection_id,
                session.user,
                session.database,
                int(session.autocommit),
                int(session.in_txn),
                "Query" if session.busy else "Sleep",
            )
        )
    return columns, rows


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

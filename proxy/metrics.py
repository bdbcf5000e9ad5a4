"""What the proxy counts, and the Prometheus collector that reports it.

The hot path only bumps plain Python numbers (`Metrics.statement`: a regex match, a dict lookup
and a few additions, ~1 µs); prometheus-client's own metric objects, with a lock and a label
lookup per update, would cost several times that. The collector turns the numbers into metric
families when /metrics is scraped, and reads pool sizes and XA outcomes from the objects that
already keep them.
"""

from __future__ import annotations

import itertools
import logging
import re
from bisect import bisect_left
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString

from proxy.logs import log_event
from router.plan import QueryPlan

if TYPE_CHECKING:
    from proxy.server import Server
    from proxy.session import Session
    from router.plan import Plan

slow_log = logging.getLogger("shardproxy.slow_query")

# Seconds; a point select through the proxy takes ~0.2-0.5 ms, a scatter read a few ms.
LATENCY_BUCKETS = (
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
_BUCKET_LABELS = [floatToGoString(b) for b in LATENCY_BUCKETS] + ["+Inf"]

KINDS = ("select", "insert", "update", "delete", "ddl", "other")
_KIND_OF = {
    "SELECT": "select",
    "WITH": "select",
    "(": "select",
    "INSERT": "insert",
    "REPLACE": "insert",
    "UPDATE": "update",
    "DELETE": "delete",
    "CREATE": "ddl",
    "DROP": "ddl",
    "ALTER": "ddl",
    "TRUNCATE": "ddl",
    "RENAME": "ddl",
}
# The first keyword, after whitespace and comments (not /*! ... */ or /*+ ... */ ones).
_HEAD = re.compile(r"(?:\s+|/\*(?![!+]).*?\*/|(?:--[ \t]|#)[^\n]*(?:\n|$))*([A-Za-z]+|\()", re.S)

# Route label of statements the proxy answers itself (SET, USE, BEGIN, SHOW DATABASES, admin)
# and of statements that failed before a plan existed (syntax errors, unknown tables).
ROUTE_PROXY = "proxy"
ROUTE_NONE = "none"
# Statements that start right at their keyword skip the regex: one slice and one dict lookup.
_AFTER_KEYWORD = frozenset(" \t\r\n(*`@'\"/-#")
_KIND_OF_HEAD = {
    word[:6]: kind for word, kind in _KIND_OF.items() if len(word) >= 6 and word != "REPLACE"
}

# Longer statements are cut in the slow-query log, so one line stays one readable line.
SLOW_STATEMENT_CHARS = 8192


def statement_kind(sql: str) -> str:
    """select, insert, update, delete, ddl or other, from the statement's first keyword."""
    kind = _KIND_OF_HEAD.get(sql[:6].upper())
    if kind is not None and sql[6:7] in _AFTER_KEYWORD:
        return kind
    match = _HEAD.match(sql)
    if match is None:
        return "other"
    return _KIND_OF.get(match.group(1).upper(), "other")


class Metrics:
    """Counters for one proxy process; they outlive config reloads."""

    def __init__(self) -> None:
        # (kind, route) -> [count, total seconds, per-bucket counts (not cumulative), +Inf last]
        self.queries: dict[tuple[str, str], list[Any]] = {}
        # MySQL error code -> ERR packets sent to clients (ClientChannel.send_error counts them).
        self.errors: dict[int, int] = {}

    def observe(self, kind: str, route: str, seconds: float) -> None:
        entry = self.queries.get((kind, route))
        if entry is None:
            entry = self.queries[(kind, route)] = [0, 0.0, [0] * (len(LATENCY_BUCKETS) + 1)]
        entry[0] += 1
        entry[1] += seconds
        entry[2][bisect_left(LATENCY_BUCKETS, seconds)] += 1

    def statement(self, session: Session, sql: str, plan: Plan | None, seconds: float) -> None:
        """Count one statement a session ran (or failed to run); log it when it was slow."""
        if type(plan) is QueryPlan:
            route = plan.route._value_  # not .value: a property, and this is the hot path
        else:
            route = ROUTE_NONE if plan is None else ROUTE_PROXY
        self.observe(statement_kind(sql), route, seconds)
        threshold = session.server.runtime.config.logging.slow_query_ms
        if threshold is not None and seconds * 1000 >= threshold:
            log_slow_query(session, sql, plan, seconds)


def _cut(text: str) -> str:
    return text if len(text) <= SLOW_STATEMENT_CHARS else text[:SLOW_STATEMENT_CHARS] + "..."


def log_slow_query(session: Session, sql: str, plan: Plan | None, seconds: float) -> None:
    statement = _cut(sql)
    log_event(
        slow_log,
        logging.WARNING,
        "slow_query",
        f"slow query ({seconds * 1000:.1f} ms)",
        duration_ms=round(seconds * 1000, 3),
        statement=statement,
        plan=_cut(str(plan)) if plan is not None else None,
        connection_id=session.connection_id,
        user=session.user,
        database=session.database,
    )


class _Carry:
    """Keeps a counter monotonic when a reload replaces the object that counts it."""

    def __init__(self) -> None:
        self.current: object | None = None
        self.retired: dict[str, int] = {}
        self._last: dict[str, int] = {}

    def totals(self, source: object, counts: dict[str, int]) -> dict[str, int]:
        if self.current is not None and self.current is not source:
            for key, value in self._last.items():
                self.retired[key] = self.retired.get(key, 0) + value
        self.current = source
        self._last = dict(counts)
        merged = dict(self.retired)
        for key, value in counts.items():
            merged[key] = merged.get(key, 0) + value
        return merged


_XA_OUTCOMES = {
    "commits": "commit",
    "one_phase_commits": "one_phase_commit",
    "rollbacks": "rollback",
}
_RECOVERY_ACTIONS = {"recovered_commits": "commit", "recovered_rollbacks": "rollback"}


class ProxyCollector(Collector):
    """Builds the proxy's metric families from its counters at scrape time."""

    def __init__(self, server: Server):
        self.server = server
        self._xa = _Carry()
        self._plans = _Carry()

    def collect(self) -> Iterator[Metric]:
        server = self.server
        metrics: Metrics = server.metrics
        runtime = server.runtime

        queries = CounterMetricFamily(
            "shardproxy_queries",
            "Statements run, by kind (select/insert/update/delete/ddl/other) and route "
            "(single/multi/scatter/broadcast/unsharded; proxy: answered by the proxy; "
            "none: failed before routing).",
            labels=["kind", "route"],
        )
        latency = HistogramMetricFamily(
            "shardproxy_query_duration_seconds",
            "Time from receiving a statement to its last byte of answer being queued.",
            labels=["kind", "route"],
        )
        for (kind, route), (count, total, buckets) in sorted(metrics.queries.items()):
            queries.add_metric([kind, route], count)
            cumulative = list(itertools.accumulate(buckets))
            latency.add_metric(
                [kind, route], list(zip(_BUCKET_LABELS, cumulative, strict=True)), total
            )
        yield queries
        yield latency

        errors = CounterMetricFamily(
            "shardproxy_errors",
            "Error packets sent to clients, by MySQL error code.",
            labels=["code"],
        )
        for code, count in sorted(metrics.errors.items()):
            errors.add_metric([str(code)], count)
        yield errors

        clients = GaugeMetricFamily(
            "shardproxy_client_connections", "Client connections past authentication."
        )
        clients.add_metric([], len(server.sessions))
        yield clients

        pool_open = GaugeMetricFamily(
            "shardproxy_backend_connections_open",
            "Backend connections open (or opening) in the pool, busy or idle.",
            labels=["backend"],
        )
        pool_idle = GaugeMetricFamily(
            "shardproxy_backend_connections_idle",
            "Backend connections idle in the pool.",
            labels=["backend"],
        )
        pool_max = GaugeMetricFamily(
            "shardproxy_backend_connections_max",
            "The most connections the pool opens to the backend.",
            labels=["backend"],
        )
        replicas = getattr(runtime.backends, "replicas", {})
        every_pool = [*runtime.backends.pools.values(), *itertools.chain(*replicas.values())]
        for pool in every_pool:  # a replica's pool is named like ds0@replica0
            name = pool.backend.name
            pool_open.add_metric([name], pool.size)
            pool_idle.add_metric([name], pool.idle)
            pool_max.add_metric([name], pool.backend.pool.max)
        yield pool_open
        yield pool_idle
        yield pool_max

        readiness = getattr(server, "readiness", None)
        if readiness is not None and readiness.backend_up:
            up = GaugeMetricFamily(
                "shardproxy_backend_up",
                "1 if the backend answered the last readiness check, else 0.",
                labels=["backend"],
            )
            for name, value in sorted(readiness.backend_up.items()):
                up.add_metric([name], value)
            yield up

        coordinator = runtime.coordinator
        stats = self._xa.totals(coordinator, coordinator.stats)
        xa = CounterMetricFamily(
            "shardproxy_xa_transactions",
            "Distributed transactions by outcome (commit: two-phase; one_phase_commit; rollback).",
            labels=["outcome"],
        )
        recovery = CounterMetricFamily(
            "shardproxy_xa_recovery_actions",
            "Prepared XA branches that recovery committed or rolled back.",
            labels=["action"],
        )
        for key, value in sorted(stats.items()):
            if key in _RECOVERY_ACTIONS:
                recovery.add_metric([_RECOVERY_ACTIONS[key]], value)
            else:
                xa.add_metric([_XA_OUTCOMES.get(key, key)], value)
        yield xa
        yield recovery

        router = runtime.router
        plans = self._plans.totals(router, {"hit": router.hits, "miss": router.misses})
        cache = CounterMetricFamily(
            "shardproxy_plan_cache_lookups",
            "Statements planned from the plan cache (hit) or by parsing (miss).",
            labels=["result"],
        )
        for result, value in sorted(plans.items()):
            cache.add_metric([result], value)
        yield cache


def make_registry(server: Server) -> CollectorRegistry:
    """A registry of this server's metrics plus the process's (CPU, memory, open files)."""
    from prometheus_client import PlatformCollector, ProcessCollector

    registry = CollectorRegistry(auto_describe=False)
    registry.register(ProxyCollector(server))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry


# --- several worker processes (proxy/workers.py) ------------------------------------------------

# One metric family as JSON: [name, help, type, unit, [[sample name, labels, value], ...]]
Family = list[Any]
SampleKey = tuple[str, str, str, tuple[tuple[str, str], ...]]  # family, type, sample, labels
_CUMULATIVE = ("counter", "histogram")


def families_of(registry: CollectorRegistry) -> list[Family]:
    """A registry's current metrics, as JSON for the supervisor."""
    return [
        [m.name, m.documentation, m.type, m.unit, [[s.name, s.labels, s.value] for s in m.samples]]
        for m in registry.collect()
    ]


class WorkerMetrics:
    """The workers' metrics as one process's: shardproxy_* samples add up over workers
    (shardproxy_backend_up is the lowest: a backend is up when every worker reaches it), the
    process's own (CPU, memory) get a `worker` label.

    Counters stay monotonic when a worker is replaced: what it had counted at the last scrape
    is carried on (its counts since that scrape are lost with it)."""

    def __init__(self) -> None:
        self.last: dict[int, tuple[int, list[Family]]] = {}  # worker -> (pid, families)
        self.retired: dict[SampleKey, float] = {}
        self._help: dict[str, tuple[str, str, str]] = {}  # family -> (help, type, unit)

    def update(self, index: int, pid: int | None, families: list[Family] | None) -> None:
        """What worker `index` (process `pid`, None: not running) reported; None: no answer
        this time (its last report stands while it is the same process)."""
        previous = self.last.get(index)
        if previous is not None and previous[0] != pid:
            del self.last[index]
            for family in previous[1]:
                name, _, kind, _, samples = family
                if name.startswith("shardproxy_") and kind in _CUMULATIVE:
                    for sample, labels, value in samples:
                        key = (name, kind, sample, tuple(sorted(labels.items())))
                        self.retired[key] = self.retired.get(key, 0.0) + value
        if families is not None and pid is not None:
            self.last[index] = (pid, families)

    def collect(self) -> list[Metric]:
        summed: dict[SampleKey, float] = dict(self.retired)
        labelled: dict[str, list[tuple[str, dict[str, str], float]]] = {}
        for index, (_, families) in sorted(self.last.items()):
            for name, documentation, kind, unit, samples in families:
                self._help[name] = (documentation, kind, unit)
                if not name.startswith("shardproxy_"):
                    out = labelled.setdefault(name, [])
                    out += [(s, {**labels, "worker": str(index)}, v) for s, labels, v in samples]
                    continue
                lowest = name == "shardproxy_backend_up"
                for sample, labels, value in samples:
                    key = (name, kind, sample, tuple(sorted(labels.items())))
                    if key not in summed:
                        summed[key] = value
                    else:
                        summed[key] = min(summed[key], value) if lowest else summed[key] + value
        metrics: dict[str, Metric] = {}
        for (name, kind, sample, labels), value in sorted(summed.items()):
            metric = metrics.get(name)
            if metric is None:
                documentation, _, unit = self._help.get(name, ("", kind, ""))
                metric = metrics[name] = Metric(name, documentation, kind, unit)
            metric.add_sample(sample, dict(labels), value)
        for name, samples in labelled.items():
            documentation, kind, unit = self._help[name]
            metric = metrics[name] = Metric(name, documentation, kind, unit)
            for sample, labels, value in samples:
                metric.add_sample(sample, labels, value)
        return list(metrics.values())

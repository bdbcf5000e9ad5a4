"""proxy/metrics.py without a server: statement kinds, the counters, the collector's output."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from proxy.metrics import LATENCY_BUCKETS, Metrics, make_registry, statement_kind
from router.config import Logging
from router.plan import QueryPlan, Route, SetPlan, Unit


@pytest.mark.parametrize(
    ("sql", "kind"),
    [
        ("SELECT 1", "select"),
        ("  select * from t", "select"),
        ("(SELECT 1) UNION (SELECT 2)", "select"),
        ("WITH x AS (SELECT 1) SELECT * FROM x", "select"),
        ("/* app:checkout */ SELECT 1", "select"),
        ("-- note\nUPDATE t SET a = 1", "update"),
        ("# note\nDELETE FROM t", "delete"),
        ("INSERT INTO t VALUES (1)", "insert"),
        ("REPLACE INTO t VALUES (1)", "insert"),
        ("CREATE TABLE t (id INT)", "ddl"),
        ("drop table t", "ddl"),
        ("ALTER TABLE t ADD c INT", "ddl"),
        ("TRUNCATE t", "ddl"),
        ("SET @x = 1", "other"),
        ("BEGIN", "other"),
        ("SHOW TABLES", "other"),
        ("", "other"),
        ("/*!40101 SET NAMES utf8 */", "other"),
    ],
)
def test_statement_kind(sql: str, kind: str) -> None:
    assert statement_kind(sql) == kind


def session(slow_query_ms: int | None = None) -> SimpleNamespace:
    config = SimpleNamespace(logging=Logging(slow_query_ms=slow_query_ms))
    server = SimpleNamespace(runtime=SimpleNamespace(config=config))
    return SimpleNamespace(server=server, connection_id=7, user="app", database="shop")


def test_statement_counts_by_kind_and_route_with_buckets() -> None:
    metrics = Metrics()
    single = QueryPlan((Unit("ds0", "SELECT 1"),), Route.SINGLE)
    metrics.statement(session(), "SELECT 1", single, 0.0003)
    metrics.statement(session(), "SELECT 1", single, 0.7)
    metrics.statement(session(), "SET @x = 1", SetPlan(()), 0.0001)
    metrics.statement(session(), "SELEKT", None, 0.0001)
    count, total, buckets = metrics.queries[("select", "single")]
    assert count == 2
    assert total == pytest.approx(0.7003)
    assert buckets[LATENCY_BUCKETS.index(0.0005)] == 1  # 0.3 ms: le 0.0005
    assert buckets[LATENCY_BUCKETS.index(1.0)] == 1  # 700 ms: le 1
    assert sum(buckets) == 2
    assert metrics.queries[("other", "proxy")][0] == 1
    assert metrics.queries[("other", "none")][0] == 1


def test_slow_statements_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()
    plan = QueryPlan((Unit("ds1", "SELECT * FROM users_3 WHERE id = 7"),), Route.SINGLE)
    with caplog.at_level("INFO", logger="shardproxy.slow_query"):
        metrics.statement(session(100), "SELECT * FROM users WHERE id = 7", plan, 0.05)
        metrics.statement(session(100), "SELECT * FROM users WHERE id = 7", plan, 0.25)
        metrics.statement(session(None), "SELECT * FROM users WHERE id = 7", plan, 99.0)
    (record,) = caplog.records
    fields = record.fields  # type: ignore[attr-defined]
    assert fields["event"] == "slow_query"
    assert fields["duration_ms"] == 250.0
    assert fields["statement"] == "SELECT * FROM users WHERE id = 7"
    assert fields["plan"] == str(plan)
    assert fields["connection_id"] == 7


def test_collector_reports_every_family() -> None:
    metrics = Metrics()
    metrics.statement(session(), "SELECT 1", QueryPlan((), Route.SCATTER), 0.002)
    metrics.errors[1146] = 2
    pool = SimpleNamespace(
        size=3, idle=1, backend=SimpleNamespace(name="ds0", pool=SimpleNamespace(max=32))
    )
    coordinator = SimpleNamespace(
        stats={
            "commits": 4,
            "one_phase_commits": 5,
            "rollbacks": 1,
            "recovered_commits": 2,
            "recovered_rollbacks": 0,
        }
    )
    runtime = SimpleNamespace(
        backends=SimpleNamespace(pools={"ds0": pool}, replicas={}),
        coordinator=coordinator,
        router=SimpleNamespace(hits=10, misses=3),
        config=SimpleNamespace(logging=Logging()),
    )
    server = SimpleNamespace(metrics=metrics, runtime=runtime, sessions={1: None}, http=None)
    registry = make_registry(server)  # type: ignore[arg-type]
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for s in family.samples
    }
    assert samples[("shardproxy_queries_total", (("kind", "select"), ("route", "scatter")))] == 1
    bucket = (("kind", "select"), ("le", "0.0025"), ("route", "scatter"))
    assert samples[("shardproxy_query_duration_seconds_bucket", bucket)] == 1
    assert samples[("shardproxy_errors_total", (("code", "1146"),))] == 2
    assert samples[("shardproxy_backend_connections_open", (("backend", "ds0"),))] == 3
    assert samples[("shardproxy_backend_connections_idle", (("backend", "ds0"),))] == 1
    assert samples[("shardproxy_client_connections", ())] == 1
    assert samples[("shardproxy_xa_transactions_total", (("outcome", "commit"),))] == 4
    assert samples[("shardproxy_xa_transactions_total", (("outcome", "one_phase_commit"),))] == 5
    assert samples[("shardproxy_xa_recovery_actions_total", (("action", "commit"),))] == 2
    assert samples[("shardproxy_plan_cache_lookups_total", (("result", "hit"),))] == 10

    # A reload that replaces the coordinator keeps the counters monotonic.
    runtime.coordinator = SimpleNamespace(stats={"commits": 1})
    again = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for s in family.samples
    }
    assert again[("shardproxy_xa_transactions_total", (("outcome", "commit"),))] == 5

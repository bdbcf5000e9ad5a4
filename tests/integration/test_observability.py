"""The HTTP endpoints (/health, /ready, /metrics) and the structured logs of a running proxy.

Metrics are scraped over HTTP and parsed with prometheus-client's parser; every check compares
a scrape taken before some known statements with one taken after, so statements other tests
(or the proxy's own start) ran never matter.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pymysql
import pytest
import yaml
from mariadb_instances import MariaDBInstance, free_port
from prometheus_client.parser import text_string_to_metric_families
from shop_helpers import ShopTables

if TYPE_CHECKING:
    from conftest import Cluster, ProxyFactory, ProxyProcess

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


# --- helpers --------------------------------------------------------------------------------


def http_get(port: int, path: str, timeout: float = 10.0) -> tuple[int, str, str]:
    """(status, content type, body) of GET http://127.0.0.1:port/path; 4xx/5xx included."""
    url = f"http://127.0.0.1:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def scrape(port: int) -> Samples:
    status, content_type, body = http_get(port, "/metrics")
    assert status == 200
    assert content_type.startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def wait_for_ready(port: int, expected: int, timeout: float = 30.0) -> dict[str, Any]:
    """Poll /ready until it answers `expected`; its JSON body."""
    deadline = time.monotonic() + timeout
    status, body = 0, ""
    while time.monotonic() < deadline:
        status, _, body = http_get(port, "/ready")
        if status == expected:
            return json.loads(body)
        time.sleep(0.2)
    raise AssertionError(f"/ready stayed {status} (wanted {expected}): {body}")


def log_lines(proxy: ProxyProcess) -> list[str]:
    """The proxy's output since its last start (the factory writes a '--- ' line per start)."""
    lines = proxy.log_path.read_text(errors="replace").splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("--- ")]
    return lines[starts[-1] + 1 :] if starts else lines


def json_events(proxy: ProxyProcess) -> list[dict[str, Any]]:
    """Every log line since the last start, each parsed as JSON (all of them must parse)."""
    events = []
    for line in log_lines(proxy):
        if line.strip():
            events.append(json.loads(line))
    return events


def run(conn: pymysql.Connection, sql: str) -> list[tuple[Any, ...]]:
    with conn.cursor() as cursor:
        cursor.execute(sql)
        return list(cursor.fetchall())


def with_observability(config_text: str, http_port: int, **logging: Any) -> str:
    config = yaml.safe_load(config_text)
    config["http"] = {"host": "127.0.0.1", "port": http_port}
    if logging:
        config["logging"] = logging
    return yaml.safe_dump(config, sort_keys=False)


# --- fixtures -------------------------------------------------------------------------------


class Observed:
    """A proxy serving the shop config with HTTP endpoints, JSON logs and a 150 ms slow log."""

    def __init__(self, proxy: ProxyProcess, http_port: int):
        self.proxy = proxy
        self.http_port = http_port


@pytest.fixture(scope="module")
def observed(proxy_server: ProxyFactory, shop_config: str) -> Observed:
    port = free_port()
    text = with_observability(shop_config, port, format="json", level="info", slow_query_ms=150)
    return Observed(proxy_server(text, name="observed"), port)


@pytest.fixture
def shop_tables(observed: Observed, mariadb_cluster: Cluster) -> Iterator[ShopTables]:
    tables = ShopTables(observed.proxy, mariadb_cluster)
    tables.create("users", "countries", "settings")
    yield tables
    tables.cleanup()


@pytest.fixture
def own_server(mariadb_base_dir: Path) -> Iterator[MariaDBInstance]:
    """A MariaDB instance of this test's own, to stop and start at will."""
    server = MariaDBInstance("observability", free_port(), mariadb_base_dir)
    server.start()
    yield server
    server.stop()


def two_backend_config(port: int) -> str:
    return f"""\
users: [{{name: app, password: app}}]
backends:
  ds0: {{host: 127.0.0.1, port: {port}, user: root, password: "", database: ready_0}}
  ds1: {{host: 127.0.0.1, port: {port}, user: root, password: "", database: ready_1}}
databases:
  shop:
    default_backend: ds0
    tables:
      t: {{shard_key: id, algorithm: mod, backends: [ds0, ds1]}}
"""


# --- /health and /metrics -------------------------------------------------------------------


def test_health_is_200_and_other_paths_are_404(observed: Observed) -> None:
    assert http_get(observed.http_port, "/health")[0] == 200
    assert http_get(observed.http_port, "/health?verbose=1")[0] == 200
    assert http_get(observed.http_port, "/nope")[0] == 404
    request = urllib.request.Request(f"http://127.0.0.1:{observed.http_port}/health", b"x")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 405


def test_ready_is_200_with_every_backend_ok(observed: Observed) -> None:
    body = wait_for_ready(observed.http_port, 200)
    assert body == {
        "ready": True,
        "accepting_clients": True,
        "backends": {"ds0": "ok", "ds1": "ok"},
    }
    samples = scrape(observed.http_port)
    assert value(samples, "shardproxy_backend_up", backend="ds0") == 1
    assert value(samples, "shardproxy_backend_up", backend="ds1") == 1


def test_metrics_count_statements_by_kind_and_route(
    observed: Observed, shop_tables: ShopTables
) -> None:
    conn = observed.proxy.connect()
    try:
        run(conn, "INSERT INTO users (id, name) VALUES (1, 'a'), (2, 'b'), (3, 'c'), (4, 'd')")
        before = scrape(observed.http_port)
        run(conn, "SELECT * FROM users WHERE id = 3")  # single
        run(conn, "SELECT * FROM users WHERE id = 7")  # single
        run(conn, "SELECT * FROM users WHERE id IN (1, 3)")  # multi
        run(conn, "SELECT COUNT(*) FROM users")  # scatter
        run(conn, "SELECT * FROM countries")  # broadcast read
        run(conn, "INSERT INTO users (id, name) VALUES (5, 'e')")  # single
        run(conn, "INSERT INTO countries VALUES ('fr', 'France')")  # broadcast write
        run(conn, "UPDATE users SET name = 'x' WHERE id = 5")  # single
        run(conn, "DELETE FROM users")  # scatter
        run(conn, "SELECT 1 + 1")  # unsharded
        run(conn, "SET @x = 1")  # answered by the proxy
        run(conn, "TRUNCATE TABLE settings")  # ddl on a single table: unsharded
        run(conn, "ALTER TABLE users ADD COLUMN extra INT")  # ddl on every shard: scatter
        after = scrape(observed.http_port)
    finally:
        conn.close()

    expected = {
        ("select", "single"): 2,
        ("select", "multi"): 1,
        ("select", "scatter"): 1,
        ("select", "broadcast"): 1,
        ("select", "unsharded"): 1,
        ("insert", "single"): 1,
        ("insert", "broadcast"): 1,
        ("update", "single"): 1,
        ("delete", "scatter"): 1,
        ("other", "proxy"): 1,
        ("ddl", "unsharded"): 1,
        ("ddl", "scatter"): 1,
    }
    for (kind, route), count in expected.items():
        got = delta(before, after, "shardproxy_queries_total", kind=kind, route=route)
        assert got == count, (kind, route, got)
        # The latency histogram saw the same statements, each in some bucket.
        histogram = delta(
            before, after, "shardproxy_query_duration_seconds_count", kind=kind, route=route
        )
        assert histogram == count, (kind, route, histogram)
        inf = delta(
            before,
            after,
            "shardproxy_query_duration_seconds_bucket",
            kind=kind,
            route=route,
            le="+Inf",
        )
        assert inf == count
        seconds = delta(
            before, after, "shardproxy_query_duration_seconds_sum", kind=kind, route=route
        )
        assert 0 < seconds < 10 * count

    total = sum(
        delta(before, after, name, **dict(labels))
        for name, labels in after
        if name == "shardproxy_queries_total"
    )
    assert total == sum(expected.values())
    # A pool that served statements has connections open, and holds them idle afterwards.
    for backend in ("ds0", "ds1"):
        assert value(after, "shardproxy_backend_connections_open", backend=backend) >= 1
        assert value(after, "shardproxy_backend_connections_idle", backend=backend) >= 1
        assert value(after, "shardproxy_backend_connections_max", backend=backend) == 32
    # The broadcast INSERT and the scatter DELETE wrote to both backends: two-phase commits.
    assert delta(before, after, "shardproxy_xa_transactions_total", outcome="commit") == 2
    assert value(after, "shardproxy_plan_cache_lookups_total", result="miss") >= 1


def test_metrics_count_errors_by_code(observed: Observed) -> None:
    before = scrape(observed.http_port)
    conn = observed.proxy.connect()
    try:
        for sql in ("SELEKT 1", "SELECT * FROM no_such_table", "SELECT * FROM no_such_table"):
            with pytest.raises(pymysql.MySQLError):
                run(conn, sql)
    finally:
        conn.close()
    with pytest.raises(pymysql.err.OperationalError):
        observed.proxy.connect(password="wrong")
    after = scrape(observed.http_port)
    assert delta(before, after, "shardproxy_errors_total", code="1064") == 1
    assert delta(before, after, "shardproxy_errors_total", code="1146") == 2
    assert delta(before, after, "shardproxy_errors_total", code="1045") == 1
    # Statements that failed still count, under the route they got (none: no plan at all).
    assert delta(before, after, "shardproxy_queries_total", kind="select", route="none") >= 1


def test_metrics_count_transaction_outcomes(observed: Observed, shop_tables: ShopTables) -> None:
    before = scrape(observed.http_port)
    conn = observed.proxy.connect()
    try:
        run(conn, "BEGIN")
        run(conn, "INSERT INTO users (id, name) VALUES (10, 'one backend')")
        run(conn, "COMMIT")  # one branch: one-phase commit
        run(conn, "BEGIN")
        run(conn, "INSERT INTO users (id, name) VALUES (11, 'rolled back')")
        run(conn, "ROLLBACK")
        run(conn, "BEGIN")
        run(conn, "INSERT INTO users (id, name) VALUES (12, 'ds0'), (14, 'ds1')")
        run(conn, "COMMIT")  # two branches: two-phase commit
    finally:
        conn.close()
    after = scrape(observed.http_port)
    assert delta(before, after, "shardproxy_xa_transactions_total", outcome="one_phase_commit") == 1
    assert delta(before, after, "shardproxy_xa_transactions_total", outcome="rollback") == 1
    assert delta(before, after, "shardproxy_xa_transactions_total", outcome="commit") == 1
    assert (before | after).keys() >= {
        ("shardproxy_xa_recovery_actions_total", (("action", "commit"),)),
        ("shardproxy_xa_recovery_actions_total", (("action", "rollback"),)),
    }
    # BEGIN/COMMIT/ROLLBACK (and the driver's SET autocommit at connect) are the proxy's own.
    assert delta(before, after, "shardproxy_queries_total", kind="other", route="proxy") >= 6


def test_client_connections_gauge(observed: Observed) -> None:
    before = value(scrape(observed.http_port), "shardproxy_client_connections")
    conns = [observed.proxy.connect() for _ in range(3)]
    try:
        assert value(scrape(observed.http_port), "shardproxy_client_connections") == before + 3
    finally:
        for conn in conns:
            conn.close()


# --- /ready ---------------------------------------------------------------------------------


def test_ready_is_503_while_no_backend_is_reachable(proxy_server: ProxyFactory) -> None:
    dead = free_port()  # nothing listens there
    http_port = free_port()
    proxy = proxy_server(with_observability(two_backend_config(dead), http_port), name="dead")
    assert http_get(http_port, "/health")[0] == 200
    body = wait_for_ready(http_port, 503)
    assert body["ready"] is False
    assert body["accepting_clients"] is True
    assert set(body["backends"]) == {"ds0", "ds1"}
    assert all(state != "ok" for state in body["backends"].values())
    samples = scrape(http_port)
    assert value(samples, "shardproxy_backend_up", backend="ds0") == 0
    proxy.terminate()


def test_ready_follows_the_backends_down_and_up(
    proxy_server: ProxyFactory, own_server: MariaDBInstance
) -> None:
    own_server.execute("CREATE DATABASE ready_0")
    own_server.execute("CREATE DATABASE ready_1")
    http_port = free_port()
    config = with_observability(two_backend_config(own_server.port), http_port)
    proxy = proxy_server(config, name="ready")
    wait_for_ready(http_port, 200)
    conn = proxy.connect()  # leaves idle pooled connections behind, which must not fool /ready
    run(conn, "SELECT 1 + 1")
    conn.close()

    own_server.stop()
    body = wait_for_ready(http_port, 503)
    assert all(state != "ok" for state in body["backends"].values())
    assert http_get(http_port, "/health")[0] == 200

    own_server.start()
    body = wait_for_ready(http_port, 200)
    assert body["backends"] == {"ds0": "ok", "ds1": "ok"}
    conn = proxy.connect()
    try:
        assert run(conn, "SELECT 1 + 1") == [(2,)]
    finally:
        conn.close()
    proxy.terminate()


# --- logs -----------------------------------------------------------------------------------


def test_json_logs_parse_and_slow_queries_are_logged_with_their_plan(observed: Observed) -> None:
    conn = observed.proxy.connect()
    try:
        run(conn, "SELECT SLEEP(0.3)")
        run(conn, "SELECT 'fast' AS quick")
    finally:
        conn.close()
    deadline = time.monotonic() + 10
    slow: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not slow:
        events = json_events(observed.proxy)  # every line is JSON
        slow = [e for e in events if e.get("event") == "slow_query"]
        time.sleep(0.1)
    assert any(e["logger"] == "shardproxy.server" for e in events)  # the "listening" line
    for event in events:
        assert {"time", "level", "logger", "message"} <= event.keys()
    sleeps = [e for e in slow if e["statement"] == "SELECT SLEEP(0.3)"]
    assert len(sleeps) == 1, slow
    event = sleeps[0]
    assert event["level"] == "warning"
    assert event["logger"] == "shardproxy.slow_query"
    assert event["duration_ms"] >= 300
    assert event["plan"].startswith("unsharded read, 1 unit(s)")
    assert "SELECT SLEEP(0.3)" in event["plan"]
    assert event["user"] == "app"
    assert event["database"] == "shop"
    assert not [e for e in slow if "fast" in e["statement"]]

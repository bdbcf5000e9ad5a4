"""WorkerMetrics: the supervisor's /metrics as the sum of its workers'."""

from __future__ import annotations

from typing import Any

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector, CollectorRegistry

from proxy.metrics import Family, WorkerMetrics


def worker(queries: float, connections: float, up: float, cpu: float) -> list[Family]:
    """What one worker reports (the shape of proxy.metrics.families_of)."""
    return [
        [
            "shardproxy_queries",
            "Statements run.",
            "counter",
            "",
            [["shardproxy_queries_total", {"kind": "select", "route": "single"}, queries]],
        ],
        [
            "shardproxy_client_connections",
            "Client connections.",
            "gauge",
            "",
            [["shardproxy_client_connections", {}, connections]],
        ],
        [
            "shardproxy_backend_up",
            "Backend answered.",
            "gauge",
            "",
            [["shardproxy_backend_up", {"backend": "ds0"}, up]],
        ],
        [
            "process_cpu_seconds",
            "CPU.",
            "counter",
            "",
            [["process_cpu_seconds_total", {}, cpu]],
        ],
    ]


def scraped(merged: WorkerMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The text exposition a registry makes of `merged`, parsed back."""

    class Source(Collector):
        def collect(self) -> Any:
            return merged.collect()

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Source())
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


SELECTS = ("shardproxy_queries_total", (("kind", "select"), ("route", "single")))
CONNECTIONS = ("shardproxy_client_connections", ())
UP = ("shardproxy_backend_up", (("backend", "ds0"),))


def test_workers_add_up_and_keep_their_process_metrics_apart() -> None:
    merged = WorkerMetrics()
    merged.update(0, 100, worker(queries=5, connections=2, up=1, cpu=1.5))
    merged.update(1, 101, worker(queries=7, connections=3, up=0, cpu=2.5))
    samples = scraped(merged)
    assert samples[SELECTS] == 12
    assert samples[CONNECTIONS] == 5
    assert samples[UP] == 0  # up only when every worker reaches it
    assert samples[("process_cpu_seconds_total", (("worker", "0"),))] == 1.5
    assert samples[("process_cpu_seconds_total", (("worker", "1"),))] == 2.5


def test_a_replaced_worker_leaves_its_counts_but_not_its_gauges() -> None:
    merged = WorkerMetrics()
    merged.update(0, 100, worker(queries=5, connections=2, up=1, cpu=1))
    merged.update(1, 101, worker(queries=7, connections=3, up=1, cpu=1))
    scraped(merged)
    merged.update(1, None, None)  # died
    samples = scraped(merged)
    assert samples[SELECTS] == 12
    assert samples[CONNECTIONS] == 2
    merged.update(1, 102, worker(queries=1, connections=1, up=1, cpu=0.1))  # its replacement
    samples = scraped(merged)
    assert samples[SELECTS] == 13
    assert samples[CONNECTIONS] == 3
    assert samples[("process_cpu_seconds_total", (("worker", "1"),))] == 0.1


def test_a_worker_that_does_not_answer_keeps_its_last_report() -> None:
    merged = WorkerMetrics()
    merged.update(0, 100, worker(queries=5, connections=2, up=1, cpu=1))
    scraped(merged)
    merged.update(0, 100, None)  # same process, no answer this time
    assert scraped(merged)[SELECTS] == 5
    merged.update(0, 100, worker(queries=9, connections=2, up=1, cpu=1))
    assert scraped(merged)[SELECTS] == 9  # not 14: the same process's counter, not a new one

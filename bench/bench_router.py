"""Microseconds per Router.plan() on the hot path (cache hits) and on misses.

Run: .venv/bin/python bench/bench_router.py   (routes against config/default.yaml)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from router.config_loader import load_config
from router.planner import Router

CONFIG = Path(__file__).resolve().parent.parent / "config" / "default.yaml"

ANALYTIC = """SELECT u.id, u.name, COUNT(o.id) AS orders, SUM(i.quantity * i.price) AS spent
FROM users AS u
JOIN orders AS o ON o.user_id = u.id
JOIN order_items AS i ON i.user_id = o.user_id AND i.order_id = o.id
LEFT JOIN countries AS c ON c.id = u.country_id
WHERE u.id IN ({a}, {b}, {c}) AND o.created_at >= '2024-01-01'
  AND (o.status = 'paid' OR o.status = 'shipped') AND c.code <> 'XX'
GROUP BY u.id, u.name
HAVING SUM(i.quantity * i.price) > 100
ORDER BY spent DESC LIMIT 20"""


def measure(plan_one: Callable[[int], object], runs: int) -> float:
    """Median of 5 batches, in microseconds per call."""
    plan_one(0)
    batches = []
    for batch in range(5):
        start = time.perf_counter()
        for i in range(runs):
            plan_one(batch * runs + i)
        batches.append((time.perf_counter() - start) / runs * 1e6)
    return sorted(batches)[2]


def main() -> None:
    config = load_config(str(CONFIG))
    hot = Router(config)
    cold = Router(config, cache_size=100_000)  # every statement below is a new shape for it

    cases: list[tuple[str, Callable[[int], object], int]] = [
        (
            "point select, cache hit",
            lambda i: hot.plan(f"SELECT id, total FROM orders WHERE user_id = {i}", "shop"),
            20_000,
        ),
        (
            "point select, prepared, cache hit",
            lambda i: hot.plan("SELECT id, total FROM orders WHERE user_id = ?", "shop", [i]),
            20_000,
        ),
        (
            "point select, cache miss",
            lambda i: cold.plan(
                f"SELECT id, total AS t{i} FROM orders WHERE user_id = {i}", "shop"
            ),
            500,
        ),
        (
            "3-row insert, cache hit",
            lambda i: hot.plan(
                "INSERT INTO orders (id, user_id, total) VALUES "
                f"({i}, {i}, 10.50), ({i + 1}, {i + 1}, 'x'), ({i + 2}, {i + 2}, NULL)",
                "shop",
            ),
            10_000,
        ),
        (
            "10-line analytic select, cache miss",
            lambda i: cold.plan(
                ANALYTIC.replace("spent", f"spent{i}").format(a=i, b=i + 1, c=i + 5), "shop"
            ),
            200,
        ),
        (
            "10-line analytic select, cache hit",
            lambda i: hot.plan(ANALYTIC.format(a=i, b=i + 1, c=i + 5), "shop"),
            5_000,
        ),
        ("SET NAMES, exact-text cache hit", lambda i: hot.plan("SET NAMES utf8mb4", None), 20_000),
    ]
    width = max(len(name) for name, _, _ in cases)
    print(f"{'case':<{width}}  us/plan")
    print(f"{'-' * width}  -------")
    for name, plan_one, runs in cases:
        print(f"{name:<{width}}  {measure(plan_one, runs):7.1f}")


if __name__ == "__main__":
    main()

"""Corpus and random generator for test_differential.py."""

from __future__ import annotations

from diff_data import Query

Q = Query


def T(sql: str) -> Query:
    """A query whose ORDER BY is total: the row order must match too."""
    return Query(sql, ordered=True)


CORPUS: list[Query] = [
    Q("SELECT id, name FROM customers"),
    T("SELECT id, name FROM customers ORDER BY name, id"),
    T("SELECT id, name FROM customers ORDER BY name DESC, id LIMIT 5, 10"),
    Q("SELECT COUNT(*), SUM(balance), AVG(balance), MIN(name), MAX(score) FROM customers"),
    T("SELECT name, COUNT(*), AVG(age) FROM customers GROUP BY name ORDER BY name"),
    Q("SELECT DISTINCT city FROM customers"),
]


def random_queries(seed: int, count: int) -> list[Query]:
    return []

"""Generated keys in the planner: an INSERT that leaves a table's generated key column out gets
the column and one value per row added, with values from the caller's `new_ids`; plans stay
cacheable by shape and never hold a generated value."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Sequence

import pytest
from planner_config import make_config, sharded

from router.config import Config
from router.errors import NoDefaultForField, NotSupported
from router.plan import QueryPlan, Route
from router.planner import Router

FOUR = ("ds0", "ds0", "ds1", "ds1")


def config() -> Config:
    base = make_config()
    shop = base.databases["shop"]
    tables = dict(shop.tables)
    tables["notes"] = dataclasses.replace(sharded("notes", "id", FOUR), generated_key="id")
    tables["posts"] = dataclasses.replace(sharded("posts", "user_id", FOUR), generated_key="id")
    databases = {**base.databases, "shop": dataclasses.replace(shop, tables=tables)}
    return dataclasses.replace(base, databases=databases)


@pytest.fixture
def router() -> Router:
    return Router(config())


def counter(start: int) -> Callable[[int], Sequence[int]]:
    numbers = itertools.count(start)
    return lambda n: [next(numbers) for _ in range(n)]


def plan(router: Router, sql: str, new_ids: Callable[[int], Sequence[int]]) -> QueryPlan:
    result = router.plan(sql, "shop", new_ids=new_ids)
    assert isinstance(result, QueryPlan)
    return result


def units(result: QueryPlan) -> list[tuple[str, str]]:
    return [(unit.backend, unit.sql) for unit in result.units]


def test_the_generated_shard_key_routes_each_row(router: Router) -> None:
    result = plan(router, "INSERT INTO notes (body) VALUES ('a'), ('b'), ('c')", counter(101))
    assert result.generated_ids == (101, 102, 103)
    assert result.route is Route.MULTI
    assert units(result) == [
        ("ds0", "INSERT INTO notes_1 (body, `id`) VALUES ('a', 101)"),
        ("ds1", "INSERT INTO notes_2 (body, `id`) VALUES ('b', 102)"),
        ("ds1", "INSERT INTO notes_3 (body, `id`) VALUES ('c', 103)"),
    ]


def test_cached_plans_take_new_keys_every_time(router: Router) -> None:
    new_ids = counter(8)
    first = plan(router, "INSERT INTO notes (body) VALUES ('x')", new_ids)
    misses = router.misses
    second = plan(router, "INSERT INTO notes (body) VALUES ('y')", new_ids)
    assert router.misses == misses  # same shape: a cache hit
    assert units(first) == [("ds0", "INSERT INTO notes_0 (body, `id`) VALUES ('x', 8)")]
    assert units(second) == [("ds0", "INSERT INTO notes_1 (body, `id`) VALUES ('y', 9)")]


def test_a_generated_key_beside_the_shard_key(router: Router) -> None:
    sql = (
        "INSERT INTO posts (user_id, title) VALUES (3, 'a'), (3, 'b') "
        "ON DUPLICATE KEY UPDATE title = VALUES(title)"
    )
    result = plan(router, sql, counter(50))
    assert result.generated_ids == (50, 51)
    assert units(result) == [
        (
            "ds1",
            "INSERT INTO posts_3 (user_id, title, `id`) VALUES (3, 'a', 50), (3, 'b', 51) "
            "ON DUPLICATE KEY UPDATE title = VALUES(title)",
        )
    ]
    with pytest.raises(NoDefaultForField):
        plan(router, "INSERT INTO posts (title) VALUES ('no user')", counter(1))


def test_a_given_key_is_used_as_written(router: Router) -> None:
    result = plan(router, "INSERT INTO notes (id, body) VALUES (6, 'mine')", counter(1))
    assert result.generated_ids == ()
    assert units(result) == [("ds1", "INSERT INTO notes_2 (id, body) VALUES (6, 'mine')")]


def test_parameters_and_markers_keep_their_places(router: Router) -> None:
    sql = "INSERT INTO notes (`body`, extra) VALUES (?, 'e'), (?, 'f')"
    result = router.plan(sql, "shop", ["p", "q"], keep_markers=True, new_ids=counter(2))
    assert isinstance(result, QueryPlan)
    assert units(result) == [
        ("ds1", "INSERT INTO notes_2 (`body`, extra, `id`) VALUES (/*?0*/?, 'e', 2)"),
        ("ds1", "INSERT INTO notes_3 (`body`, extra, `id`) VALUES (/*?1*/?, 'f', 3)"),
    ]


def test_refused_without_a_key_source_or_for_insert_select(router: Router) -> None:
    with pytest.raises(NotSupported):
        router.plan("INSERT INTO notes (body) VALUES ('a')", "shop")
    with pytest.raises(NotSupported):
        plan(router, "INSERT INTO notes (body) SELECT name FROM settings", counter(1))


def test_last_insert_id_is_a_session_marker_not_a_cached_value(router: Router) -> None:
    result = router.plan("SELECT LAST_INSERT_ID()", "shop")
    assert isinstance(result, QueryPlan)
    assert units(result) == [
        ("ds0", "SELECT /*shardproxy:last_insert_id*/NULL AS `LAST_INSERT_ID()`")
    ]
    result = router.plan("SELECT LAST_INSERT_ID(7)", "shop")
    assert isinstance(result, QueryPlan)
    assert units(result) == [("ds0", "SELECT LAST_INSERT_ID(7)")]

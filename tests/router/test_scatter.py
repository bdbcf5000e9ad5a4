"""Planning reads across shards (router.scatter): the per-shard SQL and the merge tree.

planner_config.py: users(id), orders(user_id), order_items(user_id) are bound and sharded by
`mod` over 4 shards (0, 1 on ds0; 2, 3 on ds1); countries is broadcast.
"""

from __future__ import annotations

import pytest
from planner_config import make_config

from router.errors import ProxyError
from router.plan import (
    Aggregate,
    Concat,
    Distinct,
    Limit,
    MergeSort,
    Project,
    QueryPlan,
    Route,
)
from router.planner import Router


@pytest.fixture
def router() -> Router:
    return Router(make_config())


def plan(router: Router, sql: str, params: list[object] | None = None) -> QueryPlan:
    result = router.plan(sql, "shop", params)
    assert isinstance(result, QueryPlan)
    return result


def first_sql(result: QueryPlan) -> str:
    return result.units[0].sql


def refusal(router: Router, sql: str) -> str:
    with pytest.raises(ProxyError) as error:
        router.plan(sql, "shop")
    assert error.value.code == 1235
    return error.value.message


def test_order_by_limit_merges_sorted_units_with_offset_plus_count_each(router: Router) -> None:
    result = plan(router, "SELECT id, name FROM users ORDER BY name DESC, id LIMIT 5, 10")
    assert result.route is Route.SCATTER
    # No weights for `id`: the shard key of a `mod` table is an integer.
    assert first_sql(result) == (
        "SELECT id, name , WEIGHT_STRING(name), COLLATION(name) FROM users_0 "
        "ORDER BY name DESC, id LIMIT 15 "
    )
    assert str(result.merge) == (
        "Project(hide last 2)\n"
        "  Limit(offset 5, count 10)\n"
        "    MergeSort(#1 ws #2 coll #3 DESC, #0)"
    )


def test_a_cached_plan_takes_new_limit_values(router: Router) -> None:
    plan(router, "SELECT id FROM users ORDER BY id LIMIT 5, 10")
    result = plan(router, "SELECT id FROM users ORDER BY id LIMIT 100, 1")
    assert router.hits == 1
    assert first_sql(result).endswith("LIMIT 101 ")
    limit = result.merge
    assert isinstance(limit, Limit) and (limit.offset, limit.count) == (100, 1)


def test_prepared_limit_parameters_are_computed(router: Router) -> None:
    result = router.plan("SELECT id FROM users ORDER BY id LIMIT ?, ?", "shop", [3, 4], True)
    assert isinstance(result, QueryPlan)
    assert first_sql(result).endswith("LIMIT 7 ")
    limit = result.merge
    assert isinstance(limit, Limit) and (limit.offset, limit.count) == (3, 4)


def test_a_limit_to_the_last_row_stays_within_limits_range(router: Router) -> None:
    """`LIMIT 5, 18446744073709551615` reads every row from the 6th on: each shard reads up to
    LIMIT's largest value (offset + count would pass it, and MariaDB refuses that)."""
    result = plan(router, "SELECT id FROM users ORDER BY id LIMIT 5, 18446744073709551615")
    assert first_sql(result).endswith("LIMIT 18446744073709551615 ")
    limit = result.merge
    assert isinstance(limit, Limit) and (limit.offset, limit.count) == (5, (1 << 64) - 1)
    prepared = router.plan(
        "SELECT id FROM users ORDER BY id LIMIT ?, ?", "shop", [7, (1 << 64) - 1], True
    )
    assert isinstance(prepared, QueryPlan)
    assert first_sql(prepared).endswith("LIMIT 18446744073709551615 ")


def test_count_distinct_of_an_expression_groups_by_the_whole_expression(router: Router) -> None:
    """sqlglot locates `name` but not the CAST around it: the argument is read from tokens."""
    result = plan(router, "SELECT COUNT(DISTINCT CAST(name AS BINARY), TRIM(name)) FROM users")
    assert first_sql(result).endswith("FROM users_0 GROUP BY CAST(name AS BINARY), TRIM(name) ")


def test_group_by_a_name_that_is_also_an_alias_asks_the_shards(router: Router) -> None:
    """GROUP BY takes a table's column before a select alias of the same name; only the
    shards know the columns, and `(SELECT age)` resolves as GROUP BY does."""
    result = plan(
        router,
        "SELECT age DIV 10 AS age, COUNT(*) FROM users GROUP BY age HAVING COUNT(*) > 1 OR age > 8",
    )
    assert first_sql(result).startswith(
        "SELECT age DIV 10 AS age, COUNT(*) , (SELECT age), WEIGHT_STRING((SELECT age)), "
    )
    assert "Filter(((#5 > 1) OR (#2 > 8)))" in str(result.merge)
    assert "Aggregate(group #2 ws #3 coll #4;" in str(result.merge)


def test_an_order_by_expression_reads_a_name_as_the_shards_would(router: Router) -> None:
    """`ORDER BY CONCAT(city, '')` sorts by the column `city`, not by the alias `city`: the
    shards resolve `(SELECT city)` as MariaDB does; a window alias keeps its expression."""
    result = plan(router, "SELECT id, name AS city FROM users ORDER BY CONCAT(city, ''), id")
    assert "CONCAT((SELECT city), '')" in first_sql(result)
    window = plan(
        router,
        "SELECT id, ROW_NUMBER() OVER (PARTITION BY id) rn FROM users ORDER BY rn + 0, id",
    )
    assert "(ROW_NUMBER() OVER (PARTITION BY id)) + 0" in first_sql(window)


def test_grouped_order_by_an_expression_over_an_alias(router: Router) -> None:
    """A hidden sort key can't name a select alias (`d + 0` failed with 1054 on the shards)."""
    result = plan(
        router, "SELECT age DIV 10 AS d, COUNT(*) FROM users GROUP BY d ORDER BY d + 0 DESC"
    )
    assert "(SELECT d) + 0" in first_sql(result)


def test_one_shard_runs_the_statement_whole(router: Router) -> None:
    sql = "SELECT name, AVG(id) FROM users WHERE id = 7 GROUP BY name ORDER BY 2 LIMIT 1, 2"
    result = plan(router, sql)
    assert result.route is Route.SINGLE and isinstance(result.merge, Concat)
    assert first_sql(result) == sql.replace("users", "users_3")


def test_grouping_across_shards_merges_partial_aggregates(router: Router) -> None:
    result = plan(
        router,
        "SELECT name, COUNT(*), AVG(age) a FROM users GROUP BY name HAVING COUNT(*) > 1 "
        "ORDER BY a DESC LIMIT 3",
    )
    assert first_sql(result) == (
        "SELECT name, COUNT(*), AVG(age) a , WEIGHT_STRING(name), COLLATION(name), SUM(age), "
        "COUNT(age), COUNT(*), @@div_precision_increment FROM users_0 GROUP BY name    "
    )
    assert str(result.merge) == (
        "Project(hide last 6)\n"
        "  Limit(offset 0, count 3)\n"
        "    Sort(#2 DESC)\n"
        "      Filter((#7 > 1))\n"
        "        Aggregate(group #0 ws #3 coll #4; #1 COUNT, #2 = /(#5, #6, #8), #5 SUM, "
        "#6 COUNT, #7 COUNT)\n"
        "          Concat"
    )


def test_grouping_by_the_shard_key_stays_on_the_shards(router: Router) -> None:
    result = plan(router, "SELECT user_id, COUNT(*) FROM orders GROUP BY user_id")
    assert first_sql(result) == "SELECT user_id, COUNT(*) FROM orders_0 GROUP BY user_id"
    assert str(result.merge) == "MergeSort(#0)"  # MariaDB returns groups in key order


def test_count_distinct_groups_by_its_argument_on_the_shards(router: Router) -> None:
    result = plan(router, "SELECT COUNT(DISTINCT name) FROM users")
    assert first_sql(result) == (
        "SELECT COUNT(DISTINCT name) , name, WEIGHT_STRING(name), COLLATION(name) "
        "FROM users_0 GROUP BY name "
    )
    aggregate = result.merge.source  # type: ignore[union-attr]
    assert isinstance(aggregate, Aggregate) and aggregate.scalar


def test_distinct_runs_as_group_by_on_the_shards(router: Router) -> None:
    result = plan(router, "SELECT DISTINCT name FROM users ORDER BY name LIMIT 4")
    assert first_sql(result) == (
        "SELECT  name , WEIGHT_STRING(name), COLLATION(name) FROM users_0  GROUP BY 1 "
        "ORDER BY name LIMIT 4 "
    )
    distinct = result.merge.source.source  # type: ignore[union-attr]
    assert isinstance(distinct, Distinct) and isinstance(distinct.source, MergeSort)


def test_a_distinct_without_order_by_is_sorted_on_the_shards_to_stream(router: Router) -> None:
    """Sorted by the select list, equal rows from all shards meet in the merge sort, so the
    DISTINCT compares neighbours instead of holding every row seen (router.merge)."""
    result = plan(router, "SELECT DISTINCT name, total FROM users WHERE id > 3 LIMIT 2, 3")
    assert first_sql(result) == (
        "SELECT  name, total , WEIGHT_STRING(name), COLLATION(name), WEIGHT_STRING(total), "
        "COLLATION(total) FROM users_0 WHERE id > 3  GROUP BY 1, 2 ORDER BY 1, 2 LIMIT 5 "
    )
    distinct = result.merge.source.source  # type: ignore[union-attr]
    assert isinstance(distinct, Distinct) and isinstance(distinct.source, MergeSort)
    assert [k.key for k in distinct.source.keys] == list(distinct.keys)
    # ORDER BY NULL (no order wanted): the units are concatenated, as before.
    result = plan(router, "SELECT DISTINCT name FROM users ORDER BY NULL")
    assert first_sql(result).endswith(" GROUP BY 1 ORDER BY NULL")
    assert isinstance(result.merge.source.source, Concat)  # type: ignore[union-attr]


def test_distinct_over_the_shard_key_needs_no_merge(router: Router) -> None:
    result = plan(router, "SELECT DISTINCT user_id, total FROM orders")
    assert isinstance(result.merge, Concat)


def test_union_runs_in_a_cte_per_shard(router: Router) -> None:
    result = plan(router, "SELECT name FROM users UNION SELECT sku FROM orders ORDER BY 1 LIMIT 2")
    assert first_sql(result) == (
        "WITH `_u` (`_c1`) AS (SELECT name FROM users_0 UNION SELECT sku FROM orders_0 ) "
        "SELECT `_c1` AS `name`, WEIGHT_STRING(`_c1`), COLLATION(`_c1`) FROM `_u` "
        "ORDER BY `_c1` LIMIT 2"
    )
    assert isinstance(result.merge, Project)


def test_union_all_just_concatenates(router: Router) -> None:
    result = plan(router, "SELECT id FROM users UNION ALL SELECT user_id FROM orders")
    assert isinstance(result.merge, Concat)


def test_star_hidden_columns_count_from_the_end(router: Router) -> None:
    result = plan(router, "SELECT * FROM users ORDER BY name")
    assert str(result.merge) == "Project(hide last 3)\n  MergeSort(#-3 ws #-2 coll #-1)"


def test_joins_on_the_shard_key_and_with_broadcast_tables_push_down(router: Router) -> None:
    result = plan(
        router,
        "SELECT c.name, COUNT(*) FROM users u JOIN orders o ON o.user_id = u.id "
        "JOIN countries c ON c.code = u.country GROUP BY c.name",
    )
    assert len(result.units) == 4 and "orders_0" in first_sql(result)


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("SELECT * FROM orders WHERE total > (SELECT AVG(total) FROM orders)", "joining"),
        ("SELECT * FROM (SELECT name, COUNT(*) n FROM users GROUP BY name) t", "grouping"),
        ("SELECT * FROM (SELECT id FROM users ORDER BY id LIMIT 3) t", "LIMIT"),
        ("SELECT id, ROW_NUMBER() OVER (ORDER BY id) FROM users", "window"),
        ("SELECT c.code, u.id FROM countries c LEFT JOIN users u ON u.country = c.code", "outer"),
        ("SELECT id FROM users u WHERE u.id NOT IN (SELECT user_id FROM orders)", ""),
        ("SELECT name, STD(age) FROM users GROUP BY name", "STDDEV"),
        ("SELECT name, GROUP_CONCAT(id ORDER BY id) FROM users GROUP BY name", "GROUP_CONCAT"),
        ("SELECT name, COUNT(*) FROM users GROUP BY name WITH ROLLUP", "ROLLUP"),
        (
            "SELECT name FROM users UNION ALL SELECT name FROM users UNION SELECT 'x' FROM users",
            "mixing",
        ),
    ],
)
def test_inexact_shapes_are_refused_across_shards(router: Router, sql: str, reason: str) -> None:
    assert reason in refusal(router, sql)


def test_refused_shapes_still_run_on_one_shard(router: Router) -> None:
    for sql in (
        "SELECT id, ROW_NUMBER() OVER (ORDER BY id) FROM users WHERE id = 5",
        "SELECT name, STD(age) FROM users WHERE id IN (4, 8) GROUP BY name",
    ):
        result = plan(router, sql)
        assert result.route is Route.SINGLE and isinstance(result.merge, Concat)


def test_having_keeps_conditions_without_aggregates_on_the_shards(router: Router) -> None:
    result = plan(
        router,
        "SELECT name, COUNT(*) FROM users GROUP BY name HAVING name LIKE 'a%' AND COUNT(*) > 1",
    )
    assert "HAVING (name LIKE 'a%') " in first_sql(result)
    assert "Filter((#4 > 1))" in str(result.merge)


def test_each_union_branch_brings_its_own_shards(router: Router) -> None:
    result = plan(
        router, "SELECT id FROM users WHERE id = 7 UNION ALL SELECT id FROM users WHERE id = 10"
    )
    assert [u.sql.split()[3] for u in result.units] == ["users_2", "users_3"]
    result = plan(router, "SELECT id FROM users WHERE id = 7 UNION ALL SELECT id FROM users")
    assert result.route is Route.SCATTER


def test_derived_tables_narrow_the_shards(router: Router) -> None:
    result = plan(router, "SELECT t.n FROM (SELECT COUNT(*) n FROM orders WHERE user_id = 6) t")
    assert result.route is Route.SINGLE and first_sql(result).endswith(
        "orders_2 WHERE user_id = 6) t"
    )

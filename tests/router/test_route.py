"""Routing rules: which data nodes a statement runs on, and the physical SQL each one gets.

The config is described in planner_config.py: users/orders/order_items are bound and sharded
by `mod` over 4 shards (0, 1 on ds0; 2, 3 on ds1), so key K lives in shard K % 4.
"""

from __future__ import annotations

import pytest
from planner_config import make_config

from router.errors import ProxyError
from router.plan import (
    AdminShow,
    AdminWhat,
    DiagnosticsPlan,
    ExplainShards,
    KillPlan,
    MetadataPlan,
    Note,
    Plan,
    ProxyShow,
    QueryPlan,
    ReloadConfig,
    Route,
    SetPlan,
    SetVar,
    ShowPlan,
    ShowWhat,
    TransactionPlan,
    TxnAction,
    Unit,
    UsePlan,
)
from router.planner import Router


@pytest.fixture
def router() -> Router:
    return Router(make_config())


def query(
    router: Router, sql: str, database: str | None = "shop", params: list[object] | None = None
) -> QueryPlan:
    plan = router.plan(sql, database, params)
    assert isinstance(plan, QueryPlan)
    return plan


def units(plan: Plan) -> list[tuple[str, str]]:
    assert isinstance(plan, QueryPlan)
    return [(unit.backend, unit.sql) for unit in plan.units]


def refused(router: Router, sql: str, database: str | None = "shop") -> ProxyError:
    with pytest.raises(ProxyError) as error:
        router.plan(sql, database)
    return error.value


# --- shard-key predicates ----------------------------------------------------------------------


def test_point_select_goes_to_one_shard(router: Router) -> None:
    plan = query(router, "SELECT id, total FROM orders WHERE user_id = 42")
    assert plan.route is Route.SINGLE and not plan.is_write
    assert units(plan) == [("ds1", "SELECT id, total FROM orders_2 WHERE user_id = 42")]


def test_literal_on_the_left(router: Router) -> None:
    assert units(query(router, "SELECT * FROM orders WHERE 5 = user_id")) == [
        ("ds0", "SELECT * FROM orders_1 WHERE 5 = user_id")
    ]


def test_in_list_picks_each_shard_once_even_on_one_backend(router: Router) -> None:
    plan = query(router, "SELECT * FROM orders WHERE user_id IN (0, 1, 4, 5)")
    assert plan.route is Route.MULTI
    assert units(plan) == [
        ("ds0", "SELECT * FROM orders_0 WHERE user_id IN (0, 1, 4, 5)"),
        ("ds0", "SELECT * FROM orders_1 WHERE user_id IN (0, 1, 4, 5)"),
    ]


def test_no_usable_predicate_scatters(router: Router) -> None:
    for sql in (
        "SELECT * FROM orders",
        "SELECT * FROM orders WHERE total > 5",
        "SELECT * FROM orders WHERE user_id = 1 OR total > 5",
        "SELECT * FROM orders WHERE user_id <> 1",
        "SELECT * FROM orders WHERE user_id NOT IN (1, 2)",
        "SELECT * FROM orders WHERE user_id = total",
        "SELECT * FROM orders WHERE user_id = 1 + 1",
        "SELECT * FROM orders WHERE user_id > 5",  # mod can't narrow a range
    ):
        plan = query(router, sql)
        assert plan.route is Route.SCATTER, sql
        assert [u.backend for u in plan.units] == ["ds0", "ds0", "ds1", "ds1"]
        assert plan.units[3].sql == sql.replace("orders", "orders_3")


def test_and_intersects_or_unites(router: Router) -> None:
    shards = lambda sql: [u.sql.split()[3] for u in query(router, sql).units]  # noqa: E731
    assert shards("SELECT * FROM orders WHERE user_id = 1 AND total > 5") == ["orders_1"]
    assert shards("SELECT * FROM orders WHERE user_id = 1 OR user_id = 2") == [
        "orders_1",
        "orders_2",
    ]
    assert shards(
        "SELECT * FROM orders WHERE (user_id = 1 OR user_id = 6) AND user_id IN (6, 7)"
    ) == ["orders_2"]
    assert shards(
        "SELECT * FROM orders WHERE user_id IN (1, 2) AND (total > 1 OR user_id = 3)"
    ) == [
        "orders_1",
        "orders_2",
    ]


def test_contradiction_runs_on_one_shard(router: Router) -> None:
    plan = query(router, "SELECT * FROM orders WHERE user_id = 1 AND user_id = 2")
    assert plan.route is Route.SINGLE and len(plan.units) == 1


def test_is_null_is_shard_zero(router: Router) -> None:
    assert units(query(router, "SELECT * FROM orders WHERE user_id IS NULL")) == [
        ("ds0", "SELECT * FROM orders_0 WHERE user_id IS NULL")
    ]
    assert (
        query(router, "SELECT * FROM orders WHERE user_id <=> NULL")
        .units[0]
        .sql.endswith("orders_0 WHERE user_id <=> NULL")
    )


def test_literal_kinds_route_by_value(router: Router) -> None:
    for literal in ("6", "'6'", "6.0", "-2", "_utf8mb4'6'", "N'6'"):
        plan = query(router, f"SELECT * FROM orders WHERE user_id = {literal}")
        assert units(plan) == [("ds1", f"SELECT * FROM orders_2 WHERE user_id = {literal}")], (
            literal
        )


def test_ranges_narrow_range_sharded_tables(router: Router) -> None:
    tables = lambda sql: [u.sql.split()[3] for u in query(router, sql).units]  # noqa: E731
    assert tables("SELECT * FROM events WHERE id BETWEEN 50 AND 150") == ["events_0", "events_1"]
    assert tables("SELECT * FROM events WHERE id >= 200") == ["events_2"]
    assert tables("SELECT * FROM events WHERE id < 100") == ["events_0"]
    assert tables("SELECT * FROM events WHERE 100 <= id AND id < 200") == ["events_1"]
    assert tables("SELECT * FROM events WHERE 99 > id OR id = 250") == ["events_0", "events_2"]
    assert tables("SELECT * FROM events WHERE id > -5 AND id <= 100") == ["events_0", "events_1"]
    assert tables("SELECT * FROM events WHERE id BETWEEN 150 AND 50") == ["events_0"]  # empty


def test_key_qualified_by_alias_table_name_or_database(router: Router) -> None:
    assert units(query(router, "SELECT o.id FROM orders AS o WHERE o.user_id = 3")) == [
        ("ds1", "SELECT o.id FROM orders_3 AS o WHERE o.user_id = 3")
    ]
    assert units(query(router, "SELECT orders.id FROM orders WHERE orders.user_id = 3")) == [
        ("ds1", "SELECT orders_3.id FROM orders_3 WHERE orders_3.user_id = 3")
    ]
    assert units(
        query(router, "SELECT shop.orders.id FROM shop.orders WHERE shop.orders.user_id = 3")
    ) == [("ds1", "SELECT orders_3.id FROM orders_3 WHERE orders_3.user_id = 3")]


def test_names_are_case_insensitive_and_keep_backticks(router: Router) -> None:
    assert units(query(router, "SELECT * FROM ORDERS WHERE USER_ID = 3")) == [
        ("ds1", "SELECT * FROM orders_3 WHERE USER_ID = 3")
    ]
    assert units(
        query(router, "SELECT `Orders`.`id` FROM `shop`.`Orders` WHERE `user_id` = 3")
    ) == [("ds1", "SELECT `orders_3`.`id` FROM `orders_3` WHERE `user_id` = 3")]


def test_the_client_text_is_kept_byte_for_byte(router: Router) -> None:
    sql = "select  1 from DUAL, orders\tWHERE user_id=7 LIMIT 1, 2 /* gone */"
    assert units(query(router, sql)) == [
        ("ds1", "select  1 from DUAL, orders_3\tWHERE user_id=7 LIMIT 1, 2")
    ]


def test_optimizer_hints_reach_the_backend(router: Router) -> None:
    sql = "SELECT /*+ MAX_EXECUTION_TIME(100) */ * FROM orders WHERE user_id = 1"
    assert query(router, sql).units[0].sql == sql.replace("orders", "orders_1")


# --- databases and unknown names ---------------------------------------------------------------


def test_table_of_another_logical_database(router: Router) -> None:
    assert units(query(router, "SELECT * FROM crm.contacts")) == [("ds2", "SELECT * FROM contacts")]
    assert units(query(router, "SELECT * FROM contacts", database="crm")) == [
        ("ds2", "SELECT * FROM contacts")
    ]


def test_unknown_names(router: Router) -> None:
    error = refused(router, "SELECT * FROM nope.orders")
    assert (error.code, error.sqlstate, error.message) == (1049, "42000", "Unknown database 'nope'")
    error = refused(router, "SELECT * FROM orders", database=None)
    assert (error.code, error.sqlstate) == (1046, "3D000")
    error = refused(router, "SELECT * FROM Missing")
    assert (error.code, error.sqlstate, error.message) == (
        1146,
        "42S02",
        "Table 'shop.Missing' doesn't exist",
    )
    assert refused(router, "SELECT 1", database="gone").code == 1049


def test_system_schemas_answer_with_logical_names(router: Router) -> None:
    # information_schema reads the metadata catalog (tests/router/test_metadata.py has more).
    sql = "SELECT table_name FROM information_schema.tables WHERE table_schema = 'shop'"
    plan = router.plan(sql, "shop")
    assert isinstance(plan, MetadataPlan) and plan.catalog
    assert plan.unit.backend == "ds0"
    assert plan.unit.sql.endswith("WHERE table_schema = 'shardproxy_meta_shop'")
    # Other system schemas: the default backend's, with physical names made logical.
    assert router.plan("SELECT * FROM mysql.user", "crm") == MetadataPlan(
        Unit("ds2", "SELECT * FROM mysql.user")
    )
    assert refused(router, "SELECT * FROM information_schema.tables JOIN orders").code == 1235
    assert refused(router, "DELETE FROM mysql.user").code == 1235


# --- several tables ----------------------------------------------------------------------------


def test_bound_tables_joined_on_the_key_share_a_shard(router: Router) -> None:
    sql = (
        "SELECT * FROM users u JOIN orders o ON o.user_id = u.id "
        "JOIN order_items i ON i.user_id = o.user_id WHERE u.id = 6"
    )
    assert units(query(router, sql)) == [
        (
            "ds1",
            "SELECT * FROM users_2 u JOIN orders_2 o ON o.user_id = u.id "
            "JOIN order_items_2 i ON i.user_id = o.user_id WHERE u.id = 6",
        )
    ]


def test_bound_join_without_predicate_scatters_shard_by_shard(router: Router) -> None:
    plan = query(router, "SELECT * FROM orders JOIN order_items USING (user_id)")
    assert plan.route is Route.SCATTER
    assert [u.sql for u in plan.units] == [
        f"SELECT * FROM orders_{i} JOIN order_items_{i} USING (user_id)" for i in range(4)
    ]


def test_predicate_on_either_bound_table_narrows_both(router: Router) -> None:
    sql = (
        "SELECT * FROM orders o, order_items i WHERE o.user_id = i.user_id AND i.user_id IN (2, 3)"
    )
    assert [u.sql.split()[3] for u in query(router, sql).units] == ["orders_2", "orders_3"]


def test_correlated_subquery_on_the_key_stays_in_the_shard(router: Router) -> None:
    sql = (
        "SELECT * FROM orders o WHERE o.user_id = 5 AND EXISTS "
        "(SELECT 1 FROM order_items i WHERE i.user_id = o.user_id)"
    )
    assert units(query(router, sql)) == [
        ("ds0", sql.replace("orders o", "orders_1 o").replace("order_items", "order_items_1"))
    ]
    sql = "SELECT * FROM orders WHERE user_id IN (SELECT user_id FROM order_items WHERE sku = 'x')"
    assert len(query(router, sql).units) == 4


def test_self_join_on_the_key(router: Router) -> None:
    sql = "SELECT * FROM orders a JOIN orders b ON a.user_id = b.user_id WHERE b.user_id = 4"
    assert units(query(router, sql)) == [
        (
            "ds0",
            "SELECT * FROM orders_0 a JOIN orders_0 b ON a.user_id = b.user_id WHERE b.user_id = 4",
        )
    ]


def test_outer_joined_table_does_not_narrow(router: Router) -> None:
    join = "SELECT * FROM orders o LEFT JOIN order_items i ON o.user_id = i.user_id"
    sql = f"{join} WHERE i.user_id IS NULL"
    assert query(router, sql).route is Route.SCATTER
    sql = f"{join} WHERE o.user_id = 1"
    assert query(router, sql).route is Route.SINGLE


@pytest.mark.parametrize(
    ("sql", "names"),
    [
        (
            "SELECT * FROM orders o JOIN order_items i ON o.id = i.order_id",
            "'order_items', 'orders'",
        ),
        (
            "SELECT * FROM orders o JOIN order_items i ON o.user_id = i.user_id OR 1",
            "'order_items', 'orders'",
        ),
        ("SELECT * FROM orders o JOIN tags t ON o.user_id = t.name", "'orders', 'tags'"),
        ("SELECT * FROM orders a JOIN orders b ON a.id = b.id WHERE a.user_id = 1", "'orders'"),
        ("SELECT user_id FROM orders UNION SELECT name FROM tags", "'orders', 'tags'"),
        (
            "SELECT * FROM orders WHERE total > (SELECT AVG(total) FROM order_items)",
            "'order_items', 'orders'",
        ),
    ],
)
def test_joins_across_shards_are_refused(router: Router, sql: str, names: str) -> None:
    error = refused(router, sql)
    assert error.code == 1235 and error.sqlstate == "42000"
    assert names in error.message


def test_broadcast_table_joins_use_the_local_copy(router: Router) -> None:
    sql = "SELECT * FROM orders o JOIN countries c ON c.id = o.country_id WHERE o.user_id IN (1, 2)"
    assert units(query(router, sql)) == [
        (
            "ds0",
            "SELECT * FROM orders_1 o JOIN countries c ON c.id = o.country_id "
            "WHERE o.user_id IN (1, 2)",
        ),
        (
            "ds1",
            "SELECT * FROM orders_2 o JOIN countries c ON c.id = o.country_id "
            "WHERE o.user_id IN (1, 2)",
        ),
    ]
    sql = "SELECT * FROM orders WHERE country_id IN (SELECT id FROM countries WHERE eu)"
    assert len(query(router, sql).units) == 4


def test_single_table_joins(router: Router) -> None:
    sql = "SELECT * FROM settings s JOIN countries c ON c.id = s.country"
    plan = query(router, sql)
    assert plan.route is Route.UNSHARDED
    assert units(plan) == [("ds0", sql)]
    assert units(query(router, "SELECT * FROM audit JOIN countries")) == [
        ("ds1", "SELECT * FROM audit_log JOIN countries")
    ]
    assert "different backends" in refused(router, "SELECT * FROM settings JOIN audit").message


def test_sharded_with_single_table_only_where_co_located(router: Router) -> None:
    assert units(query(router, "SELECT * FROM orders JOIN settings WHERE user_id = 4")) == [
        ("ds0", "SELECT * FROM orders_0 JOIN settings WHERE user_id = 4")
    ]
    error = refused(router, "SELECT * FROM orders JOIN settings WHERE user_id = 2")
    assert error.code == 1235 and "'settings'" in error.message
    assert refused(router, "SELECT * FROM orders JOIN settings").code == 1235


def test_rows_that_a_shard_would_repeat_need_a_single_shard(router: Router) -> None:
    sql = "SELECT name FROM countries UNION ALL SELECT sku FROM orders WHERE user_id = 9"
    assert units(query(router, sql)) == [
        ("ds0", "SELECT name FROM countries UNION ALL SELECT sku FROM orders_1 WHERE user_id = 9")
    ]
    assert (
        refused(router, "SELECT name FROM countries UNION ALL SELECT sku FROM orders").code == 1235
    )
    assert (
        refused(router, "SELECT * FROM countries WHERE id IN (SELECT country_id FROM orders)").code
        == 1235
    )


def test_derived_tables_and_ctes_over_a_sharded_table_scatter(router: Router) -> None:
    plan = query(router, "SELECT COUNT(*) FROM (SELECT * FROM orders WHERE total > 1) AS t")
    assert [u.sql for u in plan.units][
        1
    ] == "SELECT COUNT(*) FROM (SELECT * FROM orders_1 WHERE total > 1) AS t"
    plan = query(router, "WITH big AS (SELECT * FROM orders) SELECT * FROM big")
    assert plan.units[2].sql == "WITH big AS (SELECT * FROM orders_2) SELECT * FROM big"


# --- tables of other kinds, no table -----------------------------------------------------------


def test_broadcast_reads_one_copy_and_writes_all(router: Router) -> None:
    plan = query(router, "SELECT * FROM countries WHERE id = 1")
    assert (plan.route, plan.is_write) == (Route.BROADCAST, False)
    assert units(plan) == [("ds0", "SELECT * FROM countries WHERE id = 1")]
    for sql in (
        "UPDATE countries SET name = 'X' WHERE id = 1",
        "DELETE FROM countries WHERE id = 1",
        "INSERT INTO countries (id, name) VALUES (1, 'X'), (2, 'Y')",
        "REPLACE INTO countries (id) VALUES (1)",
    ):
        plan = query(router, sql)
        assert (plan.route, plan.is_write) == (Route.BROADCAST, True)
        assert units(plan) == [("ds0", sql), ("ds1", sql)]


def test_single_tables_go_to_their_backend(router: Router) -> None:
    plan = query(router, "UPDATE audit SET x = 1")
    assert (plan.route, plan.is_write) == (Route.UNSHARDED, True)
    assert units(plan) == [("ds1", "UPDATE audit_log SET x = 1")]
    assert units(query(router, "INSERT INTO settings SELECT * FROM countries")) == [
        ("ds0", "INSERT INTO settings SELECT * FROM countries")
    ]


def test_statements_without_tables_go_to_the_default_backend(router: Router) -> None:
    for sql in (
        "SELECT 1",
        "SELECT @@version",
        "SELECT NOW()",
        "SELECT 1 FROM DUAL",
        "SELECT @@version_comment LIMIT 1",
    ):
        plan = query(router, sql)
        assert plan.route is Route.UNSHARDED
        assert units(plan) == [("ds0", sql)]
    assert units(query(router, "SELECT 1", database="crm")) == [("ds2", "SELECT 1")]
    assert units(query(router, "SELECT 1", database=None)) == [("ds0", "SELECT 1")]


def test_database_function_names_the_logical_database(router: Router) -> None:
    assert units(query(router, "SELECT DATABASE()")) == [("ds0", "SELECT 'shop' AS `DATABASE()`")]
    assert units(query(router, "select database(), schema ( ) AS s", database="crm")) == [
        ("ds2", "select 'crm' AS `database()`, 'crm' AS s")
    ]
    assert units(query(router, "SELECT DATABASE()", database=None)) == [
        ("ds0", "SELECT NULL AS `DATABASE()`")
    ]
    assert units(
        query(router, "SELECT id FROM orders WHERE user_id = 1 AND DATABASE() = 'shop'")
    ) == [("ds0", "SELECT id FROM orders_1 WHERE user_id = 1 AND 'shop' = 'shop'")]


# --- INSERT ------------------------------------------------------------------------------------


def test_insert_rows_split_per_shard(router: Router) -> None:
    plan = query(
        router,
        "INSERT INTO orders (id, user_id, note) VALUES (1, 1, 'a'), (2, 2, 'b, (c)'), (3, 5, 'd')",
    )
    assert (plan.route, plan.is_write) == (Route.MULTI, True)
    assert units(plan) == [
        ("ds0", "INSERT INTO orders_1 (id, user_id, note) VALUES (1, 1, 'a'), (3, 5, 'd')"),
        ("ds1", "INSERT INTO orders_2 (id, user_id, note) VALUES (2, 2, 'b, (c)')"),
    ]


def test_insert_into_one_shard_keeps_the_statement_whole(router: Router) -> None:
    sql = (
        "INSERT IGNORE INTO shop.orders (id, user_id) VALUES (1, 3),(2, 7) "
        "ON DUPLICATE KEY UPDATE id = VALUES(id)"
    )
    plan = query(router, sql)
    assert plan.route is Route.SINGLE
    assert units(plan) == [("ds1", sql.replace("shop.orders", "orders_3"))]


def test_insert_keeps_on_duplicate_key_update_in_every_piece(router: Router) -> None:
    plan = query(
        router,
        "INSERT INTO orders (user_id, n) VALUES (0, 1), (1, 2) AS new "
        "ON DUPLICATE KEY UPDATE n = new.n",
    )
    assert [u.sql for u in plan.units] == [
        "INSERT INTO orders_0 (user_id, n) VALUES (0, 1) AS new ON DUPLICATE KEY UPDATE n = new.n",
        "INSERT INTO orders_1 (user_id, n) VALUES (1, 2) AS new ON DUPLICATE KEY UPDATE n = new.n",
    ]


def test_replace_and_insert_set(router: Router) -> None:
    assert units(query(router, "REPLACE INTO orders (user_id, x) VALUES (3, 'a'), (4, 'b')")) == [
        ("ds0", "REPLACE INTO orders_0 (user_id, x) VALUES (4, 'b')"),
        ("ds1", "REPLACE INTO orders_3 (user_id, x) VALUES (3, 'a')"),
    ]
    assert units(query(router, "INSERT INTO orders SET user_id = 6, x = 'a'")) == [
        ("ds1", "INSERT INTO orders_2 SET user_id = 6, x = 'a'")
    ]


def test_insert_key_values(router: Router) -> None:
    assert units(query(router, "INSERT INTO orders (user_id) VALUES (NULL), (-3)")) == [
        ("ds0", "INSERT INTO orders_0 (user_id) VALUES (NULL)"),
        ("ds0", "INSERT INTO orders_1 (user_id) VALUES (-3)"),
    ]
    error = refused(router, "INSERT INTO orders (user_id) VALUES (1 + 1)")
    assert error.code == 1235 and "not a literal" in error.message


def test_insert_errors(router: Router) -> None:
    error = refused(router, "INSERT INTO orders (id, total) VALUES (1, 2)")
    assert (error.code, error.sqlstate, error.message) == (
        1364,
        "HY000",
        "Field 'user_id' doesn't have a default value",
    )
    error = refused(router, "INSERT INTO orders VALUES (1, 2)")
    assert error.code == 1235 and "without a column list" in error.message
    error = refused(router, "INSERT INTO orders (id, user_id) VALUES (1, 2), (3)")
    assert (error.code, error.sqlstate) == (1136, "21S01")
    error = refused(
        router, "INSERT INTO orders (user_id) VALUES (1) ON DUPLICATE KEY UPDATE user_id = 2"
    )
    assert error.code == 1235 and "move the row" in error.message
    error = refused(router, "INSERT INTO orders (user_id) SELECT user_id FROM order_items")
    assert error.code == 1235 and "INSERT ... SELECT" in error.message
    assert refused(router, "INSERT INTO countries (id) SELECT user_id FROM orders").code == 1235
    assert refused(router, "INSERT INTO audit SELECT * FROM settings").code == 1235
    error = refused(router, "INSERT orders")
    assert error.code == 1064 and error.message.endswith("near '' at line 1")


# --- UPDATE / DELETE ---------------------------------------------------------------------------


def test_update_and_delete_route_by_key(router: Router) -> None:
    plan = query(router, "UPDATE orders SET total = total + 1 WHERE user_id = 2 AND id = 9")
    assert (plan.route, plan.is_write) == (Route.SINGLE, True)
    assert units(plan) == [
        ("ds1", "UPDATE orders_2 SET total = total + 1 WHERE user_id = 2 AND id = 9")
    ]
    plan = query(router, "DELETE FROM orders WHERE id = 9")
    assert (plan.route, plan.is_write, len(plan.units)) == (Route.SCATTER, True, 4)


def test_multi_table_update_and_delete(router: Router) -> None:
    sql = (
        "UPDATE orders o JOIN order_items i ON i.user_id = o.user_id SET i.n = 1 "
        "WHERE o.user_id = 1"
    )
    assert units(query(router, sql)) == [
        ("ds0", sql.replace("orders o", "orders_1 o").replace("order_items", "order_items_1"))
    ]
    sql = "DELETE o, i FROM orders o JOIN order_items i USING (user_id) WHERE o.user_id = 3"
    assert units(query(router, sql)) == [
        (
            "ds1",
            "DELETE o, i FROM orders_3 o JOIN order_items_3 i USING (user_id) WHERE o.user_id = 3",
        )
    ]
    sql = "DELETE orders FROM orders JOIN countries c ON c.id = orders.cid WHERE orders.user_id = 3"
    assert units(query(router, sql)) == [
        (
            "ds1",
            "DELETE orders_3 FROM orders_3 JOIN countries c ON c.id = orders_3.cid "
            "WHERE orders_3.user_id = 3",
        )
    ]


def test_update_of_the_shard_key_is_refused(router: Router) -> None:
    for sql in (
        "UPDATE orders SET user_id = 5 WHERE id = 1",
        "UPDATE orders o SET o.USER_ID = 5",
        "UPDATE orders o JOIN countries c SET user_id = 1",
    ):
        error = refused(router, sql)
        assert (
            error.code == 1235
            and "changing the shard key column would move the row" in error.message
        )


def test_writes_that_would_repeat_per_shard_are_refused(router: Router) -> None:
    assert (
        refused(router, "UPDATE countries c JOIN orders o ON o.cid = c.id SET c.n = 1").code == 1235
    )
    assert refused(router, "DELETE FROM orders ORDER BY id LIMIT 10").code == 1235
    assert len(query(router, "DELETE FROM orders WHERE user_id = 1 LIMIT 10").units) == 1
    assert (
        refused(router, "UPDATE settings s JOIN orders o ON o.id = s.id SET s.n = 1").code == 1235
    )


# --- DDL ---------------------------------------------------------------------------------------


def test_ddl_runs_on_every_data_node(router: Router) -> None:
    sql = (
        "CREATE TABLE IF NOT EXISTS `orders` (id BIGINT, user_id INT, KEY k (user_id)) "
        "ENGINE=InnoDB COMMENT='o'"
    )
    plan = query(router, sql)
    assert (plan.route, plan.is_write, plan.implicit_commit) == (Route.SCATTER, True, True)
    assert units(plan) == [
        (backend, sql.replace("`orders`", f"`orders_{i}`"))
        for i, backend in enumerate(["ds0", "ds0", "ds1", "ds1"])
    ]
    assert units(query(router, "TRUNCATE TABLE shop.countries")) == [
        ("ds0", "TRUNCATE TABLE countries"),
        ("ds1", "TRUNCATE TABLE countries"),
    ]
    assert units(query(router, "ALTER TABLE audit ADD COLUMN x INT")) == [
        ("ds1", "ALTER TABLE audit_log ADD COLUMN x INT")
    ]
    assert [u.sql for u in query(router, "CREATE INDEX i ON orders (total)").units][
        3
    ] == "CREATE INDEX i ON orders_3 (total)"
    assert [u.sql for u in query(router, "DROP INDEX i ON orders").units][
        2
    ] == "DROP INDEX i ON orders_2"
    assert [u.sql for u in query(router, "CREATE TABLE order_items LIKE orders").units][1] == (
        "CREATE TABLE order_items_1 LIKE orders_1"
    )


def test_drop_table_and_rename_table(router: Router) -> None:
    plan = query(router, "DROP TABLE IF EXISTS settings, `events`")
    assert (plan.route, plan.implicit_commit) == (Route.SCATTER, True)
    assert units(plan) == [
        ("ds0", "DROP TABLE IF EXISTS settings"),
        ("ds0", "DROP TABLE IF EXISTS `events_0`"),
        ("ds1", "DROP TABLE IF EXISTS `events_1`"),
        ("ds1", "DROP TABLE IF EXISTS `events_2`"),
    ]
    assert refused(router, "DROP TABLE nope").code == 1051
    assert units(query(router, "RENAME TABLE orders TO order_items, users TO orders"))[0] == (
        "ds0",
        "RENAME TABLE orders_0 TO order_items_0, users_0 TO orders_0",
    )
    assert refused(router, "RENAME TABLE orders TO events").code == 1235


def test_drop_table_names_the_tables_it_does_not_know_in_one_1051(router: Router) -> None:
    """As MariaDB: with IF EXISTS a note and the known tables dropped; without, the error."""
    plan = query(router, "DROP TABLE IF EXISTS nope, crm.contacts, nodb.t, NOPE2")
    assert units(plan) == [("ds2", "DROP TABLE IF EXISTS contacts")]
    assert plan.notes == (Note(1051, "Unknown table 'shop.nope,nodb.t,shop.NOPE2'"),)
    assert "note 1051: Unknown table 'shop.nope,nodb.t,shop.NOPE2'" in str(plan)
    alone = query(router, "DROP TABLE IF EXISTS nope")
    assert (alone.units, alone.route, alone.implicit_commit) == ((), Route.UNSHARDED, True)
    assert alone.notes == (Note(1051, "Unknown table 'shop.nope'"),)
    error = refused(router, "DROP TABLE settings, nope, nodb.t")
    assert (error.code, error.message) == (1051, "Unknown table 'shop.nope,nodb.t'")
    assert query(router, "DROP TABLE settings").notes == ()
    for twice in ("DROP TABLE IF EXISTS nope, nope", "DROP TABLE settings, shop.SETTINGS"):
        assert refused(router, twice).code == 1066
    assert refused(router, "DROP TABLE IF EXISTS mysql.user").code == 1235
    assert refused(router, "DROP TABLE IF EXISTS nope", database=None).code == 1046


def test_ddl_sqlglot_cant_read_renames_the_table_after_the_head(router: Router) -> None:
    sql = "CREATE TABLE IF NOT EXISTS shop.orders (id INT) PARTITION BY HASH(id) PARTITIONS 4"
    plan = query(router, sql)
    assert (plan.route, plan.is_write, plan.implicit_commit) == (Route.SCATTER, True, True)
    assert [u.sql for u in plan.units][2] == (
        "CREATE TABLE IF NOT EXISTS orders_2 (id INT) PARTITION BY HASH(id) PARTITIONS 4"
    )
    sql = "ALTER TABLE `countries` ADD PARTITION (PARTITION p1 VALUES LESS THAN (10))"
    assert units(query(router, sql)) == [("ds0", sql), ("ds1", sql)]
    sql = "ALTER TABLE orders ADD PARTITION (PARTITION p VALUES LESS THAN (1)), RENAME TO x"
    assert "naming other tables" in refused(router, sql).message


@pytest.mark.parametrize(
    ("sql", "what"),
    [
        ("CREATE TABLE brand_new (id INT)", "not in the sharding config"),
        ("CREATE TABLE brand_new (id INT) PARTITION BY HASH(id)", "not in the sharding config"),
        ("CREATE TABLE orders SELECT * FROM settings", "CREATE TABLE ... SELECT"),
        ("CREATE TEMPORARY TABLE orders (id INT)", "CREATE TEMPORARY TABLE"),
        ("CREATE DATABASE x", "CREATE DATABASE"),
        ("DROP DATABASE shop", "DROP DATABASE"),
        ("CREATE VIEW v AS SELECT 1", "CREATE VIEW"),
        ("ALTER TABLE orders RENAME TO o2", "ALTER TABLE ... RENAME"),
        ("RENAME TABLE orders TO brand_new", "not in the sharding config"),
        ("CREATE TABLE orders (id INT, FOREIGN KEY (id) REFERENCES tags (name))", "'tags'"),
    ],
)
def test_ddl_refusals(router: Router, sql: str, what: str) -> None:
    error = refused(router, sql)
    assert error.code == 1235 and what in error.message


# --- session statements ------------------------------------------------------------------------


def test_use(router: Router) -> None:
    assert router.plan("USE crm", "shop") == UsePlan("crm")
    assert router.plan("use `shop`", None) == UsePlan("shop")
    assert router.plan("USE SHOP", None) == UsePlan("shop")
    assert refused(router, "USE nope").code == 1049


@pytest.mark.parametrize(
    ("sql", "assignments"),
    [
        ("SET NAMES utf8mb4", [("names", "utf8mb4")]),
        (
            "SET NAMES 'utf8mb4' COLLATE 'utf8mb4_general_ci'",
            [("names", "'utf8mb4' COLLATE 'utf8mb4_general_ci'")],
        ),
        ("SET CHARACTER SET utf8", [("character set", "utf8")]),
        ("SET CHARSET DEFAULT", [("character set", "DEFAULT")]),
        ("SET autocommit=0", [("autocommit", "0")]),
        (
            "SET SESSION sql_mode = 'A,B', @@local.wait_timeout=10",
            [("sql_mode", "'A,B'"), ("wait_timeout", "10")],
        ),
        ("SET @@SESSION.Time_Zone = '+00:00'", [("time_zone", "'+00:00'")]),
        (
            "SET @x = 1, @`Y` := (SELECT 1, 2), @'z w' = NULL",
            [("@x", "1"), ("@y", "(SELECT 1, 2)"), ("@`z w`", "NULL")],
        ),
        ("/*!40101 SET @OLD_SQL_MODE=@@SQL_MODE */", [("@old_sql_mode", "@@SQL_MODE")]),
        (
            "SET TRANSACTION ISOLATION LEVEL READ COMMITTED",
            [("transaction", "ISOLATION LEVEL READ COMMITTED")],
        ),
        ("SET SESSION TRANSACTION READ ONLY", [("session transaction", "READ ONLY")]),
    ],
)
def test_set(router: Router, sql: str, assignments: list[tuple[str, str]]) -> None:
    assert router.plan(sql, "shop") == SetPlan(tuple(SetVar(n, v) for n, v in assignments))


def test_set_global_is_denied(router: Router) -> None:
    for sql in ("SET GLOBAL max_connections = 1", "SET @@global.x = 1", "SET a = 1, GLOBAL b = 2"):
        error = refused(router, sql)
        assert (error.code, error.sqlstate) == (1227, "42000")
        assert (
            error.message
            == "Access denied; you need (at least one of) the SUPER privilege(s) for this operation"
        )


@pytest.mark.parametrize(
    ("sql", "plan"),
    [
        ("BEGIN", TransactionPlan(TxnAction.BEGIN)),
        ("begin work", TransactionPlan(TxnAction.BEGIN)),
        ("START TRANSACTION", TransactionPlan(TxnAction.BEGIN)),
        ("START TRANSACTION READ ONLY", TransactionPlan(TxnAction.BEGIN, access="READ ONLY")),
        (
            "start transaction with consistent snapshot,  read   write",
            TransactionPlan(TxnAction.BEGIN, access="READ WRITE"),
        ),
        ("START TRANSACTION WITH CONSISTENT SNAPSHOT", TransactionPlan(TxnAction.BEGIN)),
        ("COMMIT", TransactionPlan(TxnAction.COMMIT)),
        ("COMMIT WORK;", TransactionPlan(TxnAction.COMMIT)),
        ("COMMIT AND NO CHAIN NO RELEASE", TransactionPlan(TxnAction.COMMIT)),
        ("COMMIT WORK AND CHAIN", TransactionPlan(TxnAction.COMMIT, chain=True)),
        ("ROLLBACK", TransactionPlan(TxnAction.ROLLBACK)),
        ("rollback work", TransactionPlan(TxnAction.ROLLBACK)),
        ("ROLLBACK AND CHAIN", TransactionPlan(TxnAction.ROLLBACK, chain=True)),
    ],
)
def test_transactions(router: Router, sql: str, plan: TransactionPlan) -> None:
    assert router.plan(sql, None) == plan


@pytest.mark.parametrize(
    "sql",
    [
        "START TRANSACTION READ ONLY, READ WRITE",
        "START TRANSACTION READ ONLY, READ ONLY",
        "START TRANSACTION ISOLATION LEVEL SERIALIZABLE",
        "START TRANSACTION,READ ONLY",
    ],
)
def test_start_transaction_with_other_modes_is_a_syntax_error(router: Router, sql: str) -> None:
    with pytest.raises(ProxyError) as caught:
        router.plan(sql, None)
    assert caught.value.code == 1064


def test_commit_release_is_refused(router: Router) -> None:
    assert "COMMIT RELEASE" in refused(router, "COMMIT AND CHAIN RELEASE").message


def test_savepoints_are_refused(router: Router) -> None:
    assert "ROLLBACK TO SAVEPOINT" in refused(router, "ROLLBACK TO SAVEPOINT s1").message
    assert "'SAVEPOINT'" in refused(router, "SAVEPOINT s1").message
    assert "RELEASE SAVEPOINT" in refused(router, "RELEASE SAVEPOINT s1").message


def test_show_databases_and_tables(router: Router) -> None:
    assert router.plan("SHOW DATABASES", None) == ShowPlan(ShowWhat.DATABASES)
    assert router.plan("show schemas like 'sh%'", None) == ShowPlan(ShowWhat.DATABASES, like="sh%")
    # SHOW TABLES reads the metadata catalog: the tables that exist; the config's list when
    # the catalog is unavailable.
    tables = router.plan("SHOW TABLES", "shop")
    assert isinstance(tables, MetadataPlan)
    assert tables.fallback == ShowPlan(ShowWhat.TABLES, database="shop")
    full = router.plan("SHOW FULL TABLES IN `crm` LIKE 'c\\_%'", "shop")
    assert isinstance(full, MetadataPlan)
    assert full.fallback == ShowPlan(ShowWhat.TABLES, full=True, like="c\\_%", database="crm")
    assert refused(router, "SHOW TABLES", None).code == 1046
    assert refused(router, "SHOW TABLES FROM nope").code == 1049
    where = router.plan("SHOW TABLES WHERE x = 1", "shop")
    assert isinstance(where, MetadataPlan) and where.fallback is None


def test_show_warnings_and_errors_are_the_sessions(router: Router) -> None:
    """A pooled backend connection holds another session's diagnostics: the proxy answers."""
    assert router.plan("SHOW WARNINGS", "shop") == DiagnosticsPlan(errors=False, count=False)
    assert router.plan("show errors limit 2", None) == DiagnosticsPlan(True, False, limit=2)
    assert router.plan("SHOW WARNINGS LIMIT 1, 3", "shop") == DiagnosticsPlan(False, False, 1, 3)
    assert router.plan("SHOW COUNT(*) WARNINGS", "shop") == DiagnosticsPlan(False, count=True)
    assert router.plan("show count( * ) errors", "shop") == DiagnosticsPlan(True, count=True)
    assert refused(router, "SHOW COUNT(*) WARNINGS LIMIT 1").code == 1064


def test_show_about_the_server_passes_through(router: Router) -> None:
    for sql in (
        "SHOW VARIABLES LIKE 'max%'",
        "SHOW SESSION STATUS",
        "SHOW ENGINES",
        "SHOW COLLATION",
        "SHOW CHARACTER SET",
    ):
        plan = query(router, sql, "crm")
        assert plan.route is Route.UNSHARDED
        assert units(plan) == [("ds2", sql)]
    assert router.plan("SHOW GRANTS", "shop") == ProxyShow("grants")


def test_table_metadata_comes_from_the_first_data_node(router: Router) -> None:
    assert units(query(router, "DESCRIBE orders")) == [("ds0", "DESCRIBE orders_0")]
    assert units(query(router, "desc shop.audit id")) == [("ds1", "DESCRIBE audit_log id")]
    assert units(query(router, "EXPLAIN countries")) == [("ds0", "DESCRIBE countries")]
    assert units(query(router, "SHOW FULL COLUMNS FROM orders FROM shop LIKE 'u%'")) == [
        ("ds0", "SHOW FULL COLUMNS FROM orders_0 LIKE 'u%'")
    ]
    # Results naming the table get their names made logical by the proxy: metadata plans.
    assert router.plan("SHOW INDEX FROM `events`", "shop") == MetadataPlan(
        Unit("ds0", "SHOW INDEX FROM events_0"), ("shop",)
    )
    assert router.plan("SHOW CREATE TABLE crm.contacts", "shop") == MetadataPlan(
        Unit("ds2", "SHOW CREATE TABLE `contacts`"), ("crm",)
    )
    assert refused(router, "DESCRIBE nope").code == 1146


def test_explain_asks_each_unit(router: Router) -> None:
    plan = query(router, "EXPLAIN SELECT * FROM orders WHERE user_id IN (1, 2)")
    assert not plan.is_write
    assert units(plan) == [
        ("ds0", "EXPLAIN SELECT * FROM orders_1 WHERE user_id IN (1, 2)"),
        ("ds1", "EXPLAIN SELECT * FROM orders_2 WHERE user_id IN (1, 2)"),
    ]
    assert units(query(router, "EXPLAIN FORMAT=JSON DELETE FROM orders WHERE user_id = 3")) == [
        ("ds1", "EXPLAIN FORMAT=JSON DELETE FROM orders_3 WHERE user_id = 3")
    ]


@pytest.mark.parametrize(
    ("sql", "kind"),
    [
        ("LOAD DATA INFILE 'x' INTO TABLE orders", "LOAD DATA"),
        ("CALL p()", "CALL"),
        ("HANDLER orders OPEN", "HANDLER"),
        ("XA START 'x'", "XA START"),
        ("PREPARE s FROM 'SELECT 1'", "PREPARE"),
        ("EXECUTE s", "EXECUTE"),
        ("GRANT ALL ON *.* TO x", "GRANT"),
        ("KILL USER app", "KILL"),
        ("FLUSH TABLES", "FLUSH"),
        ("SELECT * FROM orders INTO OUTFILE '/tmp/x'", "SELECT ... INTO"),
    ],
)
def test_unsupported_statements_are_named(router: Router, sql: str, kind: str) -> None:
    error = refused(router, sql)
    assert (error.code, error.sqlstate) == (1235, "42000")
    assert error.message == f"This version of shardproxy doesn't yet support '{kind}'"


# --- syntax errors -----------------------------------------------------------------------------


def test_syntax_errors_look_like_mysql(router: Router) -> None:
    error = refused(router, "SELECT * FROM orders\nWHERE user_id = = 1")
    assert (error.code, error.sqlstate) == (1064, "42000")
    assert error.message == (
        "You have an error in your SQL syntax; check the manual that corresponds to your MariaDB "
        "server version for the right syntax to use near '= 1' at line 2"
    )
    assert "near 'SELEC 1'" in refused(router, "SELEC 1").message
    assert "near '?'" in refused(router, "SELECT * FROM orders WHERE user_id = ?").message
    assert "near 'SELECT 2' at line 1" in refused(router, "SELECT 1; SELECT 2").message


def test_empty_query(router: Router) -> None:
    for sql in ("", "  ;", "/* nothing */"):
        error = refused(router, sql)
        assert (error.code, error.message) == (1065, "Query was empty")


@pytest.mark.parametrize(
    ("sql", "plan"),
    [
        ("KILL 5", KillPlan(5, query_only=False)),
        ("KILL CONNECTION 6", KillPlan(6, query_only=False)),
        ("kill query 7", KillPlan(7, query_only=True)),
        ("KILL HARD QUERY 8;", KillPlan(8, query_only=True)),
    ],
)
def test_kill_takes_proxy_connection_ids(router: Router, sql: str, plan: KillPlan) -> None:
    assert router.plan(sql, "shop") == plan


def test_admin_statements(router: Router) -> None:
    explain = router.plan("EXPLAIN SHARDS SELECT * FROM orders WHERE user_id = 7", "shop")
    assert isinstance(explain, ExplainShards)
    assert units(explain.plan) == [("ds1", "SELECT * FROM orders_3 WHERE user_id = 7")]
    assert router.plan("SHOW SHARDPROXY RULES", None) == AdminShow(AdminWhat.RULES)
    assert router.plan("reload shardproxy config", None) == ReloadConfig()


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT GET_LOCK('x', 10)",
        "SELECT release_lock('x')",
        "SELECT RELEASE_ALL_LOCKS()",
        "SELECT id FROM users WHERE id = 1 AND GET_LOCK('x', 0)",
    ],
)
def test_named_locks_are_refused(router: Router, sql: str) -> None:
    assert "pooled backend connection" in refused(router, sql).message

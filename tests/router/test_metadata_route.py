"""Planning of metadata statements (router/metadata.py), session identity markers
(router/session_values.py) and versioned comments: the physical SQL, as text."""

from __future__ import annotations

import pytest
from planner_config import make_config

from router.errors import ColumnListNeeded, NotSupported, UnknownTable
from router.metadata import catalog_database
from router.normalize import unwrap_versioned_comments
from router.plan import MetadataPlan, ProxyShow, QueryPlan, TableLocks, UsePlan
from router.planner import Router
from router.session_values import fill


@pytest.fixture
def router() -> Router:
    return Router(make_config())


def metadata(router: Router, sql: str) -> MetadataPlan:
    plan = router.plan(sql, "shop")
    assert isinstance(plan, MetadataPlan), plan
    return plan


def test_catalog_names():
    assert catalog_database("shop") == "shardproxy_meta_shop"
    assert len(catalog_database("x" * 64)) <= 64


def test_information_schema_reads_the_catalog_schemas(router):
    plan = metadata(
        router,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE()",
    )
    assert plan.catalog
    assert plan.unit.sql == (
        "SELECT table_name AS `table_name` FROM (SELECT * FROM information_schema.TABLES "
        "WHERE TABLE_SCHEMA IN ('shardproxy_meta_shop', 'shardproxy_meta_crm', "
        "'information_schema')) AS `tables` "
        "WHERE table_schema = 'shardproxy_meta_shop'"
    )


def test_information_schema_literals_and_aliases(router):
    plan = metadata(
        router,
        "SELECT c.COLUMN_NAME FROM INFORMATION_SCHEMA.COLUMNS c "
        "WHERE c.TABLE_SCHEMA IN ('shop', 'other') AND c.TABLE_NAME = 'shop_items'",
    )
    sql = plan.unit.sql
    assert "(SELECT * FROM information_schema.COLUMNS WHERE TABLE_SCHEMA IN" in sql
    assert ") c WHERE c.TABLE_SCHEMA IN ('shardproxy_meta_shop', 'other')" in sql
    assert "c.TABLE_NAME = 'shop_items'" in sql


def test_information_schema_about_servers_is_refused(router):
    with pytest.raises(NotSupported, match="INNODB_SYS_TABLES"):
        router.plan("SELECT * FROM information_schema.INNODB_SYS_TABLES", "shop")


def test_global_information_schema_tables_run_unchanged(router):
    plan = metadata(router, "SELECT * FROM information_schema.COLLATIONS")
    assert plan.unit.sql == "SELECT * FROM information_schema.COLLATIONS"


def test_use_information_schema_reads_its_tables_unqualified(router):
    """After USE information_schema, unqualified names are its tables (MariaDB's rule):
    scoped ones narrowed to the catalogs, global ones qualified for the metadata backend's
    connection, DATABASE() is 'information_schema', and logical tables still need their
    database's name."""
    plan = router.plan("USE information_schema", "shop")
    assert plan == UsePlan("information_schema")
    inside = "information_schema"
    scoped = router.plan(
        "SELECT table_name, DATABASE() FROM tables WHERE table_schema = 'shop'", inside
    )
    assert isinstance(scoped, MetadataPlan) and scoped.catalog
    assert scoped.unit.sql == (
        "SELECT table_name AS `table_name`, 'information_schema' AS `DATABASE()` FROM "
        "(SELECT * FROM information_schema.TABLES WHERE TABLE_SCHEMA IN "
        "('shardproxy_meta_shop', 'shardproxy_meta_crm', 'information_schema')) AS `tables` "
        "WHERE table_schema = 'shardproxy_meta_shop'"
    )
    engines = router.plan("SELECT COUNT(*) FROM engines e", inside)
    assert isinstance(engines, MetadataPlan)
    assert engines.unit.sql == "SELECT COUNT(*) FROM information_schema.engines e"
    logical = router.plan("SELECT id, DATABASE() FROM shop.users WHERE id = 3", inside)
    assert isinstance(logical, QueryPlan)
    assert "'information_schema' AS `DATABASE()`" in logical.units[0].sql
    shown = router.plan("SHOW FULL TABLES LIKE 'ENG%'", inside)
    assert isinstance(shown, MetadataPlan)
    assert shown.unit.sql == "SHOW FULL TABLES FROM information_schema LIKE 'ENG%'"
    assert router.plan("SHOW TABLES FROM INFORMATION_SCHEMA", "shop").unit.sql == (
        "SHOW TABLES FROM information_schema"
    )


def test_information_schema_is_planned_by_exact_text(router):
    first = metadata(router, "SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'shop'")
    other = metadata(router, "SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'x'")
    assert "'shardproxy_meta_shop'" in first.unit.sql.split("WHERE SCHEMA_NAME =")[-1]
    assert other.unit.sql.endswith("WHERE SCHEMA_NAME = 'x'")


@pytest.mark.parametrize(
    ("sql", "physical"),
    [
        ("SHOW FULL TABLES", "SHOW FULL TABLES FROM `shardproxy_meta_shop`"),
        (
            "SHOW TABLES WHERE Tables_in_shop LIKE 'o%'",
            "SHOW TABLES FROM `shardproxy_meta_shop` WHERE Tables_in_shardproxy_meta_shop "
            "LIKE 'o%'",
        ),
        (
            "SHOW TABLE STATUS LIKE 'orders'",
            "SHOW TABLE STATUS FROM `shardproxy_meta_shop` LIKE 'orders'",
        ),
        ("SHOW TRIGGERS FROM shop", "SHOW TRIGGERS FROM `shardproxy_meta_shop`"),
        (
            "SHOW PROCEDURE STATUS WHERE Db = 'shop'",
            "SHOW PROCEDURE STATUS WHERE `Db` IN ('shardproxy_meta_shop', 'shardproxy_meta_crm') "
            "AND (Db = 'shardproxy_meta_shop')",
        ),
    ],
)
def test_show_statements_on_the_catalog(router, sql, physical):
    plan = metadata(router, sql)
    assert plan.catalog
    assert plan.unit.sql == physical


def test_show_table_status_asks_for_statistics(router):
    assert metadata(router, "SHOW TABLE STATUS").stats == "shop"


def test_show_tables_falls_back_to_the_config(router):
    assert metadata(router, "SHOW TABLES LIKE 'o%'").fallback is not None
    assert metadata(router, "SHOW TABLES WHERE 1").fallback is None


def test_per_table_shows_read_the_first_data_node(router):
    create = metadata(router, "SHOW CREATE TABLE orders")
    assert not create.catalog
    assert create.unit.sql.startswith("SHOW CREATE TABLE `orders_")
    index = metadata(router, "SHOW KEYS FROM orders WHERE Key_name = 'PRIMARY'")
    assert index.unit.sql.startswith("SHOW INDEX FROM orders_")
    assert index.unit.sql.endswith(" WHERE Key_name = 'PRIMARY'")
    with pytest.raises(UnknownTable):
        router.plan("SHOW INDEX FROM nosuch", "shop")


def test_processlist_and_grants_are_the_proxys(router):
    assert router.plan("SHOW FULL PROCESSLIST", "shop") == ProxyShow("processlist", full=True)
    assert router.plan("SHOW GRANTS FOR CURRENT_USER()", None) == ProxyShow("grants")
    with pytest.raises(NotSupported):
        router.plan("SHOW GRANTS FOR root", "shop")


def test_lock_tables_checks_names_and_locks_nothing(router):
    plan = router.plan("LOCK TABLES `orders` READ /*!32311 LOCAL */, users AS u WRITE", "shop")
    assert plan == TableLocks(("orders", "users"))
    assert router.plan("UNLOCK TABLES", "shop") == TableLocks(())
    with pytest.raises(UnknownTable):
        router.plan("LOCK TABLES nosuch READ", "shop")


def test_insert_without_columns_into_a_sharded_table_asks_for_them(router):
    with pytest.raises(ColumnListNeeded) as raised:
        router.plan("INSERT INTO `orders` VALUES (1, 2, 'x', 3, NULL)", "shop")
    need = raised.value
    assert (need.database, need.table) == ("shop", "orders")
    assert need.text[: need.position] == "INSERT INTO `orders`"


def test_prepared_insert_without_columns_asks_with_the_clients_text(router):
    """The proxy adds the column list to the prepared text, `?`s kept, not the stand-ins."""
    with pytest.raises(ColumnListNeeded) as raised:
        router.plan("INSERT INTO orders VALUES (?, 0, ?, 'x', ?)", "shop", [7, 8, 9])
    need = raised.value
    assert need.text == "INSERT INTO orders VALUES (?, 0, ?, 'x', ?)"
    assert need.text[: need.position] == "INSERT INTO orders"


def test_diagnostics_and_found_rows_are_the_sessions(router):
    plan = router.plan("SELECT FOUND_ROWS(), @@warning_count, @@session.error_count", "shop")
    assert isinstance(plan, QueryPlan)
    sql = plan.units[0].sql
    assert fill(sql, "app", "h", 1, found_rows=12, warning_count=3, error_count=1) == (
        "SELECT CAST(12 | 0 AS SIGNED) AS `FOUND_ROWS()`, (3 | 0) AS `@@warning_count`, "
        "(1 | 0) AS `@@session.error_count`"
    )
    plan = router.plan("SELECT @@error_count AS e, '@@error_count'", "shop")
    assert isinstance(plan, QueryPlan)
    filled = fill(plan.units[0].sql, "app", "h", 1, error_count=2)
    assert filled == "SELECT (2 | 0) AS e, '@@error_count'"


def test_session_calls_become_markers_with_the_clients_labels(router):
    plan = router.plan("SELECT USER(), current_user, CONNECTION_ID() AS id", "shop")
    assert isinstance(plan, QueryPlan)
    sql = plan.units[0].sql
    assert fill(sql, "app", "10.0.0.5", 42) == (
        "SELECT 'app@10.0.0.5' AS `USER()`, 'app@%' AS `current_user`, CAST(42 AS UNSIGNED) AS id"
    )


def test_future_versioned_comments_stay_comments():
    sandbox = "/*M!999999\\- enable the sandbox mode */ \nSELECT 1"
    assert unwrap_versioned_comments(sandbox).strip() == "SELECT 1"
    assert unwrap_versioned_comments("/*!40101 SET @a = 1 */").strip() == "SET @a = 1"

"""Metadata through the proxy: every SHOW, DESCRIBE and information_schema answer names the
logical database and tables only, and matches what one plain MariaDB holding the same logical
schema answers (the `reference` database). Also mysqldump and its restore, the session's
identity (USER(), CONNECTION_ID(), SHOW PROCESSLIST) and LOCK TABLES.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator, Sequence
from typing import Any

import pymysql
import pytest
from shop_helpers import SCHEMA, ShopTables, connector_connect

PHYSICAL = re.compile(r"\b(?:users|orders|order_items|countries|settings)_\d+\b|\bshop_[01]\b")
CATALOG = re.compile(r"shardproxy_meta")
TABLES = ("countries", "order_items", "orders", "settings", "users")
ROWS = {
    "users": [(i, f"user {i}", f"u{i}@example.com", "US", "2024-01-01 00:00:00") for i in range(8)],
    "orders": [(100 + i, i % 8, "new", 10 * i, "2024-02-01 00:00:00") for i in range(12)],
    "order_items": [(1000 + i, 100 + i, i % 8, f"SKU-{i}", 1, 2.5) for i in range(12)],
    "countries": [("US", "United States"), ("FR", "France")],
    "settings": [("mode", "on")],
}


def _insert(cursor: Any, table: str) -> None:
    rows = ROWS[table]
    marks = ", ".join(["%s"] * len(rows[0]))
    for row in rows:
        cursor.execute(f"INSERT INTO {table} VALUES ({marks})", row)


@pytest.fixture
def shop(shop_proxy, mariadb_cluster) -> Iterator[ShopTables]:
    """All five shop tables created and filled through the proxy."""
    tables = ShopTables(shop_proxy, mariadb_cluster)
    tables.create(*TABLES)
    conn = shop_proxy.connect()
    try:
        with conn.cursor() as cursor:
            for table in TABLES:
                _insert(cursor, table)
    finally:
        conn.close()
    yield tables
    tables.cleanup()


@pytest.fixture
def reference(reference_db):
    """The same logical schema and rows in one plain MariaDB database."""
    conn = reference_db.connect()
    with conn.cursor() as cursor:
        for table in TABLES:
            cursor.execute(SCHEMA[table])
            _insert(cursor, table)
    conn.close()
    return reference_db


def query(conn: pymysql.Connection, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    with conn.cursor() as cursor:
        cursor.execute(sql)
        names = [d[0] for d in cursor.description or ()]
        return names, list(cursor.fetchall())


def assert_logical(conn: pymysql.Connection, sql: str) -> list[tuple[Any, ...]]:
    """Run `sql`; no value, column label or column schema/table names a physical thing."""
    with conn.cursor() as cursor:
        cursor.execute(sql)
        rows = list(cursor.fetchall())
        fields = cursor._result.fields if cursor._result else []
    texts = [str(v) for row in rows for v in row if v is not None]
    for field in fields:
        texts += [field.name, field.org_name, field.db, field.table_name, field.org_table]
    for text in texts:
        text = text.decode() if isinstance(text, bytes) else text
        assert not PHYSICAL.search(text), f"{sql!r} leaks a physical name: {text!r}"
        assert not CATALOG.search(text), f"{sql!r} leaks the catalog schema: {text!r}"
    return rows


def same(proxy_rows: Sequence[Sequence[Any]], reference_rows: Sequence[Sequence[Any]]) -> None:
    """Rows equal once the reference database's name reads as `shop`."""

    def norm(rows):
        return sorted(
            tuple(v.replace("reference", "shop") if isinstance(v, str) else v for v in row)
            for row in rows
        )

    assert norm(proxy_rows) == norm(reference_rows)


METADATA_STATEMENTS = [
    "SHOW TABLES",
    "SHOW FULL TABLES",
    "SHOW TABLES LIKE 'order%'",
    "SHOW FULL TABLES FROM shop WHERE Table_type = 'BASE TABLE'",
    "SHOW TABLE STATUS",
    "SHOW TABLE STATUS LIKE 'orders'",
    "SHOW CREATE TABLE orders",
    "SHOW CREATE TABLE shop.users",
    "SHOW COLUMNS FROM orders",
    "SHOW FULL COLUMNS FROM order_items",
    "SHOW INDEX FROM orders",
    "SHOW KEYS FROM users FROM shop",
    "DESCRIBE orders",
    "DESC users id",
    "SHOW CREATE DATABASE shop",
    "SHOW DATABASES",
    "SHOW TRIGGERS",
    "SHOW PROCEDURE STATUS WHERE Db = 'shop'",
    "SHOW FUNCTION STATUS",
    "SHOW EVENTS",
    "SHOW PROCESSLIST",
    "SHOW FULL PROCESSLIST",
    "SHOW GRANTS",
    "SHOW VARIABLES LIKE 'character_set%'",
    "SHOW STATUS LIKE 'Uptime'",
    "SELECT * FROM information_schema.SCHEMATA",
    "SELECT * FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'shop'",
    "SELECT * FROM information_schema.TABLES",
    "SELECT * FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE()",
    "SELECT * FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = 'shop'",
    "SELECT * FROM information_schema.KEY_COLUMN_USAGE",
    "SELECT * FROM information_schema.TABLE_CONSTRAINTS",
    "SELECT * FROM information_schema.REFERENTIAL_CONSTRAINTS",
    "SELECT * FROM information_schema.ROUTINES",
    "SELECT * FROM information_schema.VIEWS",
    "SELECT * FROM information_schema.PARTITIONS WHERE TABLE_SCHEMA = 'shop'",
    "EXPLAIN SELECT * FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'shop'",
    "SELECT * FROM mysql.innodb_table_stats",
    "SELECT * FROM mysql.innodb_index_stats",
    "SELECT t.TABLE_NAME, c.COLUMN_NAME FROM information_schema.TABLES t "
    "JOIN information_schema.COLUMNS c USING (TABLE_SCHEMA, TABLE_NAME) ORDER BY 1, 2",
]


@pytest.mark.parametrize("sql", METADATA_STATEMENTS)
def test_no_physical_name_in_metadata(shop, shop_proxy, sql):
    conn = shop_proxy.connect()
    try:
        assert_logical(conn, sql)
    finally:
        conn.close()


def test_show_tables_as_reference(shop, shop_proxy, reference):
    conn, ref = shop_proxy.connect(), reference.connect()
    try:
        for sql in (
            "SHOW TABLES",
            "SHOW FULL TABLES",
            "SHOW TABLES LIKE 'order%'",
            "SHOW FULL TABLES WHERE Table_type = 'BASE TABLE'",
        ):
            names, rows = query(conn, sql)
            ref_names, ref_rows = query(ref, sql.replace("shop", "reference"))
            assert names == [n.replace("reference", "shop") for n in ref_names], sql
            same(rows, ref_rows)
        names, rows = query(conn, "SHOW TABLES WHERE Tables_in_shop LIKE 'u%'")
        assert rows == [("users",)]
    finally:
        conn.close()
        ref.close()


def test_expression_labels_name_logical_tables(shop, shop_proxy, reference):
    """MariaDB labels an unaliased expression with its text, which after the rewrite named
    the physical tables: `users.id + 1` read `users_3.id + 1`, on one shard and merged."""
    conn, ref = shop_proxy.connect(), reference.connect()
    try:
        for sql in (
            "SELECT users.id + 1, (SELECT COUNT(*) FROM orders o WHERE o.user_id = users.id), "
            "1 AS users_3 FROM users WHERE id = 7",
            "SELECT `users`.`id` * 2, CONCAT(users.name, '') FROM users ORDER BY users.id",
            "SELECT country_code, SUM((SELECT COUNT(*) FROM orders o WHERE o.user_id = u.id)) "
            "FROM users u GROUP BY country_code",
        ):
            names, rows = query(conn, sql)
            ref_names, ref_rows = query(ref, sql)
            assert names == ref_names, sql
            same(rows, ref_rows)
    finally:
        conn.close()
        ref.close()


def test_show_create_table_columns_index_as_reference(shop, shop_proxy, reference):
    conn, ref = shop_proxy.connect(), reference.connect()
    try:
        for table in TABLES:
            assert query(conn, f"SHOW CREATE TABLE {table}") == query(
                ref, f"SHOW CREATE TABLE {table}"
            )
            assert query(conn, f"SHOW FULL COLUMNS FROM {table}") == query(
                ref, f"SHOW FULL COLUMNS FROM {table}"
            )
            assert query(conn, f"DESCRIBE {table}") == query(ref, f"DESCRIBE {table}")
            names, rows = query(conn, f"SHOW INDEX FROM {table}")
            ref_names, ref_rows = query(ref, f"SHOW INDEX FROM {table}")
            assert names == ref_names
            cardinality = names.index("Cardinality")  # per shard, an estimate: not compared
            strip = [tuple(v for i, v in enumerate(r) if i != cardinality) for r in rows]
            ref_strip = [tuple(v for i, v in enumerate(r) if i != cardinality) for r in ref_rows]
            assert strip == ref_strip
        _, rows = query(conn, "SHOW CREATE DATABASE shop")
        _, ref_rows = query(ref, "SHOW CREATE DATABASE reference")
        same(rows, ref_rows)
    finally:
        conn.close()
        ref.close()


def test_show_table_status_one_row_per_logical_table(shop, shop_proxy, reference, mariadb_cluster):
    conn, ref = shop_proxy.connect(), reference.connect()
    try:
        names, rows = query(conn, "SHOW TABLE STATUS")
        ref_names, ref_rows = query(ref, "SHOW TABLE STATUS")
        assert names == ref_names
        assert [r[0] for r in rows] == [r[0] for r in ref_rows] == sorted(TABLES)
        columns = ("Engine", "Row_format", "Collation", "Comment")
        for column in columns:
            i = names.index(column)
            assert [r[i] for r in rows] == [r[i] for r in ref_rows], column
        # Sizes are summed over the data nodes: 4 shards of orders hold 4 x 16 KB at least.
        data = names.index("Data_length")
        by_name = {r[0]: r for r in rows}
        assert by_name["orders"][data] >= 4 * 16384
        assert by_name["countries"][data] == 16384  # one copy of a broadcast table
        _, like = query(conn, "SHOW TABLE STATUS FROM shop LIKE 'order%'")
        assert [r[0] for r in like] == ["order_items", "orders"]
    finally:
        conn.close()
        ref.close()


INFORMATION_SCHEMA = [
    "SELECT SCHEMA_NAME, DEFAULT_CHARACTER_SET_NAME FROM information_schema.SCHEMATA "
    "WHERE SCHEMA_NAME = '{db}'",
    "SELECT TABLE_SCHEMA, TABLE_NAME, TABLE_TYPE, ENGINE, TABLE_COLLATION "
    "FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{db}' ORDER BY TABLE_NAME",
    "SELECT TABLE_NAME, COLUMN_NAME, ORDINAL_POSITION, COLUMN_DEFAULT, IS_NULLABLE, DATA_TYPE, "
    "CHARACTER_MAXIMUM_LENGTH, NUMERIC_PRECISION, COLUMN_TYPE, COLUMN_KEY, EXTRA "
    "FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() ORDER BY 1, 3",
    "SELECT TABLE_NAME, NON_UNIQUE, INDEX_NAME, SEQ_IN_INDEX, COLUMN_NAME "
    "FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = '{db}' ORDER BY 1, 3, 4",
    "SELECT CONSTRAINT_SCHEMA, CONSTRAINT_NAME, TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME, "
    "REFERENCED_TABLE_NAME FROM information_schema.KEY_COLUMN_USAGE "
    "WHERE TABLE_SCHEMA = '{db}' ORDER BY TABLE_NAME",
    "SELECT CONSTRAINT_NAME, TABLE_NAME, CONSTRAINT_TYPE FROM information_schema.TABLE_CONSTRAINTS "
    "WHERE CONSTRAINT_SCHEMA = '{db}' ORDER BY TABLE_NAME",
    "SELECT ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = '{db}'",
    "SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = '{db}'",
    "select column_name, extra, generation_expression, data_type from information_schema.columns "
    "where table_schema=database() and table_name='orders' order by ordinal_position",
    "SELECT engine, table_type FROM INFORMATION_SCHEMA.TABLES WHERE table_schema = DATABASE() "
    "AND table_name = 'users'",
]


@pytest.mark.parametrize("sql", INFORMATION_SCHEMA)
def test_information_schema_as_reference(shop, shop_proxy, reference, sql):
    conn, ref = shop_proxy.connect(), reference.connect()
    try:
        names, rows = query(conn, sql.format(db="shop"))
        ref_names, ref_rows = query(ref, sql.format(db="reference"))
        assert names == ref_names
        same(rows, ref_rows)
    finally:
        conn.close()
        ref.close()


def test_information_schema_lists_only_logical_schemas(shop, shop_proxy):
    conn = shop_proxy.connect()
    try:
        _, rows = query(conn, "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA ORDER BY 1")
        assert rows == [("information_schema",), ("shop",)]
        _, rows = query(
            conn,
            "SELECT DISTINCT TABLE_SCHEMA FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA NOT IN ('information_schema') ORDER BY 1",
        )
        assert rows == [("shop",)]
        _, rows = query(
            conn,
            "SELECT TABLE_ROWS FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = 'shop' AND TABLE_NAME = 'orders'",
        )
        assert rows[0][0] is not None
    finally:
        conn.close()


IN_INFORMATION_SCHEMA = [
    "SELECT DATABASE()",
    "SELECT TABLE_NAME, TABLE_TYPE FROM TABLES WHERE TABLE_SCHEMA = '{db}' ORDER BY 1",
    "SELECT t.TABLE_NAME, COUNT(*) FROM COLUMNS c JOIN TABLES t ON t.TABLE_NAME = c.TABLE_NAME "
    "AND t.TABLE_SCHEMA = c.TABLE_SCHEMA WHERE c.TABLE_SCHEMA = '{db}' GROUP BY 1 ORDER BY 1",
    "SELECT COUNT(*) FROM ENGINES WHERE SUPPORT <> 'NO'",
    "SHOW TABLES LIKE 'COLUMN%'",
    "SHOW FULL TABLES WHERE Tables_in_information_schema LIKE 'ENGINE%'",
    "SELECT COUNT(*), MAX(id) FROM {db}.users",
]


def test_use_information_schema_as_mariadb(shop, shop_proxy, reference):
    """USE information_schema (at login, by COM_INIT_DB or by USE): unqualified names are its
    tables, answered as the plain server answers for the same logical schema."""
    conn = shop_proxy.connect(database="information_schema")
    ref = reference.instance.connect("information_schema")
    try:
        for sql in IN_INFORMATION_SCHEMA:
            names, rows = query(conn, sql.format(db="shop"))
            ref_names, ref_rows = query(ref, sql.format(db="reference"))
            assert (names, rows) == (ref_names, ref_rows), sql
        query(conn, "USE shop")
        assert query(conn, "SELECT DATABASE(), COUNT(*) FROM users")[1] == [("shop", 8)]
        conn.select_db("INFORMATION_SCHEMA")
        assert query(conn, "SELECT DATABASE()")[1] == [("information_schema",)]
        query(conn, "USE `information_schema`")
        assert query(conn, "SELECT COUNT(*) FROM SCHEMATA")[1] == [(2,)]
    finally:
        conn.close()
        ref.close()


def test_information_schema_tables_about_servers_are_refused(shop, shop_proxy):
    conn = shop_proxy.connect()
    try:
        with pytest.raises(pymysql.err.MySQLError) as raised:
            query(conn, "SELECT * FROM information_schema.INNODB_SYS_TABLES")
        assert raised.value.args[0] == 1235
    finally:
        conn.close()


def test_ddl_is_visible_in_metadata_at_once(shop, shop_proxy, reference):
    conn = shop_proxy.connect()
    try:
        conn.cursor().execute("ALTER TABLE orders ADD COLUMN note VARCHAR(30) NULL")
        _, rows = query(
            conn,
            "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = 'shop' "
            "AND TABLE_NAME = 'orders' ORDER BY ORDINAL_POSITION",
        )
        assert rows[-1] == ("note",)
        conn.cursor().execute("DROP TABLE settings")
        _, rows = query(conn, "SHOW TABLES")
        assert ("settings",) not in rows
        _, rows = query(
            conn, "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'shop'"
        )
        assert ("settings",) not in rows
    finally:
        conn.close()


def test_prepared_information_schema_query(shop, shop_proxy):
    """The binary protocol gets the same rows, encoded by type."""
    sql = (
        "SELECT TABLE_NAME, ORDINAL_POSITION, COLUMN_NAME FROM information_schema.COLUMNS "
        "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION"
    )
    conn = connector_connect(shop_proxy)
    try:
        cursor = conn.cursor(prepared=True)
        cursor.execute(sql, ("shop", "orders"))
        rows = [tuple(v.decode() if isinstance(v, bytes) else v for v in r) for r in cursor]
        assert rows == [
            ("orders", 1, "id"),
            ("orders", 2, "user_id"),
            ("orders", 3, "status"),
            ("orders", 4, "total"),
            ("orders", 5, "created_at"),
        ]
        cursor.close()
    finally:
        conn.close()


# --- the session's identity ------------------------------------------------------------------


def test_user_functions_show_the_proxy_session(shop, shop_proxy):
    conn = shop_proxy.connect()
    try:
        names, rows = query(
            conn,
            "SELECT USER(), CURRENT_USER(), SESSION_USER(), SYSTEM_USER(), CURRENT_USER, "
            "CONNECTION_ID()",
        )
        assert names == [
            "USER()",
            "CURRENT_USER()",
            "SESSION_USER()",
            "SYSTEM_USER()",
            "CURRENT_USER",
            "CONNECTION_ID()",
        ]
        user, current, session, system, bare, connection_id = rows[0]
        assert user == session == system == "app@127.0.0.1"
        assert current == bare == "app@%"
        assert connection_id == conn.thread_id()
        _, rows = query(conn, "SELECT name FROM countries WHERE name <> USER() AND code = 'FR'")
        assert rows == [("France",)]
    finally:
        conn.close()


def test_show_processlist_lists_proxy_sessions(shop_proxy):
    first, second = shop_proxy.connect(), shop_proxy.connect(database=None)
    try:
        names, rows = query(first, "SHOW PROCESSLIST")
        assert names[:8] == ["Id", "User", "Host", "db", "Command", "Time", "State", "Info"]
        by_id = {row[0]: row for row in rows}
        assert by_id[first.thread_id()][1:5:2] == ("app", "shop")
        assert by_id[first.thread_id()][7] == "SHOW PROCESSLIST"
        assert by_id[second.thread_id()][3] is None
        assert by_id[second.thread_id()][4] == "Sleep"
    finally:
        first.close()
        second.close()


def test_show_grants(shop_proxy):
    conn = shop_proxy.connect()
    try:
        names, rows = query(conn, "SHOW GRANTS")
        assert names == ["Grants for app@%"]
        assert ("GRANT ALL PRIVILEGES ON `shop`.* TO `app`@`%`",) in rows
        _, again = query(conn, "SHOW GRANTS FOR CURRENT_USER()")
        assert again == rows
    finally:
        conn.close()


# --- mysqldump ------------------------------------------------------------------------------


def _dump(proxy, *options: str) -> str:
    command = [
        "mysqldump",
        "--no-defaults",
        "--protocol=tcp",
        f"-h{proxy.host}",
        f"-P{proxy.port}",
        "-uapp",
        "-papp",
        *options,
        "shop",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _contents(conn) -> dict[str, list[tuple[Any, ...]]]:
    return {t: sorted(query(conn, f"SELECT * FROM {t}")[1]) for t in TABLES}


def test_mysqldump_and_restore_through_the_proxy(shop, shop_proxy, reference):
    dump = _dump(shop_proxy)
    assert not PHYSICAL.search(dump)
    assert not CATALOG.search(dump)
    for table in TABLES:
        assert f"CREATE TABLE `{table}`" in dump
        assert f"INSERT INTO `{table}` VALUES" in dump
    conn = shop_proxy.connect()
    try:
        before = _contents(conn)
        with conn.cursor() as cursor:
            for table in TABLES:
                cursor.execute(f"DELETE FROM {table} WHERE 1 = 1")
        restore = subprocess.run(
            [
                "mariadb",
                "--no-defaults",
                "--protocol=tcp",
                f"-h{shop_proxy.host}",
                f"-P{shop_proxy.port}",
                "-uapp",
                "-papp",
                "shop",
            ],
            input=dump,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert restore.returncode == 0, restore.stderr
        assert _contents(conn) == before
        # The same dump loads into one plain MariaDB: it is a dump of the logical database.
        ref = reference.connect()
        try:
            with ref.cursor() as cursor:
                for table in TABLES:
                    cursor.execute(f"DROP TABLE {table}")
            load = subprocess.run(
                [
                    "mariadb",
                    "--no-defaults",
                    "--protocol=tcp",
                    f"-h{reference.instance.host}",
                    f"-P{reference.instance.port}",
                    "-uroot",
                    "reference",
                ],
                input=dump,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert load.returncode == 0, load.stderr
            assert _contents(ref) == before
        finally:
            ref.close()
    finally:
        conn.close()


def test_lock_tables_is_accepted_for_known_tables(shop, shop_proxy):
    conn = shop_proxy.connect()
    try:
        with conn.cursor() as cursor:
            cursor.execute("LOCK TABLES orders READ, users AS u WRITE")
            cursor.execute("SELECT COUNT(*) FROM countries")
            cursor.execute("UNLOCK TABLES")
            with pytest.raises(pymysql.err.ProgrammingError) as raised:
                cursor.execute("LOCK TABLES nosuch READ")
            assert raised.value.args[0] == 1146
    finally:
        conn.close()


def test_ddl_made_straight_on_the_backends_shows_at_once(shop, shop_proxy, mariadb_cluster):
    """The catalog notices changed first nodes (CREATE_TIME) before answering."""
    conn = shop_proxy.connect()
    try:
        assert ("settings",) in query(conn, "SHOW TABLES")[1]
        mariadb_cluster.instances[1].execute("DROP TABLE shop_1.settings")  # its only node
        assert ("settings",) not in query(conn, "SHOW TABLES")[1]
        # The first data node is what metadata describes (all shards share the schema).
        mariadb_cluster.instances[0].execute(
            "ALTER TABLE shop_0.users_0 ADD COLUMN nickname VARCHAR(20)"
        )
        _, rows = query(
            conn,
            "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = 'shop' "
            "AND TABLE_NAME = 'users' ORDER BY ORDINAL_POSITION",
        )
        assert rows[-1] == ("nickname",)
    finally:
        conn.close()

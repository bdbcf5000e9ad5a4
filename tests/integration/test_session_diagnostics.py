"""SHOW WARNINGS / SHOW ERRORS / @@warning_count, FOUND_ROWS(), prepared INSERTs without a
column list and COM_FIELD_LIST, through the proxy and on one MariaDB, compared.

The proxy's logical database is named like the reference database, so messages naming it
(after the proxy made physical names logical) read the same on both.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import mysql.connector
import pymysql
import pytest
from conftest import retarget_config
from shop_helpers import RawClient, err_fields

if TYPE_CHECKING:
    from conftest import Cluster, ProxyFactory, ProxyProcess, ReferenceDB

CONFIG = """
users: [{name: app, password: app}]
backends:
  ds0: {host: 127.0.0.1, port: 13306, user: root, password: "", database: diag_0}
  ds1: {host: 127.0.0.1, port: 13307, user: root, password: "", database: diag_1}
databases:
  reference:
    default_backend: ds0
    tables:
      items: {shard_key: k, algorithm: mod, backends: [ds0, ds1], tables_per_backend: 2}
      notes: {backend: ds1}
"""

SCHEMA = [
    "DROP TABLE IF EXISTS items",
    "DROP TABLE IF EXISTS notes",
    "CREATE TABLE items (k INT PRIMARY KEY, v TINYINT, s VARCHAR(3))",
    "CREATE TABLE notes (id INT PRIMARY KEY, body VARCHAR(3))",
    "INSERT INTO items VALUES (1, 1, 'a'), (2, 2, 'b'), (5, 5, 'c'), (9, 9, 'd'), (12, 12, 'e')",
]


@pytest.fixture(scope="module")
def diag_proxy(proxy_server: ProxyFactory, mariadb_cluster: Cluster) -> ProxyProcess:
    return proxy_server(retarget_config(CONFIG, mariadb_cluster), name="diagnostics")


@pytest.fixture
def both(diag_proxy: ProxyProcess, reference_db: ReferenceDB) -> list[pymysql.Connection]:
    """[proxy connection, reference connection], each with the schema created."""
    conns = [diag_proxy.connect(database="reference"), reference_db.connect()]
    for conn in conns:
        run(conn, SCHEMA)
    yield conns
    for conn in conns:
        conn.close()


def run(conn: pymysql.Connection, statements: list[str]) -> list[Any]:
    """Each statement's rows (as lists; sorted without ORDER BY), affected row count, or
    (error code, message)."""
    seen: list[Any] = []
    with conn.cursor() as cursor:
        for sql in statements:
            try:
                cursor.execute(sql)
            except pymysql.MySQLError as exc:
                seen.append((sql, exc.args[0], exc.args[1]))
                continue
            if cursor.description is None:
                seen.append((sql, cursor.rowcount))
            else:
                names = [d[0] for d in cursor.description]
                rows = [list(row) for row in cursor.fetchall()]
                if "ORDER BY" not in sql and sql.startswith("SELECT"):
                    rows.sort()  # shards answer in any order
                seen.append((sql, names, rows))
    return seen


def test_warnings_and_errors_as_mariadb_shows_them(both: list[pymysql.Connection]) -> None:
    statements = [
        "CREATE TABLE IF NOT EXISTS items (k INT PRIMARY KEY)",  # a note from each data node
        "SHOW WARNINGS",
        "SELECT @@warning_count, @@error_count",
        "INSERT IGNORE INTO items VALUES (3, 300, 'abcdef')",  # routed: two warnings
        "SHOW WARNINGS",
        "SHOW COUNT(*) WARNINGS",
        "SELECT 1",  # no table: the warnings stay
        "SHOW WARNINGS LIMIT 1",
        "SHOW WARNINGS LIMIT 1, 1",
        "SHOW ERRORS",
        "INSERT INTO items VALUES (4, 4, 'x')",  # uses a table: they go
        "SHOW WARNINGS",
        "SELECT k, v / 0 FROM items ORDER BY k",  # every shard warns
        "SHOW WARNINGS",
        "SELECT @@warning_count",
        "SELECT k, v / 0 FROM items WHERE k = 5",  # a pooled connection is asked, not another
        "SHOW WARNINGS",
        "SELECT k FROM items WHERE k = 2",
        "SHOW COUNT(*) WARNINGS",
        "SELECT nosuchfn()",  # an error is the one condition
        "SHOW WARNINGS",
        "SHOW ERRORS",
        "SELECT @@error_count, @@warning_count",
        "SHOW COUNT(*) ERRORS",
        "SELECT * FROM nosuch",
        "SHOW ERRORS",
        "INSERT IGNORE INTO notes VALUES (1, 'toolong')",  # a single table
        "SHOW WARNINGS",
        "BEGIN",
        "INSERT IGNORE INTO items VALUES (6, 999, 'x')",
        "SHOW WARNINGS",
        "SELECT k, v / 0 FROM items WHERE k IN (1, 2)",  # two backends, pinned connections
        "SHOW WARNINGS",
        "COMMIT",
        "SHOW WARNINGS",
    ]
    proxy, reference = (run(conn, statements) for conn in both)
    assert proxy == reference
    assert (
        "SHOW WARNINGS",
        ["Level", "Code", "Message"],
        [["Warning", 1365, "Division by 0"]] * 7,
    ) in reference


def test_warnings_of_a_write_over_several_shards(both: list[pymysql.Connection]) -> None:
    """Each shard numbers its own rows ("at row 1"), so only levels and codes compare."""
    statements = ["INSERT IGNORE INTO items VALUES (20, 300, 'a'), (21, -300, 'bcdef')"]
    statements += ["SHOW WARNINGS", "SELECT @@warning_count"]
    proxy, reference = (run(conn, statements) for conn in both)
    assert proxy[0] == reference[0]
    assert proxy[2] == reference[2] == (statements[2], ["@@warning_count"], [[3]])
    codes = sorted((level, code) for level, code, _ in proxy[1][2])
    assert codes == sorted((level, code) for level, code, _ in reference[1][2])
    assert codes == [("Warning", 1264), ("Warning", 1264), ("Warning", 1265)]


def test_drop_table_if_exists_of_unknown_tables_notes_them(
    both: list[pymysql.Connection],
) -> None:
    """Tables neither the config nor MariaDB has: one note naming them all with IF EXISTS
    (the tables that exist are dropped), the error without; the implicit commit still runs."""
    statements = [
        "DROP TABLE IF EXISTS nosuch",
        "SHOW WARNINGS",
        "SELECT @@warning_count, @@error_count",
        "DROP TABLE IF EXISTS nosuch, nosuch2",
        "SHOW WARNINGS",
        "DROP TABLE nosuch, nosuch2",
        "SHOW WARNINGS",
        "DROP TABLE IF EXISTS nosuch, nosuch",
        "BEGIN",
        "INSERT INTO notes VALUES (1, 'a')",
        "DROP TABLE IF EXISTS nosuch",  # commits the INSERT
        "ROLLBACK",
        "SELECT id, body FROM notes",
        "DROP TABLE IF EXISTS notes, nosuch, nodb.t",  # a single table: one unit
        "SHOW WARNINGS",
        "SELECT id FROM notes",
        "DROP TABLE IF EXISTS nosuch, items",  # a sharded table: a unit per data node
        "SHOW WARNINGS",
        "SELECT k FROM items",
        "DROP TABLE IF EXISTS nosuch",
        "SHOW COUNT(*) WARNINGS",
    ]
    proxy, reference = (run(conn, statements) for conn in both)
    assert proxy == reference
    assert reference[1] == (
        "SHOW WARNINGS",
        ["Level", "Code", "Message"],
        [["Note", 1051, "Unknown table 'reference.nosuch'"]],
    )
    assert reference[14][2] == [["Note", 1051, "Unknown table 'reference.nosuch,nodb.t'"]]
    assert reference[15][1] == 1146  # notes was dropped
    for conn in both:  # the OK packet's count
        with conn.cursor() as cursor:
            cursor.execute("DROP TABLE IF EXISTS nosuch, nosuch2")
            assert cursor.warning_count == 1


def test_found_rows_as_mariadb_counts_them(both: list[pymysql.Connection]) -> None:
    statements = [
        "SELECT k FROM items ORDER BY k",  # merged over the shards
        "SELECT FOUND_ROWS()",
        "SELECT FOUND_ROWS()",  # the previous SELECT returned one row
        "SELECT k FROM items ORDER BY k LIMIT 2",
        "SELECT FOUND_ROWS()",
        "SELECT k FROM items",  # concatenated
        "SELECT FOUND_ROWS()",
        "SELECT SQL_CALC_FOUND_ROWS k FROM items WHERE k IN (1, 5, 9) ORDER BY k LIMIT 1",
        "SET @x = 1",  # SET and errors leave it
        "SELECT nosuchfn()",
        "SELECT FOUND_ROWS()",
        "INSERT INTO notes VALUES (1, 'a'), (2, 'b')",
        "SELECT SQL_CALC_FOUND_ROWS id FROM notes ORDER BY id LIMIT 1",
        "SELECT FOUND_ROWS()",
        "SHOW WARNINGS",  # leaves it
        "SELECT FOUND_ROWS()",
        "SHOW COUNT(*) WARNINGS",  # a SELECT of @@warning_count: one row
        "SELECT FOUND_ROWS()",
        "SELECT SQL_CALC_FOUND_ROWS k FROM items WHERE k = 5 LIMIT 0",
        "SELECT FOUND_ROWS(), ROW_COUNT()",
    ]
    proxy, reference = (run(conn, statements) for conn in both)
    assert proxy == reference
    assert reference[10][2] == [[3]]


def test_calc_found_rows_over_several_shards_is_refused(both: list[pymysql.Connection]) -> None:
    proxy, _ = both
    ((_, code, message),) = run(proxy, ["SELECT SQL_CALC_FOUND_ROWS k FROM items LIMIT 1"])
    assert code == 1235
    assert "SQL_CALC_FOUND_ROWS across several shards" in message


def test_prepared_statements_keep_warnings_and_found_rows(
    diag_proxy: ProxyProcess, reference_db: ReferenceDB, both: list[pymysql.Connection]
) -> None:
    """mysql-connector's prepared cursor and its get_warnings (SHOW WARNINGS after each
    statement that reports some), through the proxy and directly."""
    reference = reference_db.instance

    def observe(**connect: Any) -> list[Any]:
        conn = mysql.connector.connect(**connect, use_pure=True, autocommit=True)
        conn.get_warnings = True
        seen: list[Any] = []
        try:
            prepared = conn.cursor(prepared=True)
            for k in (30, 31):  # two shards, no column list
                prepared.execute("INSERT INTO items VALUES (?, ?, ?)", (k, k, "zz"))
            prepared.execute("SELECT k, v / 0 FROM items WHERE k = ?", (30,))
            seen.append((prepared.fetchall(), prepared.warnings))
            prepared.execute(
                "SELECT SQL_CALC_FOUND_ROWS k FROM items WHERE k IN (?, ?) LIMIT 1", (1, 9)
            )
            seen.append(prepared.fetchall())
            prepared.close()
            cursor = conn.cursor()
            cursor.execute("SELECT FOUND_ROWS()")
            seen.append(cursor.fetchall())
            cursor.execute("SELECT k, v, s FROM items WHERE k >= 30 ORDER BY k")
            seen.append(cursor.fetchall())
        finally:
            conn.close()
        return seen

    common = {"user": "app", "password": "app", "database": "reference"}
    via_proxy = observe(host=diag_proxy.host, port=diag_proxy.port, **common)
    reference.execute("CREATE USER IF NOT EXISTS 'app'@'%' IDENTIFIED BY 'app'")
    reference.execute("GRANT ALL ON reference.* TO 'app'@'%'")
    direct = observe(host=reference.host, port=reference.port, **common)
    assert via_proxy == direct
    assert direct[0][1] == [("Warning", 1365, "Division by 0")]
    assert direct[2] == [(2,)]


def field_list(host: str, port: int, table: bytes) -> list[bytes]:
    """COM_FIELD_LIST's reply packets, up to and including the EOF or ERR."""
    client = RawClient(host, port)
    try:
        client.login(database="reference")
        client.send_packet(b"\x04" + table + b"\x00", 0)
        packets = []
        while True:
            _, payload = client.read_packet()
            packets.append(payload)
            if payload[:1] == b"\xff" or (payload[:1] == b"\xfe" and len(payload) < 9):
                return packets
    finally:
        client.close()


def test_field_list_answers_as_mariadb(
    diag_proxy: ProxyProcess, reference_db: ReferenceDB, both: list[pymysql.Connection]
) -> None:
    """What the mariadb CLI's name completion and old drivers ask: the logical table's columns
    (column definitions byte for byte: same database and table names), or MariaDB's error."""
    reference = reference_db.instance
    reference.execute("CREATE USER IF NOT EXISTS 'app'@'%' IDENTIFIED BY 'app'")
    reference.execute("GRANT ALL ON reference.* TO 'app'@'%'")
    for table in (b"items", b"notes", b"nosuch"):
        proxy = field_list(diag_proxy.host, diag_proxy.port, table)
        direct = field_list(reference.host, reference.port, table)
        assert proxy == direct, table
    assert len(field_list(reference.host, reference.port, b"items")) == 4  # 3 columns + EOF
    assert err_fields(direct[-1])[0] == 1146

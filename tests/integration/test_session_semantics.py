"""Transactions and session statements through the proxy and on one MariaDB, compared: the
same statements must give the same answers, errors and data on both.

The proxy's logical database is named like the reference database, so messages naming it
read the same on both.
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any

import mysql.connector
import MySQLdb
import pymysql
import pytest
from conftest import retarget_config

if TYPE_CHECKING:
    from conftest import Cluster, ProxyFactory, ProxyProcess, ReferenceDB

CONFIG = """
users: [{name: app, password: app}, {name: other, password: pw2, databases: [reference]}]
backends:
  ds0: {host: 127.0.0.1, port: 13306, user: root, password: "", database: sem_0}
  ds1: {host: 127.0.0.1, port: 13307, user: root, password: "", database: sem_1}
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
    "CREATE TABLE items (k INT PRIMARY KEY, v INT)",
    "CREATE TABLE notes (id INT PRIMARY KEY, body VARCHAR(20))",
    "INSERT INTO items VALUES (1, 1), (2, 2)",
]


@pytest.fixture(scope="module")
def semantics_proxy(proxy_server: ProxyFactory, mariadb_cluster: Cluster) -> ProxyProcess:
    return proxy_server(retarget_config(CONFIG, mariadb_cluster), name="semantics")


@pytest.fixture
def both(semantics_proxy: ProxyProcess, reference_db: ReferenceDB) -> list[pymysql.Connection]:
    """[proxy connection, reference connection], each with the schema created."""
    conns = [semantics_proxy.connect(database="reference"), reference_db.connect()]
    for conn in conns:
        run(conn, SCHEMA)
    yield conns
    for conn in conns:
        conn.close()


def run(conn: pymysql.Connection, statements: list[str]) -> list[Any]:
    """Each statement's rows (sorted), affected row count, or (error code, message)."""
    seen: list[Any] = []
    with conn.cursor() as cursor:
        for sql in statements:
            try:
                cursor.execute(sql)
            except pymysql.MySQLError as exc:
                # A syntax error's "near ..." is the proxy's own guess: its code must match.
                seen.append((sql, exc.args[0], exc.args[1] if exc.args[0] != 1064 else ""))
                continue
            if cursor.description is None:
                seen.append((sql, cursor.rowcount))
            else:
                seen.append((sql, sorted(cursor.fetchall())))
    return seen


def same(both: list[pymysql.Connection], statements: list[str]) -> list[Any]:
    proxy, reference = (run(conn, statements) for conn in both)
    assert proxy == reference
    return proxy


def test_start_transaction_read_only_refuses_writes(both: list[pymysql.Connection]) -> None:
    seen = same(
        both,
        [
            "START TRANSACTION READ ONLY",
            "SELECT k FROM items",
            "INSERT INTO notes VALUES (1, 'one backend')",
            "INSERT INTO items VALUES (3, 3), (4, 4)",  # both backends
            "UPDATE items SET v = 0",
            "COMMIT",
            "SELECT COUNT(*) FROM notes",
            "SELECT k, v FROM items",
            "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
            "START TRANSACTION READ ONLY, WITH CONSISTENT SNAPSHOT",
            "INSERT INTO notes VALUES (2, 'still read only')",
            "ROLLBACK",
            "START TRANSACTION READ WRITE",
            "INSERT INTO notes VALUES (3, 'read write')",
            "COMMIT",
            "SELECT id FROM notes",
            "START TRANSACTION READ ONLY, READ WRITE",
            "START TRANSACTION READ ONLY foo",
        ],
    )
    assert seen[2][1] == 1792  # ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION


def test_set_autocommit_1_commits_only_when_autocommit_was_off(
    both: list[pymysql.Connection],
) -> None:
    same(
        both,
        [
            "BEGIN",
            "INSERT INTO notes VALUES (1, 'rolled back')",
            "SET autocommit = 1",  # it was 1 already: the transaction goes on
            "ROLLBACK",
            "SET autocommit = 0",
            "INSERT INTO notes VALUES (2, 'committed')",
            "SET autocommit = 1",  # from 0 to 1: a commit
            "ROLLBACK",
            "SELECT id FROM notes",
        ],
    )


def test_transaction_characteristics_and_chains(both: list[pymysql.Connection]) -> None:
    same(
        both,
        [
            "BEGIN",
            "SET TRANSACTION READ ONLY",  # 1568 inside a transaction
            "INSERT INTO notes VALUES (1, 'one')",
            "COMMIT AND CHAIN",
            "INSERT INTO notes VALUES (2, 'two')",
            "ROLLBACK AND NO CHAIN",
            "START TRANSACTION READ ONLY",
            "ROLLBACK AND CHAIN",  # the chained transaction is read only too
            "INSERT INTO notes VALUES (3, 'three')",
            "COMMIT WORK AND NO CHAIN NO RELEASE",
            "SELECT id FROM notes",
            "SELECT @@in_transaction",
        ],
    )


def test_row_count_after_session_statements(both: list[pymysql.Connection]) -> None:
    same(
        both,
        [
            "INSERT INTO notes VALUES (1, 'a'), (2, 'b')",
            "SET @x = 1",
            "SELECT ROW_COUNT()",
            "UPDATE notes SET body = 'c'",
            "BEGIN",
            "SELECT ROW_COUNT()",
            "DELETE FROM notes",
            "COMMIT",
            "SELECT ROW_COUNT()",
            "USE reference",
            "SELECT ROW_COUNT()",
        ],
    )


SESSION_FUNCTIONS = (
    "SELECT LAST_INSERT_ID(), ROW_COUNT(), FOUND_ROWS(), CONNECTION_ID(), @@warning_count, "
    "@@error_count, @@identity"
)


def column_types(conn: pymysql.Connection, sql: str) -> list[tuple[str, int, bool]]:
    """(name, MySQL column type, UNSIGNED) of each column of `sql`'s result."""
    with conn.cursor() as cursor:
        cursor.execute(sql)
        cursor.fetchall()
        fields = cursor._result.fields
    return [(f.name, f.type_code, bool(f.flags & 32)) for f in fields]


def test_session_functions_have_mariadbs_column_types(both: list[pymysql.Connection]) -> None:
    """Drivers map the column type: LAST_INSERT_ID() is a BIGINT UNSIGNED, not an INT."""
    proxy, reference = (column_types(conn, SESSION_FUNCTIONS) for conn in both)
    assert proxy == reference
    assert proxy[0] == ("LAST_INSERT_ID()", 8, True)


def test_last_insert_id_expr_sets_the_sessions_value(
    semantics_proxy: ProxyProcess, reference_db: ReferenceDB, both: list[pymysql.Connection]
) -> None:
    """SELECT LAST_INSERT_ID(expr) sets the value the next LAST_INSERT_ID() returns, and a
    statement that never evaluates expr leaves it, whatever another client did meanwhile on
    the same pooled backend connection."""
    others = [semantics_proxy.connect(database="reference"), reference_db.connect()]
    seen = []
    for conn, other in zip(both, others, strict=True):
        steps = [
            (conn, "SELECT LAST_INSERT_ID(5)"),
            (other, "SELECT LAST_INSERT_ID(99)"),
            (conn, "SELECT LAST_INSERT_ID(), @@identity"),
            (conn, "SELECT LAST_INSERT_ID(7) FROM items WHERE k = 1 AND v = 0"),
            (other, "SELECT LAST_INSERT_ID(98)"),
            (conn, "SELECT LAST_INSERT_ID()"),
            (conn, "BEGIN"),
            (conn, "SELECT LAST_INSERT_ID(k + 10) FROM items WHERE k = 2"),
            (conn, "COMMIT"),
            (conn, "SELECT LAST_INSERT_ID()"),
        ]
        seen.append([run(c, [sql]) for c, sql in steps])
        other.close()
    assert seen[0] == seen[1]
    assert seen[0][-1] == [("SELECT LAST_INSERT_ID()", [(12,)])]


def test_last_insert_id_expr_in_a_set_value_sets_the_sessions_value(
    both: list[pymysql.Connection],
) -> None:
    """SET @a = LAST_INSERT_ID(expr) sets LAST_INSERT_ID() as SELECT LAST_INSERT_ID(expr)
    does, and a LAST_INSERT_ID() inside expr is the session's."""
    same(
        both,
        [
            "SELECT LAST_INSERT_ID(5)",
            "SET @a = LAST_INSERT_ID(42)",
            "SELECT LAST_INSERT_ID(), @a",
            "SET @b = LAST_INSERT_ID(LAST_INSERT_ID() + 1), @c = 'x'",
            "SELECT LAST_INSERT_ID(), @b, @c",
        ],
    )


@pytest.mark.usefixtures("both")  # the schema
def test_change_user_resets_the_session_and_logs_in_again(semantics_proxy: ProxyProcess) -> None:
    """COM_CHANGE_USER (mysql_change_user()) as MariaDB answers it: the session is reset
    (transaction rolled back, variables gone), then the new credentials are checked; a
    refused login keeps the user and the connection."""
    conn = MySQLdb.connect(
        host=semantics_proxy.host, port=semantics_proxy.port, user="app", password="app",
        database="reference",
    )  # fmt: skip
    try:
        cursor = conn.cursor()
        cursor.execute("DELETE FROM notes")
        for sql in ("BEGIN", "INSERT INTO notes VALUES (1, 'rolled back')", "SET @v = 1"):
            cursor.execute(sql)
        conn.change_user("other", "pw2", "reference")
        cursor = conn.cursor()
        cursor.execute("SELECT CURRENT_USER(), @v, DATABASE(), @@autocommit, @@in_transaction")
        assert cursor.fetchall() == (("other@%", None, "reference", 1, 0),)
        cursor.execute("SELECT COUNT(*) FROM notes")
        assert cursor.fetchall() == ((0,),)
        with pytest.raises(MySQLdb.OperationalError) as refused:
            conn.change_user("app", "wrong", "reference")
        assert refused.value.args[0] == 1045
        cursor = conn.cursor()
        cursor.execute("SELECT CURRENT_USER(), DATABASE()")
        assert cursor.fetchall() == (("other@%", "reference"),)
        conn.change_user("app", "app")  # no database
        cursor = conn.cursor()
        cursor.execute("SELECT CURRENT_USER(), DATABASE()")
        assert cursor.fetchall() == (("app@%", None),)
    finally:
        conn.close()


def test_set_inside_a_transaction_reaches_every_backend_it_holds(
    both: list[pymysql.Connection],
) -> None:
    """A SET runs on one connection; the transaction's branches on other backends must get it
    too (they can't be reset mid-transaction), or their statements see the old session."""
    same(
        both,
        [
            "INSERT INTO items VALUES (3, 3)",
            "BEGIN",
            "SELECT k FROM items WHERE k = 3",  # a branch on ds1
            "SET time_zone = '+05:00', @zz = 40",  # run on ds0
            "SELECT @@time_zone, @zz FROM items WHERE k = 3",
            "UPDATE items SET v = @zz WHERE k = 2",  # ds1
            "SELECT @x := 70 FROM items WHERE k = 1",  # ds0
            "UPDATE items SET v = @x WHERE k = 3",  # ds1
            "COMMIT",
            "SELECT k, v FROM items",
            "SELECT @@time_zone, @zz, @x FROM items WHERE k = 2",
        ],
    )


@pytest.mark.usefixtures("both")  # the schema
def test_no_backslash_escapes_is_refused_and_changes_nothing(
    semantics_proxy: ProxyProcess,
) -> None:
    """The proxy renders prepared statements' values with backslash escapes: under
    NO_BACKSLASH_ESCAPES a value could end its string early, so the mode is refused, and the
    refused SET leaves the session (and its transaction's connections) as they were."""
    conn = semantics_proxy.connect(database="reference")
    try:
        for prefix in ([], ["BEGIN", "SELECT k FROM items WHERE k = 1"]):
            run(conn, [*prefix, "SET sql_mode = 'ANSI_QUOTES'"])
            seen = run(
                conn,
                [
                    "SET sql_mode = CONCAT(@@sql_mode, ',NO_BACKSLASH_ESCAPES'), @nb = 1",
                    "SELECT @@sql_mode, @nb",
                    "SELECT @@sql_mode, @nb FROM items WHERE k = 1",
                    "ROLLBACK",
                ],
            )
            assert seen[0][1] == 1235, seen
            assert seen[1:3] == [
                ("SELECT @@sql_mode, @nb", [("ANSI_QUOTES", None)]),
                ("SELECT @@sql_mode, @nb FROM items WHERE k = 1", [("ANSI_QUOTES", None)]),
            ]
    finally:
        conn.close()


RETURNING = [
    ("INSERT INTO notes VALUES (%s, %s) RETURNING id, body", (1, "one")),
    ("INSERT INTO items VALUES (%s, %s) RETURNING k, v", (5, 50)),
    ("DELETE FROM items WHERE k = %s RETURNING k", (5,)),
    ("DELETE FROM notes WHERE id = %s RETURNING body", (1,)),
    ("INSERT INTO items VALUES (%s, %s), (%s, %s) RETURNING k", (6, 6, 7, 7)),  # 2 shards
    ("SELECT k FROM items WHERE k = %s", (1,)),
]


def prepared_clients(proxy: ProxyProcess, reference_db: ReferenceDB) -> list[Any]:
    """[proxy, reference] mysql-connector connections (pure Python, autocommit) for prepared
    statements over the binary protocol."""
    servers = [
        (proxy.host, proxy.port, "app", "app"),
        (reference_db.instance.host, reference_db.instance.port, "root", ""),
    ]
    return [
        mysql.connector.connect(
            host=host,
            port=port,
            user=user,
            password=password,
            database="reference",
            use_pure=True,
            autocommit=True,
        )
        for host, port, user, password in servers
    ]


def test_writes_returning_rows(
    semantics_proxy: ProxyProcess, reference_db: ReferenceDB, both: list[pymysql.Connection]
) -> None:
    """INSERT / DELETE ... RETURNING answer rows: relayed from one shard (as binary rows to a
    prepared statement, whose client would otherwise read text rows as binary ones), refused
    with 1235 over several."""
    seen: list[list[Any]] = []
    clients = prepared_clients(semantics_proxy, reference_db)
    for prepared, conn in zip(clients, both, strict=True):
        cursor = prepared.cursor(prepared=True)
        answers: list[Any] = []
        for sql, params in RETURNING:
            try:
                cursor.execute(sql, params)
                answers.append(cursor.fetchall() if cursor.description else cursor.rowcount)
            except mysql.connector.Error as exc:
                answers.append(exc.errno)
        prepared.close()
        text = [sql.replace("%s", "{}").format(*params) for sql, params in RETURNING]
        run(conn, ["DELETE FROM items WHERE k > 2"])  # the reference inserted 6 and 7
        seen.append([answers, run(conn, text)])
    proxy, reference = seen
    assert proxy[0][:4] == reference[0][:4]
    assert proxy[0][4:] == [1235, [(1,)]]
    assert proxy[1][:4] == reference[1][:4]
    assert proxy[1][4][1] == 1235


def test_set_transaction_applies_to_the_next_autocommit_statement(
    both: list[pymysql.Connection],
) -> None:
    """An autocommit statement is a transaction: SET TRANSACTION READ ONLY refuses the write
    that follows it (and stays for the next statement when it does), a read uses it up."""
    same(
        both,
        [
            "SET TRANSACTION READ ONLY",
            "INSERT INTO notes VALUES (1, 'refused')",
            "INSERT INTO notes VALUES (2, 'refused too')",
            "SELECT COUNT(*) FROM notes",
            "SET TRANSACTION READ ONLY",
            "SELECT COUNT(*) FROM items",
            "INSERT INTO notes VALUES (3, 'written')",
            "SELECT id FROM notes",
        ],
    )


AUTOCOMMIT_VALUES = ['"ON"', "'true'", "yes", "DEFAULT", "'OFF'", "'0'", "0.0", "1 + 0", "@saved"]


def test_set_autocommit_reads_its_value_as_mariadb_does(both: list[pymysql.Connection]) -> None:
    """Quoted ON / OFF, DEFAULT and expressions (SET autocommit = @saved, as scripts restore
    it) are values; other strings, decimals and NULL are errors, with MariaDB's message."""
    statements = ["SET @saved = 0"]
    for value in AUTOCOMMIT_VALUES:
        statements += [f"SET autocommit = {value}", "SELECT @@autocommit"]
    same(both, statements)


PARAMETERS = [
    datetime.date(2020, 1, 2),
    datetime.datetime(2020, 1, 2, 3, 4, 5),
    datetime.datetime(2020, 1, 2, 3, 4, 5, 120000),
    datetime.timedelta(hours=3, minutes=4, seconds=5),
    datetime.timedelta(days=-1, hours=20),
    2.0,  # a DOUBLE: '2', not the DECIMAL 2.0's '2.0'
    -0.0,
    0.1 + 0.2,
    1e20,
]


def test_prepared_writes_store_parameters_as_mariadb_does(
    semantics_proxy: ProxyProcess, reference_db: ReferenceDB, both: list[pymysql.Connection]
) -> None:
    """A prepared write runs as text with its values as literals: a DATE parameter written to
    a string column must read '2020-01-02', not '2020-01-02 00:00:00.000000', a DOUBLE 2
    must read '2'."""
    stored = []
    clients = prepared_clients(semantics_proxy, reference_db)
    for prepared, conn in zip(clients, both, strict=True):
        cursor = prepared.cursor(prepared=True)
        cursor.execute("ALTER TABLE notes MODIFY body VARCHAR(40)")
        for i, value in enumerate(PARAMETERS):
            cursor.execute("INSERT INTO notes VALUES (%s, %s)", (i, value))
        prepared.close()
        stored.append(run(conn, ["SELECT id, body FROM notes"]))
    assert stored[0] == stored[1]


def test_with_autocommit_off_a_read_of_no_table_starts_no_transaction(
    both: list[pymysql.Connection],
) -> None:
    """SELECT 1 (a pool's validation query) must not start a transaction: drivers read the
    status flag, and mysql-connector's start_transaction() refuses while it is set."""
    same(
        both,
        [
            "SET autocommit = 0",
            "SELECT 1",
            "SELECT @@in_transaction",
            "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",  # 1568 inside a transaction
            "SELECT COUNT(*) FROM notes",
            "SELECT @@in_transaction",
            "ROLLBACK",
            "SET autocommit = 1",
        ],
    )
    for conn in both:
        with conn.cursor() as cursor:
            cursor.execute("SET autocommit = 0")
            cursor.execute("SELECT 1")
        assert not conn.server_status & 1, "SERVER_STATUS_IN_TRANS after SELECT 1"
        conn.rollback()


def test_a_read_of_no_table_leaves_set_transaction_for_the_next_statement(
    both: list[pymysql.Connection],
) -> None:
    """SELECT 1 starts no transaction, so it does not use up SET TRANSACTION READ ONLY: the
    write after it is refused, with autocommit on or off, as in MariaDB."""
    same(
        both,
        [
            "SET TRANSACTION READ ONLY",
            "SELECT 1",
            "INSERT INTO notes VALUES (1, 'refused')",
            "SET autocommit = 0",
            "SET TRANSACTION READ ONLY",
            "SELECT 1",
            "INSERT INTO notes VALUES (2, 'refused')",
            "ROLLBACK",
            "SET autocommit = 1",
            "SELECT COUNT(*) FROM notes",
        ],
    )


def test_limit_parameters_bound_as_strings(
    semantics_proxy: ProxyProcess, reference_db: ReferenceDB, both: list[pymysql.Connection]
) -> None:
    """PHP's PDO binds every parameter as a string: MariaDB takes LIMIT '1', '5' as numbers,
    also when the read runs on every shard."""
    seen = []
    clients = prepared_clients(semantics_proxy, reference_db)
    for prepared, conn in zip(clients, both, strict=True):
        run(conn, ["INSERT INTO items VALUES (3, 3), (4, 4), (5, 5)"])
        cursor = prepared.cursor(prepared=True)
        cursor.execute("SELECT k FROM items ORDER BY k LIMIT ?, ?", ("1", "3"))
        seen.append(cursor.fetchall())
        cursor.execute("SELECT k FROM items WHERE k = 1 LIMIT ?", ("5",))
        seen.append(cursor.fetchall())
        prepared.close()
    assert seen[:2] == seen[2:]
    assert seen[0] == [(2,), (3,), (4,)]


def test_set_values_read_the_sessions_functions_and_logical_tables(
    both: list[pymysql.Connection],
) -> None:
    """INSERT ...; SET @id = LAST_INSERT_ID(); INSERT child (parent_id) VALUES (@id): the SET
    ran as written on a pooled connection of the default backend, where LAST_INSERT_ID() is
    another connection's (0 here) and `notes` (on ds1) doesn't exist."""
    same(
        both,
        [
            "ALTER TABLE notes MODIFY id INT AUTO_INCREMENT",
            "INSERT INTO notes (body) VALUES ('a')",
            "INSERT INTO notes (body) VALUES ('b')",
            "SET @last = LAST_INSERT_ID()",
            "SET @n = (SELECT COUNT(*) FROM notes), @m = CONCAT(@last, 'x')",
            "SELECT @last, @n, @m",
            "INSERT INTO notes VALUES (@last + 10, CONCAT(@m, @n))",
            "SELECT id, body FROM notes",
        ],
    )

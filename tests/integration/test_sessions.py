"""Sessions never share backend state, even when they share pooled backend connections.

Most tests use a proxy of their own whose backends have a pool of ONE connection each, so every
client's statements necessarily run on the same backend connection, interleaved; its config
also has a second logical database (`crm`) for USE / COM_INIT_DB.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pymysql
import pytest
from conftest import retarget_config
from shop_helpers import connector_connect, physical_tables

if TYPE_CHECKING:
    from conftest import Cluster, ProxyFactory, ProxyProcess

ONE_CONNECTION_CONFIG = """\
listen: {host: 127.0.0.1, port: 3307}
users: [{name: app, password: app}]
backends:
  s0: {host: 127.0.0.1, port: 13306, user: root, password: "", database: sess_0, pool: {min: 0, max: 1}}
  s1: {host: 127.0.0.1, port: 13307, user: root, password: "", database: sess_1, pool: {min: 0, max: 1}}
  c1: {host: 127.0.0.1, port: 13307, user: root, password: "", database: crm_1, pool: {min: 0, max: 1}}
databases:
  shop:
    default_backend: s0
    tables:
      users: {shard_key: id, algorithm: mod, backends: [s0, s1], tables_per_backend: 2}
      notes: {backend: s0}
  crm:
    default_backend: c1
    tables:
      contacts: {backend: c1}
"""  # noqa: E501

STATE_SQL = "SELECT @@sql_mode, @@time_zone, @x, DATABASE()"


@pytest.fixture(scope="module")
def pool1_proxy(proxy_server: ProxyFactory, mariadb_cluster: Cluster) -> Iterator[ProxyProcess]:
    proxy = proxy_server(retarget_config(ONE_CONNECTION_CONFIG, mariadb_cluster), name="pool1")
    conn = proxy.connect()
    with conn.cursor() as cursor:
        for sql in (
            "DROP TABLE IF EXISTS users",
            "CREATE TABLE users (id BIGINT PRIMARY KEY, name VARCHAR(100))",
            # One row per statement: a statement needing two connections of one backend
            # can't run on these one-connection pools (see the last test).
            "INSERT INTO users (id, name) VALUES (1, 'one')",
            "INSERT INTO users (id, name) VALUES (2, 'two')",
            "INSERT INTO users (id, name) VALUES (3, 'three')",
            "INSERT INTO users (id, name) VALUES (4, 'four')",
            "DROP TABLE IF EXISTS notes",
            "CREATE TABLE notes (id INT PRIMARY KEY, body VARCHAR(100)) CHARACTER SET utf8mb4",
            "USE crm",
            "DROP TABLE IF EXISTS contacts",
            "CREATE TABLE contacts (id INT PRIMARY KEY, name VARCHAR(100))",
            "INSERT INTO contacts VALUES (1, 'crm contact')",
        ):
            cursor.execute(sql)
    conn.close()
    yield proxy
    proxy.terminate()
    for name in ("users", "notes", "contacts"):
        for index, schema, table in physical_tables(mariadb_cluster, name):
            if schema in ("sess_0", "sess_1", "crm_1"):
                mariadb_cluster.instances[index].execute(f"DROP TABLE `{schema}`.`{table}`")


def one(conn: Any, sql: str, params: Any = None) -> tuple:
    cursor = conn.cursor()
    cursor.execute(sql, params)
    rows = cursor.fetchall()
    cursor.close()
    assert len(rows) == 1, rows
    return tuple(rows[0])


def execute(conn: Any, sql: str, params: Any = None) -> None:
    cursor = conn.cursor()
    cursor.execute(sql, params)
    cursor.close()


@pytest.fixture(scope="module")
def server_defaults(mariadb_cluster: Cluster) -> tuple[str, str]:
    """(sql_mode, time_zone) a fresh backend session starts with."""
    ((sql_mode, time_zone),) = mariadb_cluster.instances[0].execute(
        "SELECT @@session.sql_mode, @@session.time_zone"
    )
    return sql_mode, time_zone


def configure(conn: Any, sql_mode: str, time_zone: str, x: Any) -> None:
    execute(conn, f"SET SESSION sql_mode = '{sql_mode}'")
    execute(conn, f"SET time_zone = '{time_zone}'")
    execute(conn, "SET @x = %s", (x,))


A = ("ANSI_QUOTES,NO_ZERO_DATE", "+05:00", "client A")
B = ("STRICT_ALL_TABLES", "-03:30", 42)


def test_interleaved_clients_on_one_backend_connection_keep_their_own_state(
    pool1_proxy: ProxyProcess,
) -> None:
    a = pool1_proxy.connect()
    b = pool1_proxy.connect()
    configure(a, *A)
    assert one(b, STATE_SQL)[2] is None  # A's @x is not B's
    configure(b, *B)
    for _ in range(5):
        assert one(a, STATE_SQL) == (*A[:2], "client A", "shop")
        assert one(b, STATE_SQL) == (*B[:2], 42, "shop")
        # Statements routed to the other backend, too.
        assert one(a, "SELECT name, @@time_zone, @x FROM users WHERE id = 2") == (
            "two",
            "+05:00",
            "client A",
        )
        assert one(b, "SELECT name, @@time_zone, @x FROM users WHERE id = 3") == (
            "three",
            "-03:30",
            42,
        )
    # The modes act, not just read back: ANSI_QUOTES makes "name" a column for A only.
    assert one(a, 'SELECT "name" FROM users WHERE id = 1') == ("one",)
    assert one(b, 'SELECT "name" FROM users WHERE id = 1') == ("name",)
    # A changes its mind; B is unaffected.
    execute(a, "SET @x = NULL, time_zone = '+00:00'")
    assert one(a, STATE_SQL) == (A[0], "+00:00", None, "shop")
    assert one(b, STATE_SQL) == (*B[:2], 42, "shop")
    a.close()
    b.close()


def test_use_and_com_init_db_are_per_client(pool1_proxy: ProxyProcess) -> None:
    a = pool1_proxy.connect()
    b = pool1_proxy.connect(database="crm")
    assert one(a, "SELECT DATABASE()") == ("shop",)
    assert one(b, "SELECT DATABASE()") == ("crm",)
    execute(a, "USE crm")
    assert one(a, "SELECT DATABASE(), name FROM contacts") == ("crm", "crm contact")
    b.select_db("shop")  # COM_INIT_DB
    assert one(b, "SELECT DATABASE(), name FROM users WHERE id = 4") == ("shop", "four")
    assert one(a, "SELECT DATABASE()") == ("crm",)
    with pytest.raises(pymysql.err.ProgrammingError) as excinfo:
        execute(b, "SELECT * FROM contacts")  # a crm table, and b is in shop now
    assert excinfo.value.args[0] == 1146
    assert one(a, "SELECT id FROM contacts") == (1,)
    # Qualified names work from either database.
    assert one(a, "SELECT name FROM shop.users WHERE id = 1") == ("one",)
    assert one(b, "SELECT name FROM crm.contacts WHERE id = 1") == ("crm contact",)
    a.close()
    b.close()


def test_state_does_not_survive_into_the_next_client_of_a_pooled_connection(
    pool1_proxy: ProxyProcess, server_defaults: tuple[str, str]
) -> None:
    a = pool1_proxy.connect()
    configure(a, *A)
    execute(a, "SET NAMES latin1")
    execute(a, "USE crm")
    assert one(a, STATE_SQL) == (*A[:2], "client A", "crm")
    assert one(a, "SELECT name FROM contacts") == ("crm contact",)  # runs on c1's one connection
    a.close()

    c = pool1_proxy.connect()  # must reuse a's backend connections: the pools hold one each
    assert one(c, STATE_SQL) == (*server_defaults, None, "shop")
    assert one(c, "SELECT @@character_set_client, @@character_set_results") == (
        "utf8mb4",
        "utf8mb4",
    )
    assert one(c, "SELECT @@time_zone, @x FROM users WHERE id = 3") == (server_defaults[1], None)
    execute(c, "USE crm")
    assert one(c, "SELECT @@sql_mode, @@time_zone, @x FROM contacts") == (*server_defaults, None)
    c.close()


def test_variables_assigned_inside_a_select_stay_with_their_client(
    pool1_proxy: ProxyProcess,
) -> None:
    a = pool1_proxy.connect()
    b = pool1_proxy.connect()
    assert one(a, "SELECT @leak := 'from a'") == ("from a",)
    assert one(b, "SELECT @leak") == (None,)
    assert one(a, "SELECT @leak") == ("from a",)
    a.close()
    b.close()


USER_VARIABLES_SQL = (
    "SELECT HEX(@bin), @text, HEX(@text), COLLATION(@text), @f, @d, @big, @n, @s, COLLATION(@s)"
)


def test_user_variables_keep_bytes_type_and_collation_on_another_connection(
    pool1_proxy: ProxyProcess,
) -> None:
    """The session's user variables are replayed wherever it runs next: a binary value, a
    latin1 string and a DOUBLE must come back as they were, not as text read in UTF-8."""
    a = pool1_proxy.connect(charset="latin1")
    b = pool1_proxy.connect()
    execute(a, "SET @bin = 0xFF00, @text = 'é', @f = 1e300, @d = 1.50, @big = 18446744073709551615")
    execute(a, "SET @n = NULL")
    assert one(a, "SELECT @s := _utf8mb4 X'C3BC' COLLATE utf8mb4_bin") == ("ü",)
    before = one(a, USER_VARIABLES_SQL)
    assert before[:4] == ("FF00", "é", "E9", "latin1_swedish_ci")
    assert isinstance(before[4], float)
    one(b, "SELECT 1")  # b's turn on the one connection: a's variables go, and come back
    assert one(a, USER_VARIABLES_SQL) == before
    a.close()
    b.close()


def test_set_names_latin1_and_utf8mb4_clients_round_trip_non_ascii(
    pool1_proxy: ProxyProcess, mariadb_cluster: Cluster
) -> None:
    latin = pool1_proxy.connect(charset="latin1")  # PyMySQL sends SET NAMES latin1
    utf8 = pool1_proxy.connect(charset="utf8mb4")
    execute(utf8, "DELETE FROM notes")
    for _ in range(2):
        assert one(latin, "SELECT @@character_set_client, @@character_set_results") == (
            "latin1",
            "latin1",
        )
        assert one(utf8, "SELECT @@character_set_client") == ("utf8mb4",)
        # The server decodes each client's bytes with that client's charset.
        assert one(latin, "SELECT HEX(CONVERT(%s USING utf8mb4))", ("é",)) == ("C3A9",)
        assert one(utf8, "SELECT HEX(CONVERT(%s USING utf8mb4))", ("é",)) == ("C3A9",)
        assert one(latin, "SELECT %s", ("Renée Côté",)) == ("Renée Côté",)
        assert one(utf8, "SELECT %s", ("日本 🚀",)) == ("日本 🚀",)
    execute(latin, "INSERT INTO notes VALUES (1, %s)", ("Renée Côté à Zürich",))
    execute(utf8, "INSERT INTO notes VALUES (2, %s)", ("Zoë 🙂 日本",))
    assert one(latin, "SELECT body FROM notes WHERE id = 1") == ("Renée Côté à Zürich",)
    assert one(utf8, "SELECT body FROM notes WHERE id = 1") == ("Renée Côté à Zürich",)
    assert one(utf8, "SELECT body FROM notes WHERE id = 2") == ("Zoë 🙂 日本",)
    # latin1 can't hold the emoji or the kanji: MySQL sends '?' for them.
    assert one(latin, "SELECT body FROM notes WHERE id = 2") == ("Zoë ? ??",)
    # Stored correctly (not double-encoded) on the backend.
    stored = mariadb_cluster.instances[0].execute("SELECT id, body FROM sess_0.notes ORDER BY id")
    assert stored == [(1, "Renée Côté à Zürich"), (2, "Zoë 🙂 日本")]
    execute(latin, "SET NAMES utf8mb4")
    assert one(latin, "SELECT @@character_set_client") == ("utf8mb4",)
    latin.close()
    utf8.close()


def test_handshake_charset_alone_is_honoured(pool1_proxy: ProxyProcess) -> None:
    """The mariadb CLI's --default-character-set only sets the handshake response's charset
    (no SET NAMES follows; checked against a plain MariaDB's general log)."""
    command = [
        "mariadb",
        "--no-defaults",
        "--protocol=tcp",
        f"-h{pool1_proxy.host}",
        f"-P{pool1_proxy.port}",
        "-uapp",
        "-papp",
        "--default-character-set=latin1",
        "--batch",
        "--skip-column-names",
        "-e",
        # 'é' as ONE latin1 byte; the server must read it as latin1 and answer in latin1.
        b"SELECT @@character_set_client, @@character_set_results, "
        b"HEX(CONVERT('\xe9' USING utf8mb4)), 'C\xf4t\xe9'",
        "shop",
    ]
    result = subprocess.run(command, capture_output=True, timeout=15, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"latin1\tlatin1\tC3A9\tC\xf4t\xe9\n"


def test_mysql_connector_latin1_client(pool1_proxy: ProxyProcess) -> None:
    conn = connector_connect(pool1_proxy, charset="latin1", collation="latin1_swedish_ci")
    try:
        assert one(conn, "SELECT @@character_set_client, @@character_set_connection") == (
            "latin1",
            "latin1",
        )
        assert one(conn, "SELECT HEX(CONVERT(%s USING utf8mb4)), %s", ("é", "Côté")) == (
            "C3A9",
            "Côté",
        )
    finally:
        conn.close()


def _hammer(proxy: ProxyProcess, n: int, databases: list[str], errors: list[BaseException]) -> None:
    """One client: its own state, checked 20 times; a switch of database half-way."""
    try:
        database = databases[n % len(databases)]
        conn = proxy.connect(database=database)
        sql_mode = ["ANSI_QUOTES", "STRICT_ALL_TABLES", "NO_ZERO_DATE", "PIPES_AS_CONCAT"][n % 4]
        time_zone = f"+0{n % 10}:{15 * (n % 4):02d}"
        configure(conn, sql_mode, time_zone, f"thread {n}")
        for i in range(20):
            if i == 10:
                database = databases[(n + 1) % len(databases)]
                conn.select_db(database)
            assert one(conn, STATE_SQL) == (sql_mode, time_zone, f"thread {n}", database)
        conn.close()
    except BaseException as exc:
        errors.append(exc)


@pytest.mark.parametrize("pool", ["shop_proxy", "pool1_proxy"])
def test_concurrent_clients_never_see_each_others_state(
    pool: str, request: pytest.FixtureRequest
) -> None:
    proxy = request.getfixturevalue(pool)
    databases = ["shop", "crm"] if pool == "pool1_proxy" else ["shop"]
    errors: list[BaseException] = []
    threads = [
        threading.Thread(target=_hammer, args=(proxy, n, databases, errors)) for n in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads), "clients hung"
    assert not errors, errors[0]


def test_statements_needing_several_connections_of_one_backend_work_with_a_pool_of_one(
    proxy_server: ProxyFactory, mariadb_cluster: Cluster
) -> None:
    """A pool of max 1 must not deadlock a single statement: a scatter read over two physical
    tables of one backend, or a write over two backends (its XA decision log needs a
    connection to the log backend too). The client gives up after 5 s."""
    config = ONE_CONNECTION_CONFIG.replace("sess_", "sessdl_").replace("crm_1", "crmdl_1")
    proxy = proxy_server(retarget_config(config, mariadb_cluster), name="pool1-deadlock")
    try:
        conn = proxy.connect(read_timeout=5)
        execute(conn, "CREATE TABLE users (id BIGINT PRIMARY KEY, name VARCHAR(100))")
        for user_id in range(4):
            execute(conn, "INSERT INTO users (id, name) VALUES (%s, 'x')", (user_id,))
        cursor = conn.cursor()
        cursor.execute("SELECT id FROM users")  # users_0 and users_1 are both on s0
        assert sorted(cursor.fetchall()) == [(0,), (1,), (2,), (3,)]
        cursor.execute("INSERT INTO users (id, name) VALUES (4, 'ds0'), (6, 'ds1')")
        assert cursor.rowcount == 2
        conn.close()
    finally:
        proxy.kill()
        for index, schema, table in physical_tables(mariadb_cluster, "users"):
            if schema.startswith("sessdl_"):
                mariadb_cluster.instances[index].execute(f"DROP TABLE `{schema}`.`{table}`")


def test_a_killed_statement_never_answers_the_next_client_of_its_connection(
    pool1_proxy: ProxyProcess,
) -> None:
    """KILL lands while a statement runs on s0's only connection and another client waits
    for that connection: the waiting client gets its own answer, never the killed one's."""
    victim, killer = pool1_proxy.connect(), pool1_proxy.connect()
    (victim_id,) = one(victim, "SELECT CONNECTION_ID()")
    answers: dict[str, Any] = {}

    def slow() -> None:  # users id 1 lives on s0, like id 4
        try:
            answers["victim"] = one(victim, "SELECT SLEEP(2), name FROM users WHERE id = 1")
        except pymysql.MySQLError as exc:
            answers["victim"] = exc.args[0]

    def waiting() -> None:
        conn = pool1_proxy.connect()
        answers["waiter"] = one(conn, "SELECT name FROM users WHERE id = 4")
        conn.close()

    threads = [threading.Thread(target=slow), threading.Thread(target=waiting)]
    threads[0].start()
    time.sleep(0.5)
    threads[1].start()
    time.sleep(0.5)
    execute(killer, f"KILL {victim_id}")
    for thread in threads:
        thread.join(15)
    assert answers["waiter"] == ("four",)
    assert answers["victim"] in (1317, 2013, 2006)  # interrupted, or cut off: never rows
    assert one(killer, "SELECT name FROM users WHERE id = 1") == ("one",)
    killer.close()


def test_named_locks_are_refused_rather_than_left_with_a_pooled_connection(
    pool1_proxy: ProxyProcess, mariadb_cluster: Cluster
) -> None:
    """GET_LOCK() takes the lock for the backend connection, which goes back to the pool: the
    lock would outlive the client and RELEASE_LOCK() could run on another connection."""
    a = pool1_proxy.connect()
    for sql in ("SELECT GET_LOCK('rev_lock', 0)", "SELECT RELEASE_LOCK('rev_lock')"):
        with pytest.raises(pymysql.MySQLError) as caught:
            one(a, sql)
        assert caught.value.args[0] == 1235, caught.value.args
    a.close()
    assert mariadb_cluster.instances[0].execute("SELECT IS_FREE_LOCK('rev_lock')") == [(1,)]


def test_set_insert_id_is_for_the_next_insert_only(pool1_proxy: ProxyProcess) -> None:
    """SET insert_id (mysqlbinlog's output has it) gives the next INSERT its AUTO_INCREMENT
    value, once: replayed on the connection after another client's turn, it gave every later
    INSERT the same value (1062). SET last_insert_id sets LAST_INSERT_ID()."""
    a = pool1_proxy.connect()
    b = pool1_proxy.connect()
    execute(a, "DROP TABLE IF EXISTS notes")
    execute(a, "CREATE TABLE notes (id INT AUTO_INCREMENT PRIMARY KEY, body VARCHAR(100))")
    execute(a, "SET insert_id = 1000")
    for body in ("first", "second", "third"):
        execute(a, "INSERT INTO notes (body) VALUES (%s)", (body,))
        one(b, "SELECT COUNT(*) FROM notes")  # b's turn on notes' one connection
    assert one(a, "SELECT GROUP_CONCAT(id ORDER BY id) FROM notes") == ("1000,1001,1002",)
    execute(a, "SET last_insert_id = 77")
    assert one(a, "SELECT LAST_INSERT_ID(), @@last_insert_id") == (77, 77)
    one(b, "SELECT COUNT(*) FROM notes")
    assert one(a, "SELECT LAST_INSERT_ID()") == (77,)
    execute(a, "DROP TABLE notes")
    execute(a, "CREATE TABLE notes (id INT PRIMARY KEY, body VARCHAR(100)) CHARACTER SET utf8mb4")
    a.close()
    b.close()


def test_quoted_user_variables_stay_with_their_client(pool1_proxy: ProxyProcess) -> None:
    """@'name', @"name" and @`name` are user variables too: assigned with := they stayed on the
    pooled connection, where the next client read them; SET @'a b' = ... was a syntax error."""
    a = pool1_proxy.connect()
    assert one(a, "SELECT @'secret' := 'from a', @\"Dq\" := 6, @`b q` := 7") == ("from a", 6, 7)
    execute(a, "SET @'s v' = 9, @`T` = 10")
    a_values = "SELECT @secret, @dq, @'b q', @`s v`, @t"
    assert one(a, a_values) == ("from a", 6, 7, 9, 10)
    b = pool1_proxy.connect()
    assert one(b, a_values) == (None, None, None, None, None)
    assert one(a, a_values) == ("from a", 6, 7, 9, 10)
    a.close()
    c = pool1_proxy.connect()
    assert one(c, a_values) == (None, None, None, None, None)
    b.close()
    c.close()


def test_a_statement_prepared_under_another_sql_mode_is_prepared_again(
    pool1_proxy: ProxyProcess,
) -> None:
    """The backend parses a prepared statement under the sql_mode it has when preparing it
    (`||` is OR, or CONCAT under PIPES_AS_CONCAT). A client that set another sql_mode must not
    be given a backend statement another client prepared on the shared connection."""
    sql = "SELECT name || '!' FROM users WHERE id = ?"
    plain = connector_connect(pool1_proxy)
    piped = connector_connect(pool1_proxy)
    try:
        cursor = plain.cursor(prepared=True)
        cursor.execute(sql, (1,))
        assert cursor.fetchall() == [(0,)]  # 'one' OR '!': 0
        cursor.close()
        execute(piped, "SET SESSION sql_mode = 'PIPES_AS_CONCAT'")
        cursor = piped.cursor(prepared=True)
        cursor.execute(sql, (1,))
        assert cursor.fetchall() == [("one!",)]
        cursor.close()
    finally:
        plain.close()
        piped.close()


def test_set_autocommit_to_an_expression_inside_a_transaction(pool1_proxy: ProxyProcess) -> None:
    """SET autocommit = <expression> is evaluated on the transaction's own connection: on a
    one-connection pool, taking another one would wait for the pool's timeout."""
    conn = pool1_proxy.connect()
    try:
        execute(conn, "SET @saved = 1")
        execute(conn, "BEGIN")
        execute(conn, "INSERT INTO notes VALUES (90, 'in the transaction')")
        started = time.monotonic()
        execute(conn, "SET autocommit = @saved")
        execute(conn, "SET autocommit = 1 + 0")
        assert time.monotonic() - started < 5
        assert one(conn, "SELECT @@in_transaction, @@autocommit") == (1, 1)
        execute(conn, "ROLLBACK")
        assert one(conn, "SELECT COUNT(*) FROM notes WHERE id = 90") == (0,)
    finally:
        conn.close()


def test_a_decimal_user_variable_without_fraction_stays_decimal(pool1_proxy: ProxyProcess) -> None:
    """A DECIMAL value with no fractional digits (`CAST(300 AS DECIMAL)`, SUM() of integers)
    replayed on another connection is still a DECIMAL, not a BIGINT."""
    a = pool1_proxy.connect()
    b = pool1_proxy.connect()
    execute(a, "SET @d = CAST(300 AS DECIMAL(10, 0)), @m = CAST(-7 AS DECIMAL(5, 0))")
    assert one(a, "SELECT @d, @m") == (Decimal(300), Decimal(-7))
    one(b, "SELECT 1")  # b's turn on the one connection: a's variables go, and come back
    assert one(a, "SELECT @d, @m") == (Decimal(300), Decimal(-7))
    assert [type(v) for v in one(a, "SELECT @d, @m")] == [Decimal, Decimal]
    a.close()
    b.close()


def test_setting_a_user_variable_keeps_the_connections_prepared_statements(
    pool1_proxy: ProxyProcess, mariadb_cluster: Cluster
) -> None:
    """A user variable does not change how the server parses a statement: a SET @x (or
    `SELECT @x := ...`) must not make every backend statement be prepared again."""
    conn = connector_connect(pool1_proxy)
    sql = "SELECT COUNT(*) FROM notes WHERE id > ?"
    status = "SHOW GLOBAL STATUS LIKE 'Com_stmt_prepare'"
    try:
        cursor = conn.cursor(prepared=True)
        cursor.execute(sql, (0,))
        cursor.fetchall()
        ((_, before),) = mariadb_cluster.instances[0].execute(status)
        plain = conn.cursor()
        plain.execute("SET @x = 1")
        plain.execute("SELECT @y := 2")
        plain.fetchall()
        cursor.execute(sql, (0,))
        cursor.fetchall()
        ((_, after),) = mariadb_cluster.instances[0].execute(status)
        assert int(after) == int(before)
    finally:
        conn.close()


def test_a_variable_assigned_inside_a_set_value_stays_with_its_client(
    pool1_proxy: ProxyProcess,
) -> None:
    """SET @a = (@b := 5) assigns @b too: it must follow the client to its next connection."""
    a = pool1_proxy.connect()
    b = pool1_proxy.connect()
    execute(a, "SET @a = (@b := 5), @c = 1")
    execute(b, "SET @b = 'b'")  # b's turn on the one connection: a's variables go
    assert one(a, "SELECT @a, @b, @c") == (5, 5, 1)
    assert one(b, "SELECT @b") == ("b",)
    a.close()
    b.close()

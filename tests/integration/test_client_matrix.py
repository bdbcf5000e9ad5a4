"""The client matrix: one scenario, every common client, through the proxy.

Each client connects, creates a sharded table, inserts, reads routed and across shards, updates,
deletes, commits and rolls back a transaction over both backends, runs prepared statements where
the client has them, and asks for metadata. Every client's observations (values as text) must
equal the same expected record, so a difference names the client and the step.

Clients: the mariadb CLI, PyMySQL, mysqlclient, mysql-connector-python (pure and C extension),
aiomysql, asyncmy, Django's ORM (migrate + CRUD, in a subprocess), Node's mysql2 (query and
prepared execute) and sysbench oltp_read_write in its default prepared mode.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from conftest import retarget_config
from shop_helpers import cli

if TYPE_CHECKING:
    from conftest import Cluster, ProxyFactory, ProxyProcess

HERE = Path(__file__).resolve().parent
NODE_DIR = HERE / "node"
DJANGO_DIR = HERE / "django_matrix"

SYSBENCH_TABLES = 2
SYSBENCH_ROWS = 1000

_SHARDED = "{shard_key: %s, algorithm: mod, backends: [ds0, ds1], tables_per_backend: 2}"
MATRIX_CONFIG = "\n".join(
    [
        "users: [{name: app, password: app}]",
        "backends:",
        '  ds0: {host: 127.0.0.1, port: 13306, user: root, password: "", database: matrix_0}',
        '  ds1: {host: 127.0.0.1, port: 13307, user: root, password: "", database: matrix_1}',
        "databases:",
        "  matrix:",
        "    default_backend: ds0",
        "    tables:",
        "      items: " + _SHARDED % "k",
        "      matrixapp_item: " + _SHARDED % "k",
        "      django_migrations: {backend: ds0}",
        "      counters: {backend: ds1}",
        *(f"      sbtest{i}: " + _SHARDED % "id" for i in range(1, SYSBENCH_TABLES + 1)),
    ]
)

CREATE = (
    "CREATE TABLE items (k BIGINT PRIMARY KEY, name VARCHAR(50) NOT NULL, "
    "qty INT NOT NULL, price DECIMAL(10,2))"
)
INSERT = "INSERT INTO items (k, name, qty, price) VALUES (%s, %s, %s, %s)"


def item(k: int) -> tuple[int, str, int, Decimal]:
    return k, f"item {k}", k, Decimal(k) * Decimal("1.50")


def _rows(*rows: tuple[Any, ...]) -> list[list[str | None]]:
    return [[None if v is None else str(v) for v in row] for row in rows]


def _final() -> list[list[str | None]]:
    rows = [list(item(k)) for k in (1, 3, 4, 5, 6, 7, 9, 10, 12)]
    for row in rows:
        if row[0] in (1, 3, 4):  # the scatter update
            row[1] += "!"
        if row[0] == 12:  # the prepared insert and update
            row[1], row[2] = "item 12", 120
    return _rows(*map(tuple, rows))


# What every client must see, as text (types are test_types.py's subject).
EXPECTED: dict[str, Any] = {
    "inserted": 8,
    "routed": _rows(("item 3", 3, "4.50")),
    "scatter": _rows(*((k,) for k in range(2, 9))),
    "ordered": _rows((8, "item 8"), (7, "item 7"), (6, "item 6")),
    "count": _rows((8,)),
    "update_routed": 1,
    "update_scatter": 3,  # k 1, 3, 4 (k 2 has qty 102 by then)
    "delete_routed": 1,
    "delete_scatter": 1,
    "after_transactions": _rows((9,), (10,)),
    "prepared_routed": _rows(("item 3!", 3)),
    "prepared_scatter": _rows((5,), (6,), (7,), (9,), (10,)),
    "prepared_ordered": _rows((10, "item 10"), (9, "item 9")),
    "prepared_insert": 1,
    "prepared_update": 1,
    "prepared_null": _rows(),
    "tables": ["items"],
    "columns": ["k", "name", "qty", "price"],
    "description": ["k", "name", "qty", "price"],
    "final": _final(),
}
NO_PREPARED = {k: v for k, v in EXPECTED.items() if not k.startswith("prepared_")}


def sort_rows(rows: Any) -> list[list[str | None]]:
    """Rows as text, sorted numerically by their first column."""
    out = [[_text(v) for v in row] for row in rows]
    return sorted(out, key=lambda r: (len(r[0] or ""), r[0] or ""))


def text_rows(rows: Any) -> list[list[str | None]]:
    return [[_text(v) for v in row] for row in rows]


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode()
    return str(value)


@pytest.fixture(scope="module")
def matrix_proxy(proxy_server: ProxyFactory, mariadb_cluster: Cluster) -> ProxyProcess:
    return proxy_server(retarget_config(MATRIX_CONFIG, mariadb_cluster), name="matrix")


# --- the scenario for DB-API style drivers ---------------------------------------------------


class Driver:
    """What the scenario needs from a driver: queries with %s parameters, transactions and
    (optionally) a prepared cursor."""

    def __init__(self, conn: Any, begin: Callable[[], Any], prepared: Callable[[], Any] | None):
        self.conn = conn
        self._begin = begin
        self._prepared = prepared

    def query(self, sql: str, params: Any = None) -> list[Any]:
        cursor = self.conn.cursor()
        cursor.execute(sql, params)
        rows = list(cursor.fetchall())
        cursor.close()
        return rows

    def execute(self, sql: str, params: Any = None) -> int:
        cursor = self.conn.cursor()
        cursor.execute(sql, params)
        count = cursor.rowcount
        cursor.close()
        return count

    def executemany(self, sql: str, rows: list[Any]) -> int:
        cursor = self.conn.cursor()
        cursor.executemany(sql, rows)
        count = cursor.rowcount
        cursor.close()
        return count

    def description(self, sql: str) -> list[str]:
        cursor = self.conn.cursor()
        cursor.execute(sql)
        cursor.fetchall()
        names = [_text(d[0]) for d in cursor.description]
        cursor.close()
        return names  # type: ignore[return-value]

    def begin(self) -> None:
        self._begin()

    def commit(self) -> None:
        self.conn.commit()

    def rollback(self) -> None:
        self.conn.rollback()

    @property
    def has_prepared(self) -> bool:
        return self._prepared is not None

    def prepared(self, sql: str, params: Any) -> tuple[list[Any] | None, int]:
        assert self._prepared is not None
        cursor = self._prepared()
        cursor.execute(sql, params)
        rows = list(cursor.fetchall()) if cursor.description else None
        count = cursor.rowcount
        cursor.close()
        return rows, count

    def close(self) -> None:
        self.conn.close()


class AsyncDriver(Driver):
    """An asyncio driver (aiomysql, asyncmy) run step by step on its own loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, conn: Any):
        super().__init__(conn, lambda: None, None)
        self.loop = loop

    def _run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    async def _cursor(self, sql: str, params: Any, fetch: bool) -> tuple[Any, Any]:
        async with self.conn.cursor() as cursor:
            await cursor.execute(sql, params)
            rows = list(await cursor.fetchall()) if fetch else None
            return rows, (cursor.rowcount, [_text(d[0]) for d in cursor.description or ()])

    def query(self, sql: str, params: Any = None) -> list[Any]:
        return self._run(self._cursor(sql, params, True))[0]

    def execute(self, sql: str, params: Any = None) -> int:
        return self._run(self._cursor(sql, params, False))[1][0]

    def executemany(self, sql: str, rows: list[Any]) -> int:
        async def run() -> int:
            async with self.conn.cursor() as cursor:
                await cursor.executemany(sql, rows)
                return cursor.rowcount

        return self._run(run())

    def description(self, sql: str) -> list[str]:
        return self._run(self._cursor(sql, None, True))[1][1]

    def begin(self) -> None:
        self._run(self.conn.begin())

    def commit(self) -> None:
        self._run(self.conn.commit())

    def rollback(self) -> None:
        self._run(self.conn.rollback())

    def close(self) -> None:
        self.conn.close()
        self.loop.close()


def scenario(db: Driver) -> dict[str, Any]:
    """The matrix scenario; returns what the client saw, in EXPECTED's shape."""
    seen: dict[str, Any] = {}
    db.execute("DROP TABLE IF EXISTS items")
    db.execute(CREATE)
    seen["inserted"] = db.executemany(INSERT, [item(k) for k in range(1, 9)])
    seen["routed"] = text_rows(db.query("SELECT name, qty, price FROM items WHERE k = %s", [3]))
    seen["scatter"] = sort_rows(db.query("SELECT k FROM items WHERE qty >= 2"))
    seen["ordered"] = text_rows(db.query("SELECT k, name FROM items ORDER BY k DESC LIMIT 3"))
    seen["count"] = text_rows(db.query("SELECT COUNT(*) FROM items"))
    seen["update_routed"] = db.execute("UPDATE items SET qty = qty + 100 WHERE k = 2")
    seen["update_scatter"] = db.execute("UPDATE items SET name = CONCAT(name, '!') WHERE qty < 5")
    seen["delete_routed"] = db.execute("DELETE FROM items WHERE k = 8")
    seen["delete_scatter"] = db.execute("DELETE FROM items WHERE qty > 100")

    db.begin()  # 9 on ds0, 10 on ds1: two branches, two-phase commit
    db.execute(INSERT, item(9))
    db.execute(INSERT, item(10))
    db.commit()
    db.begin()
    db.execute(INSERT, item(11))
    db.execute("UPDATE items SET qty = 0 WHERE k IN (9, 10)")
    db.rollback()
    seen["after_transactions"] = sort_rows(db.query("SELECT k FROM items WHERE k >= 9"))

    if db.has_prepared:
        seen["prepared_routed"] = text_rows(
            db.prepared("SELECT name, qty FROM items WHERE k = %s", (3,))[0]
        )
        seen["prepared_scatter"] = sort_rows(
            db.prepared("SELECT k FROM items WHERE qty > %s", (4,))[0]
        )
        seen["prepared_ordered"] = text_rows(
            db.prepared("SELECT k, name FROM items WHERE qty > %s ORDER BY k DESC LIMIT 2", (4,))[0]
        )
        seen["prepared_insert"] = db.prepared(INSERT, item(12))[1]
        seen["prepared_update"] = db.prepared("UPDATE items SET qty = %s WHERE k = %s", (120, 12))[
            1
        ]
        seen["prepared_null"] = text_rows(
            db.prepared("SELECT k FROM items WHERE price = %s", (None,))[0]
        )
    else:
        db.execute(INSERT, item(12))
        db.execute("UPDATE items SET qty = 120 WHERE k = 12")

    seen["tables"] = [_text(r[0]) for r in db.query("SHOW TABLES") if _text(r[0]) == "items"]
    seen["columns"] = [
        _text(r[0])
        for r in db.query(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = DATABASE() AND table_name = 'items' ORDER BY ordinal_position"
        )
    ]
    seen["description"] = db.description("SELECT * FROM items WHERE k = 1")
    seen["final"] = sort_rows(db.query("SELECT k, name, qty, price FROM items"))
    db.execute("DROP TABLE items")
    return seen


def connect_args(host: str, port: int) -> dict[str, Any]:
    return {
        "host": host,
        "port": port,
        "user": "app",
        "password": "app",
        "database": "matrix",
    }


def pymysql_driver(host: str, port: int) -> Driver:
    import pymysql

    conn = pymysql.connect(**connect_args(host, port), autocommit=True, charset="utf8mb4")
    return Driver(conn, conn.begin, None)


def mysqlclient_driver(host: str, port: int) -> Driver:
    import MySQLdb

    args = connect_args(host, port)
    args["passwd"] = args.pop("password")
    args["db"] = args.pop("database")
    conn = MySQLdb.connect(**args, charset="utf8mb4", autocommit=True)
    # mysqlclient has no begin(): a transaction is autocommit off, then COMMIT/ROLLBACK.
    driver = Driver(conn, lambda: conn.autocommit(False), None)
    driver.commit = lambda: (conn.commit(), conn.autocommit(True))  # type: ignore[method-assign]
    driver.rollback = lambda: (conn.rollback(), conn.autocommit(True))  # type: ignore[method-assign]
    return driver


def connector_driver(host: str, port: int, pure: bool) -> Driver:
    import mysql.connector

    conn = mysql.connector.connect(
        **connect_args(host, port), use_pure=pure, autocommit=True, charset="utf8mb4"
    )
    if not pure:
        assert type(conn).__name__ == "CMySQLConnection", type(conn)
    return Driver(conn, conn.start_transaction, lambda: conn.cursor(prepared=True))


def aiomysql_driver(host: str, port: int) -> Driver:
    import aiomysql

    loop = asyncio.new_event_loop()
    args = connect_args(host, port)
    args["db"] = args.pop("database")
    conn = loop.run_until_complete(aiomysql.connect(**args, autocommit=True, charset="utf8mb4"))
    return AsyncDriver(loop, conn)


def asyncmy_driver(host: str, port: int) -> Driver:
    import asyncmy

    loop = asyncio.new_event_loop()
    conn = loop.run_until_complete(
        asyncmy.connect(**connect_args(host, port), autocommit=True, charset="utf8mb4")
    )
    return AsyncDriver(loop, conn)


DRIVERS: dict[str, Callable[[str, int], Driver]] = {
    "pymysql": pymysql_driver,
    "mysqlclient": mysqlclient_driver,
    "connector-pure": lambda host, port: connector_driver(host, port, pure=True),
    "connector-c": lambda host, port: connector_driver(host, port, pure=False),
    "aiomysql": aiomysql_driver,
    "asyncmy": asyncmy_driver,
}
# Drivers run in a child process: mysql-connector's C extension (9.1.0) writes 4 bytes past
# its parameter array for a Decimal parameter of a prepared statement, whatever the server
# (docs/testing.md), and pytest's own objects must not be where they land.
ISOLATED = frozenset({"connector-c"})


def run_driver(name: str, host: str, port: int) -> tuple[dict[str, Any], bool]:
    """(what the scenario saw through driver `name`, whether it ran the prepared steps)."""
    driver = DRIVERS[name](host, port)
    try:
        return scenario(driver), driver.has_prepared
    finally:
        driver.close()


def run_driver_in_child(name: str, host: str, port: int) -> tuple[dict[str, Any], bool]:
    """run_driver in a child process (this file run as a script), its answer as JSON."""
    result = subprocess.run(
        [sys.executable, __file__, name, host, str(port)],
        env={**os.environ, "PYTHONPATH": str(HERE.parents[1] / "scripts")},  # for conftest
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    seen, prepared = json.loads(result.stdout.splitlines()[-1])
    return seen, prepared


@pytest.mark.parametrize("name", list(DRIVERS))
def test_python_driver(name: str, matrix_proxy: ProxyProcess) -> None:
    run = run_driver_in_child if name in ISOLATED else run_driver
    seen, prepared = run(name, matrix_proxy.host, matrix_proxy.port)
    assert seen == (EXPECTED if prepared else NO_PREPARED)


# --- the mariadb CLI -------------------------------------------------------------------------


def test_mariadb_cli(matrix_proxy: ProxyProcess) -> None:
    def run(sql: str) -> list[list[str | None]]:
        result = cli(matrix_proxy, sql, "--skip-column-names", database="matrix")
        assert result.returncode == 0, f"{sql}: {result.stderr}"
        return [
            [None if v == "NULL" else v for v in line.split("\t")]
            for line in result.stdout.splitlines()
        ]

    def literal(row: tuple[Any, ...]) -> str:
        return "(" + ", ".join(str(v) if not isinstance(v, str) else f"'{v}'" for v in row) + ")"

    def affected(sql: str) -> int:
        """The CLI's own "Query OK, N rows affected" line (printed with -vvv)."""
        result = cli(matrix_proxy, sql, "-vvv", database="matrix")
        assert result.returncode == 0, f"{sql}: {result.stderr}"
        counts = re.findall(r"Query OK, (\d+) rows? affected", result.stdout)
        assert len(counts) == 1, result.stdout
        return int(counts[0])

    seen: dict[str, Any] = {}
    run(f"DROP TABLE IF EXISTS items; {CREATE}")
    values = ", ".join(literal(item(k)) for k in range(1, 9))
    seen["inserted"] = affected(f"INSERT INTO items (k, name, qty, price) VALUES {values}")
    seen["routed"] = run("SELECT name, qty, price FROM items WHERE k = 3")
    seen["scatter"] = sort_rows(run("SELECT k FROM items WHERE qty >= 2"))
    seen["ordered"] = run("SELECT k, name FROM items ORDER BY k DESC LIMIT 3")
    seen["count"] = run("SELECT COUNT(*) FROM items")
    for key, sql in (
        ("update_routed", "UPDATE items SET qty = qty + 100 WHERE k = 2"),
        ("update_scatter", "UPDATE items SET name = CONCAT(name, '!') WHERE qty < 5"),
        ("delete_routed", "DELETE FROM items WHERE k = 8"),
        ("delete_scatter", "DELETE FROM items WHERE qty > 100"),
    ):
        seen[key] = affected(sql)
    seen["after_transactions"] = sort_rows(
        run(
            f"BEGIN; INSERT INTO items VALUES {literal(item(9))}; "
            f"INSERT INTO items VALUES {literal(item(10))}; COMMIT; "
            f"START TRANSACTION; INSERT INTO items VALUES {literal(item(11))}; "
            "UPDATE items SET qty = 0 WHERE k IN (9, 10); ROLLBACK; "
            "SELECT k FROM items WHERE k >= 9"
        )
    )
    run(f"INSERT INTO items VALUES {literal(item(12))}; UPDATE items SET qty = 120 WHERE k = 12")
    seen["tables"] = [r[0] for r in run("SHOW TABLES") if r[0] == "items"]
    seen["columns"] = [
        r[0]
        for r in run(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = DATABASE() AND table_name = 'items' ORDER BY ordinal_position"
        )
    ]
    result = cli(matrix_proxy, "SELECT * FROM items WHERE k = 1", database="matrix")
    seen["description"] = result.stdout.splitlines()[0].split("\t")
    seen["final"] = sort_rows(run("SELECT k, name, qty, price FROM items"))
    run("DROP TABLE items")
    assert seen == NO_PREPARED


# --- Django ORM ------------------------------------------------------------------------------


def test_django_orm(matrix_proxy: ProxyProcess) -> None:
    """migrate creates the app's table (sharded) and Django's own (single); then CRUD."""
    conn = matrix_proxy.connect(database="matrix")
    with conn.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS django_migrations, matrixapp_item")
    conn.close()
    result = subprocess.run(
        [sys.executable, str(DJANGO_DIR / "scenario.py")],
        env={**os.environ, "PROXY_PORT": str(matrix_proxy.port)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    seen = json.loads(result.stdout.splitlines()[-1])
    assert seen == NO_PREPARED  # Django's MySQL backend has no server-side prepared statements


# --- Node mysql2 -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def node_modules() -> Path:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("node and npm are needed for the mysql2 client (scripts/setup.sh installs)")
    if not (NODE_DIR / "node_modules" / "mysql2").is_dir():
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"],
            cwd=NODE_DIR,
            check=True,
            capture_output=True,
            timeout=300,
        )
    return NODE_DIR / "node_modules"


def test_node_mysql2(matrix_proxy: ProxyProcess, node_modules: Path) -> None:
    result = subprocess.run(
        ["node", str(NODE_DIR / "scenario.js"), str(matrix_proxy.port)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    seen = json.loads(result.stdout.splitlines()[-1])
    assert seen == EXPECTED


# --- sysbench --------------------------------------------------------------------------------


def sysbench(proxy: ProxyProcess, command: str, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "sysbench",
            "oltp_read_write",
            "--db-driver=mysql",
            f"--mysql-host={proxy.host}",
            f"--mysql-port={proxy.port}",
            "--mysql-user=app",
            "--mysql-password=app",
            "--mysql-db=matrix",
            f"--tables={SYSBENCH_TABLES}",
            f"--table-size={SYSBENCH_ROWS}",
            "--auto-inc=off",  # sharded tables get their ids from the client
            *options,
            command,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# A deadlock between branches on two backends is invisible to each InnoDB: it ends when one
# statement's lock wait times out (1205, which sysbench ignores and retries like a deadlock).
# sysbench's default "special" distribution makes the middle ids hot, and with `mod` they sit on
# both backends, so such cycles do happen; MariaDB's 50 s default would stall the run (measured:
# 8 threads on 100 rows made 9 transactions in 100 s), so the shards wait 2 s here.
LOCK_WAIT = 2


@pytest.fixture
def sysbench_proxy(proxy_server: ProxyFactory, mariadb_cluster: Cluster) -> Iterator[ProxyProcess]:
    """A proxy whose backend connections wait LOCK_WAIT s for row locks, with the sysbench
    tables prepared through it."""
    if shutil.which("sysbench") is None:
        pytest.fail("sysbench is needed (scripts/setup.sh installs it)")
    instances = mariadb_cluster.instances
    before = [i.execute("SELECT @@global.innodb_lock_wait_timeout")[0][0] for i in instances]
    for instance in instances:
        instance.execute(f"SET GLOBAL innodb_lock_wait_timeout = {LOCK_WAIT}")
    try:
        proxy = proxy_server(retarget_config(MATRIX_CONFIG, mariadb_cluster), name="sysbench")
        sysbench(proxy, "cleanup")
        result = sysbench(proxy, "prepare")
        assert result.returncode == 0, result.stdout + result.stderr
        yield proxy
        sysbench(proxy, "cleanup")
        proxy.terminate()
    finally:
        for instance, value in zip(instances, before, strict=True):
            instance.execute(f"SET GLOBAL innodb_lock_wait_timeout = {value}")


def test_sysbench_oltp_read_write(sysbench_proxy: ProxyProcess, mariadb_cluster: Cluster) -> None:
    """Default mode: every statement is a server-side prepared statement; transactions touch
    both backends. No reconnects, no errors but the deadlocks and lock wait timeouts sysbench
    retries, and the tables still hold table_size rows (each DELETE + INSERT pair commits or
    rolls back whole)."""
    executed_before = stmt_executes(mariadb_cluster)
    result = sysbench(sysbench_proxy, "run", "--threads=4", "--time=5", "--report-interval=0")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    transactions = int(re.search(r"transactions:\s+(\d+)", output).group(1))  # type: ignore[union-attr]
    ignored = int(re.search(r"ignored errors:\s+(\d+)", output).group(1))  # type: ignore[union-attr]
    reconnects = int(re.search(r"reconnects:\s+(\d+)", output).group(1))  # type: ignore[union-attr]
    assert transactions > 0 and reconnects == 0, output
    assert ignored < transactions, output
    # Prepared for real: the backends ran COM_STMT_EXECUTE, several per transaction.
    assert stmt_executes(mariadb_cluster) - executed_before > 5 * transactions, output
    conn = sysbench_proxy.connect(database="matrix")
    with conn.cursor() as cursor:
        for n in range(1, SYSBENCH_TABLES + 1):
            cursor.execute(f"SELECT COUNT(*) FROM sbtest{n}")
            assert cursor.fetchall() == ((SYSBENCH_ROWS,),)
    conn.close()


def stmt_executes(cluster: Cluster) -> int:
    return sum(
        int(i.execute("SHOW GLOBAL STATUS LIKE 'Com_stmt_execute'")[0][1])
        for i in cluster.instances
    )


# --- what a CLI session asks the server about its last statement ------------------------------


def test_row_count_and_last_insert_id_follow_the_session(
    matrix_proxy: ProxyProcess, reference_db: Any
) -> None:
    """`SELECT ROW_COUNT()` / `LAST_INSERT_ID()` after a statement, as MariaDB answers them."""
    statements = [
        "CREATE TABLE counters (id INT AUTO_INCREMENT PRIMARY KEY, v INT)",
        "INSERT INTO counters (v) VALUES (1), (2), (3)",
        "SELECT ROW_COUNT(), LAST_INSERT_ID()",
        "UPDATE counters SET v = v + 1 WHERE v < 3",
        "SELECT ROW_COUNT()",
        "INSERT INTO counters (v) VALUES (4)",
        "SELECT LAST_INSERT_ID(), @@identity",
        "DROP TABLE counters",
    ]

    def answers(conn: Any) -> list[Any]:
        out = []
        with conn.cursor() as cursor:
            for sql in statements:
                cursor.execute(sql)
                out.append(cursor.fetchall() if sql.startswith("SELECT") else cursor.rowcount)
        conn.close()
        return out

    expected = answers(reference_db.connect())
    assert expected[2] == ((3, 1),)  # MariaDB: 3 rows, the first id of the multi-row INSERT
    assert answers(matrix_proxy.connect(database="matrix")) == expected


def test_prepared_insert_without_a_column_list(matrix_proxy: ProxyProcess) -> None:
    import mysql.connector

    conn = mysql.connector.connect(
        **connect_args(matrix_proxy.host, matrix_proxy.port), use_pure=True, autocommit=True
    )
    try:
        cursor = conn.cursor()
        cursor.execute("DROP TABLE IF EXISTS items")
        cursor.execute(CREATE)
        prepared = conn.cursor(prepared=True)
        for k in (1, 2):  # two shards
            prepared.execute("INSERT INTO items VALUES (?, ?, ?, ?)", item(k))
        prepared.close()
        cursor.execute("SELECT k, name, qty, price FROM items ORDER BY k")
        assert cursor.fetchall() == [item(1), item(2)]
        cursor.execute("DROP TABLE items")
    finally:
        conn.close()


if __name__ == "__main__":  # the child of run_driver_in_child: NAME HOST PORT
    print(json.dumps(run_driver(sys.argv[1], sys.argv[2], int(sys.argv[3]))))

"""Big things through the proxy: packets over 16 MB both ways, results larger than the proxy
should ever hold, and statement time limits.

- A multi-row INSERT over 16 MB of rows of mixed forms leaves the rows a plain MariaDB has.
- A BLOB over 16 MB goes in as one INSERT (the client splits it into 16 MB frames), and comes
  back in a row of more than 16 MB, in the text and binary protocols.
- A 200k-row scatter read (about 100 MB) streams: read with PyMySQL's unbuffered SSCursor while
  the proxy's resident memory is sampled from /proc; it must stay far below the result's size.
- A shard killed while its rows stream ends the result with error 2013, never as a short
  result that looks complete; the proxy serves on and uses the shard again once it is back.
- MySQL's `max_execution_time` (session variable, milliseconds, SELECTs only) and its
  `/*+ MAX_EXECUTION_TIME(ms) */` hint are honoured on MariaDB backends as MariaDB's
  per-statement `max_statement_time`; MariaDB's own `max_statement_time` works as it is.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import mysql.connector
import pymysql
import pymysql.cursors
import pytest
from conftest import retarget_config

if TYPE_CHECKING:
    from conftest import Cluster, ProxyFactory, ProxyProcess, ReferenceDB

BIG_CONFIG = """\
users: [{name: app, password: app}]
backends:
  ds0: {host: 127.0.0.1, port: 13306, user: root, password: "", database: big_0}
  ds1: {host: 127.0.0.1, port: 13307, user: root, password: "", database: big_1}
databases:
  big:
    default_backend: ds0
    tables:
      blobs: {shard_key: k, algorithm: mod, backends: [ds0, ds1], tables_per_backend: 2}
      many: {shard_key: k, algorithm: mod, backends: [ds0, ds1], tables_per_backend: 2}
      bulk: {shard_key: k, algorithm: mod, backends: [ds0, ds1], tables_per_backend: 2}
"""
MAX_PACKET = 64 << 20
BLOB_SIZE = (16 << 20) + 4096  # just over one 16 MB frame
MANY_ROWS = 200_000
ROW_PAD = 500  # bytes of padding per row: about 100 MB in all


@pytest.fixture(scope="module")
def big_proxy(proxy_server: ProxyFactory, mariadb_cluster: Cluster) -> Iterator[ProxyProcess]:
    """A proxy whose backend connections are opened after max_allowed_packet was raised."""
    before = [
        int(i.execute("SELECT @@global.max_allowed_packet")[0][0])
        for i in mariadb_cluster.instances
    ]
    for instance in mariadb_cluster.instances:
        instance.execute(f"SET GLOBAL max_allowed_packet = {MAX_PACKET}")
    try:
        yield proxy_server(retarget_config(BIG_CONFIG, mariadb_cluster), name="big")
    finally:
        for instance, value in zip(mariadb_cluster.instances, before, strict=True):
            with contextlib.suppress(Exception):
                instance.execute(f"SET GLOBAL max_allowed_packet = {value}")


def connect(proxy: ProxyProcess, **kwargs: Any) -> pymysql.Connection:
    return proxy.connect(database="big", max_allowed_packet=MAX_PACKET, **kwargs)


# --- packets over 16 MB ----------------------------------------------------------------------


@pytest.fixture
def blobs(big_proxy: ProxyProcess) -> Iterator[pymysql.Connection]:
    conn = connect(big_proxy)
    with conn.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS blobs")
        cursor.execute("CREATE TABLE blobs (k BIGINT PRIMARY KEY, b LONGBLOB, note VARCHAR(10))")
    yield conn
    with conn.cursor() as cursor:
        cursor.execute("DROP TABLE blobs")
    conn.close()


def blob(seed: int) -> bytes:
    """BLOB_SIZE bytes of every value, different per seed."""
    block = hashlib.sha256(str(seed).encode()).digest() + bytes(range(256))
    return (block * (BLOB_SIZE // len(block) + 1))[:BLOB_SIZE]


def test_blob_over_16_mb_in_and_out_as_text(
    blobs: pymysql.Connection, mariadb_cluster: Cluster
) -> None:
    data = blob(1)
    with blobs.cursor() as cursor:
        # One statement over two backends (an XA write): the 16 MB+ packet is split by rows.
        cursor.execute(
            "INSERT INTO blobs (k, b, note) VALUES (%s, %s, 'one'), (%s, %s, 'two')",
            (1, data, 2, b"\x00\xff small"),
        )
        assert cursor.rowcount == 2
        cursor.execute("SELECT k, b, note FROM blobs WHERE k = 1")
        assert cursor.fetchall() == ((1, data, "one"),)
        cursor.execute("SELECT k, LENGTH(b), note FROM blobs")
        assert sorted(cursor.fetchall()) == [(1, BLOB_SIZE, "one"), (2, 8, "two")]
        cursor.execute("SELECT k, b FROM blobs ORDER BY k")  # merged: rows decoded, re-encoded
        assert cursor.fetchall() == ((1, data), (2, b"\x00\xff small"))
        cursor.execute("SELECT 'after'")  # the connection is in step
        assert cursor.fetchall() == (("after",),)
    # The bytes on the backend are the ones sent (k = 1 is in shard 1, on ds0).
    (stored,) = mariadb_cluster.instances[0].execute("SELECT MD5(b) FROM big_0.blobs_1")
    assert stored[0] == hashlib.md5(data).hexdigest()


def connector(proxy: ProxyProcess, pure: bool) -> Any:
    return mysql.connector.connect(
        host=proxy.host,
        port=proxy.port,
        user="app",
        password="app",
        database="big",
        use_pure=pure,
        autocommit=True,
    )


@pytest.mark.parametrize("pure", [True, False], ids=["pure", "c"])
def test_blob_over_16_mb_in_and_out_as_binary(
    blobs: pymysql.Connection, big_proxy: ProxyProcess, pure: bool
) -> None:
    """A prepared INSERT with the BLOB as a parameter (the pure connector sends it inline in
    COM_STMT_EXECUTE, the C one too), and a prepared SELECT returning it: a binary row over
    16 MB. Read with the C extension: the pure one cuts such rows at 16 MB, even from MariaDB
    itself (mysql-connector 9.1)."""
    data = blob(3)
    conn = connector(big_proxy, pure)
    try:
        cursor = conn.cursor(prepared=True)
        cursor.execute("INSERT INTO blobs (k, b, note) VALUES (?, ?, ?)", (3, data, "three"))
        assert cursor.rowcount == 1
        cursor.close()
    finally:
        conn.close()
    conn = connector(big_proxy, pure=False)
    try:
        cursor = conn.cursor(prepared=True)
        cursor.execute("SELECT b, note FROM blobs WHERE k = ?", (3,))
        (row,) = cursor.fetchall()
        assert bytes(row[0]) == data and row[1] == "three"
        cursor.execute("SELECT k, b FROM blobs WHERE k > ? ORDER BY k", (0,))  # merged
        assert [(k, bytes(b)) for k, b in cursor.fetchall()] == [(3, data)]
        cursor.close()
    finally:
        conn.close()


def test_packets_of_exactly_16_mb_minus_one(blobs: pymysql.Connection) -> None:
    """A payload of exactly 0xFFFFFF bytes is followed by an empty frame: both directions."""
    with blobs.cursor() as cursor:
        head = "INSERT INTO blobs (k, b, note) VALUES (5, '"
        tail = "', 'edge')"
        # COM_QUERY payload = command byte + SQL: exactly 0xFFFFFF bytes.
        fill = 0xFFFFFF - 1 - len(head) - len(tail)
        cursor.execute(head + "x" * fill + tail)
        cursor.execute("SELECT LENGTH(b) FROM blobs WHERE k = 5")
        assert cursor.fetchall() == ((fill,),)
        # A row payload of exactly 0xFFFFFF bytes: a 4-byte length, then the value.
        cursor.execute("SELECT REPEAT('y', %s) FROM blobs WHERE k = 5", (0xFFFFFF - 4,))
        assert cursor.fetchall() == (("y" * (0xFFFFFF - 4),),)
        cursor.execute("SELECT 'after'")
        assert cursor.fetchall() == (("after",),)


def test_rows_of_16_mb_amid_small_ones_in_a_scatter_read(blobs: pymysql.Connection) -> None:
    """Row packets of exactly 0xFFFFFF bytes (then an empty frame) and of over 16 MB, between
    small rows on the same shard, relayed (a concatenated read) and merged (ORDER BY): the
    small rows after them come through whole and the connection stays in step."""
    size = 0xFFFFFF - 9  # row k = 5: 2 + (4 + size) + 3 (note) = 0xFFFFFF bytes of payload
    with blobs.cursor() as cursor:
        cursor.execute(
            "INSERT INTO blobs (k, note) VALUES " + ", ".join(f"({k}, 'n{k}')" for k in range(16))
        )
        expr = f"CASE k WHEN 5 THEN REPEAT('y', {size}) WHEN 9 THEN REPEAT('z', {BLOB_SIZE}) END"
        expected = [
            (k, "y" * size if k == 5 else "z" * BLOB_SIZE if k == 9 else None, f"n{k}")
            for k in range(16)
        ]
        cursor.execute(f"SELECT k, {expr} AS v, note FROM blobs")  # relayed unit after unit
        assert sorted(cursor.fetchall()) == sorted(expected, key=lambda r: r[0])
        cursor.execute(f"SELECT k, {expr} AS v, note FROM blobs ORDER BY k DESC")  # merged
        assert list(cursor.fetchall()) == expected[::-1]
        cursor.execute("SELECT 'after'")
        assert cursor.fetchall() == (("after",),)


BULK_TABLE = "CREATE TABLE bulk (k BIGINT PRIMARY KEY, s VARCHAR(200), n INT, d DECIMAL(9, 2))"


def bulk_row(k: int) -> str:
    """Row k of the bulk INSERT: its form varies (NULL, negative numbers, expressions), its
    strings hold commas, parentheses and quotes."""
    text = f"'row {k}, (of {k % 97}) it''s \\' \"q\" {'x' * (k % 150)}'"
    kind = k % 7
    if kind == 0:
        return f"({k}, NULL, -{k % 1000}, NULL)"
    if kind == 1:
        return f"({k}, {text}, {k} - 5, -{k % 1000}.25)"
    if kind == 2:
        return f"({k}, CONCAT('c', {k}), NULL, 1.5)"
    return f"({k}, {text}, {k % 100000}, {k % 10000}.{k % 100:02d})"


def test_bulk_insert_over_16_mb_leaves_the_rows_mariadb_has(
    big_proxy: ProxyProcess, reference_db: ReferenceDB
) -> None:
    """One INSERT of ~17 MB (the client sends it in two frames): the proxy splits its rows by
    shard and commits them across both backends; the table then reads as on one MariaDB."""
    rows = []
    size = 0
    while size < (17 << 20):
        rows.append(bulk_row(len(rows)))
        size += len(rows[-1]) + 1
    sql = "INSERT INTO bulk (k, s, n, d) VALUES " + ",".join(rows)
    instance = reference_db.instance
    (before,) = instance.execute("SELECT @@global.max_allowed_packet")
    instance.execute(f"SET GLOBAL max_allowed_packet = {MAX_PACKET}")
    try:
        direct = instance.connect(reference_db.database, max_allowed_packet=MAX_PACKET)
        direct_rows = _insert_and_read(direct, sql)
        direct.close()
    finally:
        instance.execute(f"SET GLOBAL max_allowed_packet = {before[0]}")
    proxied = connect(big_proxy, read_timeout=300)
    try:
        assert _insert_and_read(proxied, sql) == direct_rows
    finally:
        with proxied.cursor() as cursor:
            cursor.execute("DROP TABLE bulk")
        proxied.close()
    assert len(direct_rows) == len(rows) and direct_rows[0] == (0, None, 0, None)


def _insert_and_read(conn: pymysql.Connection, sql: str) -> list[tuple[Any, ...]]:
    with conn.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bulk")
        cursor.execute(BULK_TABLE)
        cursor.execute(sql)
        count = cursor.rowcount
        cursor.execute("SELECT k, s, n, d FROM bulk ORDER BY k")
        rows = list(cursor.fetchall())
    assert count == len(rows)
    return rows


# --- results larger than memory --------------------------------------------------------------


@pytest.fixture(scope="module")
def many(big_proxy: ProxyProcess, mariadb_cluster: Cluster) -> Iterator[None]:
    """MANY_ROWS rows, written straight into the data nodes (MariaDB's sequence engine)."""
    conn = connect(big_proxy)
    with conn.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS many")
        cursor.execute("CREATE TABLE many (k BIGINT PRIMARY KEY, pad VARCHAR(600))")
    for shard in range(4):
        instance = mariadb_cluster.instances[shard // 2]
        instance.execute(
            f"INSERT INTO many_{shard} SELECT seq, REPEAT(CHAR(65 + seq % 26), {ROW_PAD}) "
            f"FROM seq_0_to_{MANY_ROWS - 1} WHERE seq % 4 = {shard}",
            database=f"big_{shard // 2}",
        )
    yield
    with conn.cursor() as cursor:
        cursor.execute("DROP TABLE many")
    conn.close()


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class RssSampler:
    """The peak RSS of a process, sampled every 10 ms on a thread."""

    def __init__(self, pid: int):
        self.pid = pid
        self.start = rss_bytes(pid)
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes(self.pid))
            time.sleep(0.01)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def proxy_pid(proxy: ProxyProcess) -> int:
    assert proxy._proc is not None
    return proxy._proc.pid


@pytest.fixture
def stream_proxy(
    proxy_server: ProxyFactory, mariadb_cluster: Cluster, many: None
) -> Iterator[ProxyProcess]:
    """A fresh proxy per read: its RSS baseline is not inflated by earlier big packets (the
    allocator keeps freed memory, which would hide a result held in memory)."""
    proxy = proxy_server(retarget_config(BIG_CONFIG, mariadb_cluster), name="stream")
    yield proxy
    proxy.terminate()


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT k, pad FROM many",
        "SELECT k, pad FROM many ORDER BY k",
    ],
    ids=["concat", "merge-sort"],
)
def test_scatter_read_larger_than_memory_streams(stream_proxy: ProxyProcess, sql: str) -> None:
    """The client reads slowly at first; the proxy's memory must not grow with the result."""
    total = MANY_ROWS * (ROW_PAD + 10)
    big_proxy = stream_proxy
    conn = connect(big_proxy, cursorclass=pymysql.cursors.SSCursor)
    warm = connect(big_proxy)
    with warm.cursor() as cursor:  # pools and caches warmed before the baseline
        cursor.execute(sql + " LIMIT 10")
        cursor.fetchall()
    warm.close()
    with RssSampler(proxy_pid(big_proxy)) as rss, conn.cursor() as cursor:
        cursor.execute(sql)
        count = 0
        keys = 0
        previous = -1
        for row in cursor.fetchall_unbuffered():
            if count < 2000 and count % 100 == 0:
                time.sleep(0.01)  # a slow consumer: the proxy must wait, not buffer
            count += 1
            keys += row[0]
            assert len(row[1]) == ROW_PAD
            if "ORDER BY" in sql:
                assert row[0] > previous
                previous = row[0]
    conn.close()
    assert count == MANY_ROWS
    assert keys == MANY_ROWS * (MANY_ROWS - 1) // 2
    growth = rss.peak - rss.start
    assert growth < total // 4, f"proxy RSS grew {growth >> 20} MB for a {total >> 20} MB result"


# --- statement time limits -------------------------------------------------------------------


@pytest.fixture
def timed(big_proxy: ProxyProcess, many: None) -> Iterator[pymysql.Connection]:
    conn = connect(big_proxy)
    yield conn
    conn.close()


SLOW_ROUTED = "SELECT k, SLEEP(2) FROM many WHERE k = 1"
TIMEOUT_CODES = (1969, 3024)  # MariaDB's max_statement_time, MySQL's max_execution_time


def run_timed(conn: pymysql.Connection, sql: str) -> tuple[float, Any]:
    """(seconds, rows or the MySQL error code)."""
    started = time.monotonic()
    try:
        with conn.cursor() as cursor:
            cursor.execute(sql)
            result: Any = cursor.fetchall()
    except pymysql.err.MySQLError as exc:
        result = exc.args[0]
    return time.monotonic() - started, result


def test_mariadb_max_statement_time(timed: pymysql.Connection) -> None:
    with timed.cursor() as cursor:
        cursor.execute("SET max_statement_time = 0.2")
    for sql in (SLOW_ROUTED, "SELECT k, SLEEP(2) FROM many WHERE k IN (1, 2)"):
        elapsed, result = run_timed(timed, sql)
        assert result in TIMEOUT_CODES and elapsed < 1.5, (sql, elapsed, result)
    with timed.cursor() as cursor:
        cursor.execute("SET max_statement_time = 0")
    assert run_timed(timed, "SELECT k FROM many WHERE k = 1")[1] == ((1,),)


def test_mysql_max_execution_time_session_variable(timed: pymysql.Connection) -> None:
    """SET max_execution_time = ms limits the session's SELECTs (and only SELECTs)."""
    with timed.cursor() as cursor:
        cursor.execute("SET max_execution_time = 200")
    for sql in (SLOW_ROUTED, "SELECT k, SLEEP(2) FROM many WHERE k IN (1, 2)"):
        elapsed, result = run_timed(timed, sql)
        assert result in TIMEOUT_CODES and elapsed < 1.5, (sql, elapsed, result)
    # Writes are not limited (MySQL applies it to read-only SELECTs).
    with timed.cursor() as cursor:
        cursor.execute("UPDATE many SET pad = pad WHERE k = 1 AND SLEEP(0.4) = 0")
        cursor.execute("SET max_execution_time = 0")
    elapsed, result = run_timed(timed, "SELECT k, SLEEP(0.4) FROM many WHERE k = 1")
    assert result == ((1, 0),)


def test_mysql_max_execution_time_hint(timed: pymysql.Connection) -> None:
    elapsed, result = run_timed(
        timed, "SELECT /*+ MAX_EXECUTION_TIME(200) */ k, SLEEP(2) FROM many WHERE k = 1"
    )
    assert result in TIMEOUT_CODES and elapsed < 1.5, (elapsed, result)
    # The hint is per statement: the next one runs unlimited.
    assert run_timed(timed, "SELECT k, SLEEP(0.3) FROM many WHERE k = 1")[1] == ((1, 0),)


def test_max_execution_time_with_prepared_statements(big_proxy: ProxyProcess, many: None) -> None:
    conn = connector(big_proxy, pure=True)
    try:
        conn.cmd_query("SET max_execution_time = 200")
        cursor = conn.cursor(prepared=True)
        started = time.monotonic()
        with pytest.raises(mysql.connector.Error) as excinfo:
            cursor.execute("SELECT k, SLEEP(2) FROM many WHERE k = ?", (1,))
            cursor.fetchall()
        assert excinfo.value.errno in TIMEOUT_CODES
        assert time.monotonic() - started < 1.5
        cursor.close()
    finally:
        conn.close()


# --- a shard dying mid-result ----------------------------------------------------------------


@pytest.mark.parametrize(
    "sql", ["SELECT k, pad FROM many", "SELECT k, pad FROM many ORDER BY k"], ids=["concat", "sort"]
)
def test_a_shard_killed_mid_result_ends_it_with_an_error(
    big_proxy: ProxyProcess, mariadb_cluster: Cluster, many: None, sql: str
) -> None:
    """Rows already sent can't be taken back: the result must end in an error, never as a
    complete-looking short result. The proxy goes on serving, and uses the shard again once
    it is back (its pooled connections to the dead server are replaced, not handed out)."""
    victim = mariadb_cluster.instances[1]
    conn = connect(big_proxy, cursorclass=pymysql.cursors.SSCursor)
    other = connect(big_proxy)
    rows = 0
    try:
        with pytest.raises(pymysql.err.MySQLError) as failure, conn.cursor() as cursor:
            cursor.execute(sql)
            for _ in cursor.fetchall_unbuffered():
                rows += 1
                if rows == 1000:
                    victim.kill()
        assert rows < MANY_ROWS
        assert failure.value.args[0] == 2013, failure.value.args
        assert "Lost connection to backend 'ds1'" in failure.value.args[1]
        with other.cursor() as cursor:  # many_0 and many_1: the living server only
            cursor.execute("SELECT COUNT(*) FROM many WHERE k IN (0, 1, 4)")
            assert cursor.fetchall() == ((3,),)
        victim.start()
        with other.cursor() as cursor:
            cursor.execute("SELECT COUNT(*), SUM(k) FROM many")
            assert cursor.fetchall() == ((MANY_ROWS, MANY_ROWS * (MANY_ROWS - 1) // 2),)
    finally:
        conn.close()
        other.close()
        if not victim.is_running():
            victim.start()


def test_a_shard_killed_while_a_statement_runs_there_answers_2013_at_once(
    big_proxy: ProxyProcess, mariadb_cluster: Cluster, many: None
) -> None:
    """The statement waits on the dying server (SLEEP): its client gets 2013 when the server
    dies, not when the statement would have ended, and a new statement works once it is back."""
    victim = mariadb_cluster.instances[1]
    conn = connect(big_proxy)
    killer = threading.Timer(0.5, victim.kill)
    try:
        killer.start()
        elapsed, result = run_timed(conn, "SELECT k, SLEEP(5) FROM many WHERE k = 2")
        assert result == 2013 and elapsed < 4, (elapsed, result)
        victim.start()
        assert run_timed(conn, "SELECT k FROM many WHERE k = 2")[1] == ((2,),)
    finally:
        killer.join()
        conn.close()
        if not victim.is_running():
            victim.start()

"""Helpers shared by the end-to-end tests of the foundation issue (routing, clients, errors,
sessions, protocol input, transactions): the shop schema, where `mod` puts a key, reading the
physical tables straight from the backends, driver wrappers and a tiny raw protocol client.

Not a test module (no `test_` prefix); the test modules import it by name, as pytest puts
`tests/integration` on `sys.path`.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import socket
import struct
import subprocess
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import mysql.connector
import pymysql

if TYPE_CHECKING:
    from conftest import Cluster, ProxyProcess

# --- the shop schema (scripts/sample_data.sql) --------------------------------------------

SCHEMA = {
    "users": (
        "CREATE TABLE users (id BIGINT PRIMARY KEY, name VARCHAR(100), email VARCHAR(200), "
        "country_code CHAR(2), created_at DATETIME)"
    ),
    "orders": (
        "CREATE TABLE orders (id BIGINT PRIMARY KEY, user_id BIGINT NOT NULL, "
        "status VARCHAR(20), total DECIMAL(10,2), created_at DATETIME, KEY (user_id))"
    ),
    "order_items": (
        "CREATE TABLE order_items (id BIGINT PRIMARY KEY, order_id BIGINT, "
        "user_id BIGINT NOT NULL, sku VARCHAR(40), qty INT, price DECIMAL(10,2))"
    ),
    "countries": "CREATE TABLE countries (code CHAR(2) PRIMARY KEY, name VARCHAR(100))",
    "settings": "CREATE TABLE settings (name VARCHAR(64) PRIMARY KEY, value VARCHAR(255))",
}
SHARDED = ("users", "orders", "order_items")
PHYSICAL_DBS = ("shop_0", "shop_1")  # ds0 = instance 0 / shop_0, ds1 = instance 1 / shop_1
SHARDS = 4
_SYSTEM_SCHEMAS = ("mysql", "information_schema", "performance_schema", "sys")


def shard_of(key: int) -> int:
    """config/default.yaml's `mod` over 4 shards (floor modulo for negative keys)."""
    return key % SHARDS


def node_of(table: str, key: int) -> tuple[int, str, str]:
    """(instance, physical db, physical table) holding `key` of a sharded shop table."""
    shard = shard_of(key)
    instance = shard // 2  # shards 0, 1 on ds0; 2, 3 on ds1
    return instance, PHYSICAL_DBS[instance], f"{table}_{shard}"


def all_nodes(table: str) -> list[tuple[int, str, str]]:
    return [node_of(table, k) for k in range(SHARDS)]


def physical_tables(cluster: Cluster, logical: str) -> set[tuple[int, str, str]]:
    """Every (instance, schema, table) on the backends named `logical` or `logical_<n>`."""
    found: set[tuple[int, str, str]] = set()
    pattern = f"^{re.escape(logical)}(_[0-9]+)?$"
    placeholders = ", ".join(["%s"] * len(_SYSTEM_SCHEMAS))
    for index, instance in enumerate(cluster.instances):
        rows = instance.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            f"WHERE table_schema NOT IN ({placeholders}) AND table_name REGEXP %s "
            # The proxy's metadata catalog (empty tables with logical names) is no data node.
            "AND table_schema NOT LIKE 'shardproxy\\_meta\\_%%'",
            [*_SYSTEM_SCHEMAS, pattern],
        )
        found |= {(index, schema, name) for schema, name in rows}
    return found


def rows_by_node(
    cluster: Cluster, logical: str, columns: str = "*"
) -> dict[tuple[int, str, str], list[tuple[Any, ...]]]:
    """The sorted rows of every physical table of `logical` on every backend server."""
    layout = {}
    for index, schema, table in sorted(physical_tables(cluster, logical)):
        rows = cluster.instances[index].execute(f"SELECT {columns} FROM `{schema}`.`{table}`")
        layout[(index, schema, table)] = sorted(rows)
    return layout


def expected_layout(
    table: str, rows: Iterable[Sequence[Any]], key_index: int
) -> dict[tuple[int, str, str], list[tuple[Any, ...]]]:
    """Where `mod` must put `rows` (each row's shard key at `key_index`): all 4 nodes listed."""
    layout: dict[tuple[int, str, str], list[tuple[Any, ...]]] = {n: [] for n in all_nodes(table)}
    for row in rows:
        layout[node_of(table, int(row[key_index]))].append(tuple(row))
    return {node: sorted(node_rows) for node, node_rows in layout.items()}


def multiset(rows: Iterable[Sequence[Any]]) -> Counter[tuple[Any, ...]]:
    return Counter(tuple(r) for r in rows)


class ShopTables:
    """Creates shop tables THROUGH the proxy (fresh: leftovers are dropped on the backends
    first) and drops every physical copy straight on the backends afterwards."""

    def __init__(self, proxy: ProxyProcess, cluster: Cluster):
        self.proxy = proxy
        self.cluster = cluster
        self.created: list[str] = []

    def drop_physical(self, logical: str) -> None:
        for index, schema, table in physical_tables(self.cluster, logical):
            self.cluster.instances[index].execute(f"DROP TABLE IF EXISTS `{schema}`.`{table}`")

    def create(self, *names: str) -> None:
        conn = self.proxy.connect()
        try:
            with conn.cursor() as cursor:
                for name in names:
                    self.drop_physical(name)
                    self.created.append(name)
                    cursor.execute(SCHEMA[name])
        finally:
            conn.close()

    def cleanup(self) -> None:
        for name in self.created:
            with contextlib.suppress(Exception):
                self.drop_physical(name)


def assert_proxy_serves(proxy: ProxyProcess) -> None:
    """A brand-new client can log in and run a routed and a scatter query."""
    conn = proxy.connect(connect_timeout=5, read_timeout=5)
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT 1 + 1")
            assert cursor.fetchall() == ((2,),)
            cursor.execute("SHOW DATABASES")  # SHOW TABLES lists only tables that exist
            assert ("shop",) in cursor.fetchall()
    finally:
        conn.close()


# --- drivers ------------------------------------------------------------------------------


def connector_connect(proxy: ProxyProcess, **kwargs: Any) -> Any:
    """mysql-connector-python, pure-Python implementation, to the proxy."""
    options: dict[str, Any] = {
        "host": proxy.host,
        "port": proxy.port,
        "user": "app",
        "password": "app",
        "database": "shop",
        "use_pure": True,
        "autocommit": True,
        "connection_timeout": 5,
        **kwargs,
    }
    return mysql.connector.connect(**options)


def cli(
    proxy: ProxyProcess,
    sql: str,
    *options: str,
    user: str = "app",
    password: str = "app",
    database: str | None = "shop",
    timeout: float = 15,
) -> subprocess.CompletedProcess[str]:
    """`mariadb ... -e SQL` against the proxy, batch output (tab-separated, with headers)."""
    command = [
        "mariadb",
        "--no-defaults",
        "--protocol=tcp",
        f"-h{proxy.host}",
        f"-P{proxy.port}",
        f"-u{user}",
        f"-p{password}",
        "--default-character-set=utf8mb4",
        "--batch",
        *options,
        "-e",
        sql,
    ]
    if database is not None:
        command.append(database)
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


def parse_batch(stdout: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows of `mariadb --batch` output (one result set)."""
    lines = stdout.splitlines()
    assert lines, "no output"
    return lines[0].split("\t"), [line.split("\t") for line in lines[1:]]


# --- a raw protocol client ----------------------------------------------------------------

CLIENT_LONG_PASSWORD = 0x1
CLIENT_CONNECT_WITH_DB = 0x8
CLIENT_PROTOCOL_41 = 0x200
CLIENT_TRANSACTIONS = 0x2000
CLIENT_SECURE_CONNECTION = 0x8000
CLIENT_PLUGIN_AUTH = 0x80000
CLIENT_FLAGS = (
    CLIENT_LONG_PASSWORD
    | CLIENT_CONNECT_WITH_DB
    | CLIENT_PROTOCOL_41
    | CLIENT_TRANSACTIONS
    | CLIENT_SECURE_CONNECTION
    | CLIENT_PLUGIN_AUTH
)


class RawClient:
    """Just enough of the client protocol to misbehave on purpose."""

    def __init__(self, host: str, port: int, timeout: float = 5.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.greeting = self.read_packet()[1]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_packet(self, payload: bytes, seq: int) -> None:
        self.sock.sendall(struct.pack("<I", len(payload))[:3] + bytes([seq]) + payload)

    def _read_exactly(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed by the server")
            data += chunk
        return data

    def read_packet(self) -> tuple[int, bytes]:
        header = self._read_exactly(4)
        length = header[0] | header[1] << 8 | header[2] << 16
        return header[3], self._read_exactly(length)

    def nonce(self) -> bytes:
        """The 20-byte auth scramble from the v10 greeting."""
        g = self.greeting
        pos = g.index(b"\x00", 1) + 1  # protocol version, server version\0
        pos += 4  # connection id
        part1 = g[pos : pos + 8]
        pos += 8 + 1 + 2 + 1 + 2 + 2  # filler, caps low, charset, status, caps high
        auth_len = g[pos]
        pos += 1 + 10
        part2 = g[pos : pos + max(13, auth_len - 8)]
        return (part1 + part2).rstrip(b"\x00")[:20]

    def handshake_response(self, user: str, password: str, database: str | None) -> bytes:
        nonce = self.nonce()
        stage1 = hashlib.sha1(password.encode()).digest()
        stage2 = hashlib.sha1(stage1).digest()
        mix = hashlib.sha1(nonce + stage2).digest()
        scramble = bytes(a ^ b for a, b in zip(stage1, mix, strict=True))
        payload = struct.pack("<IIB", CLIENT_FLAGS, 1 << 24, 45) + b"\x00" * 23
        payload += user.encode() + b"\x00" + bytes([len(scramble)]) + scramble
        payload += (database or "").encode() + b"\x00"
        payload += b"mysql_native_password\x00"
        return payload

    def login(self, user: str = "app", password: str = "app", database: str | None = "shop"):
        self.send_packet(self.handshake_response(user, password, database), 1)
        _, reply = self.read_packet()
        assert reply[:1] == b"\x00", f"login failed: {reply!r}"

    def query(self, sql: str) -> list[bytes]:
        """Send COM_QUERY and collect the reply packets up to the final OK/EOF/ERR."""
        self.send_packet(b"\x03" + sql.encode(), 0)
        packets = []
        eofs = 0
        while True:
            _, payload = self.read_packet()
            packets.append(payload)
            if payload[:1] in (b"\x00", b"\xff") and len(packets) == 1:
                return packets
            if payload[:1] == b"\xff":
                return packets
            if payload[:1] == b"\xfe" and len(payload) < 9:
                eofs += 1
                if eofs == 2:
                    return packets

    def read_until_closed(self, timeout: float) -> list[bytes]:
        """Packets the server sends until it closes the connection (ConnectionError on a
        timeout: the server neither answered nor hung up)."""
        self.sock.settimeout(timeout)
        packets = []
        try:
            while True:
                packets.append(self.read_packet()[1])
        except ConnectionError:
            return packets
        except TimeoutError as exc:
            raise AssertionError(
                f"server neither answered nor closed within {timeout} s; got {packets!r}"
            ) from exc


def err_fields(payload: bytes) -> tuple[int, str, str]:
    """(code, sqlstate, message) of an ERR packet."""
    assert payload[:1] == b"\xff", f"not an ERR packet: {payload!r}"
    code = struct.unpack("<H", payload[1:3])[0]
    if payload[3:4] == b"#":
        return code, payload[4:9].decode(), payload[9:].decode("utf-8", "replace")
    return code, "", payload[3:].decode("utf-8", "replace")


def pymysql_error(exc: BaseException) -> tuple[int, str]:
    assert isinstance(exc, pymysql.err.MySQLError), exc
    return exc.args[0], exc.args[1]

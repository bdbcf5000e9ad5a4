"""Runs metadata plans (router/metadata.py): results read whole, every name made logical.

Metadata results are small, so unlike query results they are decoded: each value has its
physical table and database names (and the catalog schemas' names) replaced by logical ones,
word by word, as error messages are (proxy/names.py); column definitions too. SHOW TABLE STATUS
gets row counts and sizes summed over the data nodes, as the catalog's tables are empty.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import struct
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from proxy import packets as p
from proxy.backend import BackendConnection, BackendError
from proxy.names import NameMap
from proxy.workers_control import row_bytes
from router.analyze import Session as RouterSession
from router.analyze import lookup_table
from router.config import Config, TableKind
from router.errors import DbAccessDenied, ProxyError
from router.metadata import CATALOG_PREFIX
from router.plan import MetadataPlan, ProxyShow, TableLocks

if TYPE_CHECKING:
    from proxy.session import Session

UNSIGNED_FLAG = 0x20
_INTS = {0x01: "b", 0x02: "h", 0x0D: "h", 0x03: "i", 0x09: "i", 0x08: "q"}
_FLOATS = {0x04: "<f", 0x05: "<d"}
_DATES = {0x0A, 0x0C, 0x07}
_TIME = 0x0B
# Per-table statistics SHOW TABLE STATUS / information_schema.TABLES report, by column label.
_STATS_LABELS = {
    "Rows": "rows",
    "TABLE_ROWS": "rows",
    "Avg_row_length": "avg",
    "AVG_ROW_LENGTH": "avg",
    "Data_length": "data",
    "DATA_LENGTH": "data",
    "Index_length": "index",
    "INDEX_LENGTH": "index",
    "Data_free": "free",
    "DATA_FREE": "free",
    "Auto_increment": "auto",
    "AUTO_INCREMENT": "auto",
    "Create_time": "created",
    "CREATE_TIME": "created",
    "Update_time": "updated",
    "UPDATE_TIME": "updated",
}


@dataclass
class Column:
    """One column definition payload and the fields the proxy needs from it."""

    payload: bytes
    name: str
    org_name: str
    type: int
    flags: int

    @classmethod
    def parse(cls, payload: bytes) -> Column:
        pos = 0
        fields = []
        for _ in range(6):
            n, pos = p.read_lenenc_int(payload, pos)
            fields.append(payload[pos : pos + (n or 0)])
            pos += n or 0
        _, pos = p.read_lenenc_int(payload, pos)  # length of the fixed fields (0x0c)
        column_type = payload[pos + 6]
        flags = struct.unpack_from("<H", payload, pos + 7)[0]
        name = fields[4].decode("utf-8", "replace")
        return cls(payload, name, fields[5].decode("utf-8", "replace"), column_type, flags)


@dataclass
class Result:
    """A whole result set: column definitions and text-protocol rows."""

    columns: list[Column] = field(default_factory=list)
    rows: list[list[bytes | None]] = field(default_factory=list)
    warnings: int = 0


async def fetch(conn: BackendConnection, sql: str) -> Result:
    """Run `sql` and read its whole result (raises BackendError on ERR)."""
    conn.send_command(p.COM_QUERY, sql.encode("utf-8", "surrogateescape"))
    head = await conn.read_packet()
    if head[0] == 0xFF:
        code, sqlstate, message = p.parse_err(head)
        raise BackendError(message, code, sqlstate)
    result = Result()
    if head[0] == 0x00:
        return result
    count, _ = p.read_lenenc_int(head, 0)
    for _ in range(count or 0):
        result.columns.append(Column.parse(await conn.read_packet()))
    await conn.read_packet()  # EOF
    while True:
        payload = await conn.read_packet()
        if p.is_eof(payload):
            result.warnings = p.eof_status(payload)[0]
            return result
        if payload[0] == 0xFF:
            code, sqlstate, message = p.parse_err(payload)
            raise BackendError(message, code, sqlstate)
        row: list[bytes | None] = []
        pos = 0
        for _ in range(count or 0):
            n, pos = p.read_lenenc_int(payload, pos)
            if n is None:
                row.append(None)
            else:
                row.append(payload[pos : pos + n])
                pos += n
        result.rows.append(row)


def logical_result(result: Result, names: NameMap) -> Result:
    """The result with physical and catalog names made logical, in values and columns."""
    rows = [[None if v is None else _logical(v, names) for v in row] for row in result.rows]
    # Our catalog schemas were renamed above; one still showing belongs to another config's
    # proxy on the same server (mysql.innodb_table_stats lists them all): not ours to show.
    prefix = CATALOG_PREFIX.encode()
    rows = [row for row in rows if not any(v is not None and v.startswith(prefix) for v in row)]
    columns = [_logical_column(c, names) for c in result.columns]
    return Result(columns, rows, result.warnings)


def _logical(value: bytes, names: NameMap) -> bytes:
    text = value.decode("utf-8", "surrogateescape")
    renamed = names.message(text)
    return value if renamed == text else renamed.encode("utf-8", "surrogateescape")


def _logical_column(column: Column, names: NameMap) -> Column:
    """Schema/table fields via NameMap; catalog names inside the column name (`Tables_in_x`)."""
    payload = names.column_definition(column.payload)
    name = _rename_inside(column.name, names)
    org_name = _rename_inside(column.org_name, names)
    if name != column.name or org_name != column.org_name:
        payload = _with_names(payload, name, org_name)
    return Column(payload, name, org_name, column.type, column.flags)


def _rename_inside(label: str, names: NameMap) -> str:
    if "_" not in label:
        return label
    for physical, logical in names.databases.items():
        if physical in label:
            label = label.replace(physical, logical)
    return label


def _with_names(payload: bytes, name: str, org_name: str) -> bytes:
    pos = 0
    fields = []
    for _ in range(6):
        n, end = p.read_lenenc_int(payload, pos)
        fields.append(payload[end : end + (n or 0)])
        pos = end + (n or 0)
    fields[4] = name.encode("utf-8")
    fields[5] = org_name.encode("utf-8")
    return b"".join(p.lenenc_str(f) for f in fields) + payload[pos:]


# --- statistics ----------------------------------------------------------------------------


@dataclass
class TableStats:
    rows: int = 0
    data: int = 0
    index: int = 0
    free: int = 0
    auto: int | None = None
    created: str | None = None
    updated: str | None = None

    @property
    def avg(self) -> int:
        return self.data // self.rows if self.rows else 0


_STATS_SQL = (
    "SELECT TABLE_NAME, TABLE_ROWS, DATA_LENGTH, INDEX_LENGTH, DATA_FREE, AUTO_INCREMENT, "
    "CREATE_TIME, UPDATE_TIME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()"
)


async def table_stats(session: Session, database: str) -> dict[str, TableStats]:
    """Logical table -> its statistics summed over its data nodes (one copy of a broadcast)."""
    config: Config = session.runtime.config
    db = config.databases[database]
    wanted: dict[tuple[str, str], str] = {}  # (backend, physical lower) -> logical table
    for table in db.tables.values():
        nodes = table.nodes if table.kind is TableKind.SHARDED else table.nodes[:1]
        for node in nodes:
            wanted[(node.backend, node.table.lower())] = table.name
    backends = sorted({backend for backend, _ in wanted})

    async def read(backend: str) -> list[tuple[str | None, ...]]:
        async with _connection(session, backend) as conn:
            return await conn.query(_STATS_SQL)

    stats: dict[str, TableStats] = {}
    for backend, rows in zip(backends, await asyncio.gather(*map(read, backends)), strict=True):
        for name, rows_, data, index, free, auto, created, updated in rows:
            logical = wanted.get((backend, (name or "").lower()))
            if logical is None:
                continue
            entry = stats.setdefault(logical, TableStats())
            entry.rows += int(rows_ or 0)
            entry.data += int(data or 0)
            entry.index += int(index or 0)
            entry.free += int(free or 0)
            if auto is not None:
                entry.auto = max(entry.auto or 0, int(auto))
            if created is not None and (entry.created is None or created < entry.created):
                entry.created = created
            if updated is not None and (entry.updated is None or updated > entry.updated):
                entry.updated = updated
    return stats


def patch_stats(result: Result, database: str, stats: dict[str, TableStats]) -> None:
    """Replace the catalog's (empty tables') statistics with the data nodes' sums, in place."""
    labels = [c.org_name or c.name for c in result.columns]
    key = _index(labels, ("Name", "TABLE_NAME"))
    schema = _index(labels, ("TABLE_SCHEMA",))
    fixes = [(i, _STATS_LABELS[label]) for i, label in enumerate(labels) if label in _STATS_LABELS]
    if key is None or not fixes:
        return
    for row in result.rows:
        if schema is not None and row[schema] != database.encode():
            continue
        entry = stats.get((row[key] or b"").decode("utf-8", "replace"))
        if entry is None:
            continue
        for i, what in fixes:
            value = getattr(entry, what)
            row[i] = None if value is None else str(value).encode()


def _index(labels: list[str], wanted: tuple[str, ...]) -> int | None:
    for i, label in enumerate(labels):
        if label in wanted:
            return i
    return None


# --- running the plans ---------------------------------------------------------------------


async def run_metadata(
    session: Session, plan: MetadataPlan | ProxyShow | TableLocks, more: bool, binary: bool
) -> None:
    """Answer a metadata plan to the session's client."""
    if isinstance(plan, TableLocks):
        session.channel.send(p.ok_packet(status=session.status(more)))
        return
    if isinstance(plan, ProxyShow):
        columns, rows = proxy_show(session, plan)
        cluster = session.server.cluster
        if plan.what == "processlist" and cluster is not None:
            request = {
                "op": "processlist",
                "user": session.user,
                "admin": session.runtime.config.users[session.user].admin,
            }
            for other in await cluster.from_others("SHOW PROCESSLIST", request):
                rows += [row_bytes(row) for row in other]
            rows.sort(key=lambda row: int(row[0] or 0))
        payloads = [p.column_definition(name, kind) for name, kind in columns]
        result = Result([Column.parse(c) for c in payloads], rows)
        send_result(session, result, more, binary)
        return
    allowed = session.allowed_databases()
    for database in plan.databases:
        if database not in allowed:
            raise DbAccessDenied(
                f"Access denied for user '{session.user}'@'%' to database '{database}'"
            )
    runtime = session.runtime
    if plan.catalog:
        try:
            await runtime.catalog.ensure(stale_ok=bool(session.txn_conns))
        except ProxyError:
            if plan.fallback is None:
                raise
            session.show(plan.fallback, more, binary)
            return
    try:
        async with _connection(session, plan.unit.backend) as conn:
            result = await fetch(conn, plan.unit.sql)
    except BackendError as exc:
        raise BackendError(runtime.names.message(exc.message), exc.code, exc.sqlstate) from None
    result = logical_result(result, runtime.names)
    databases = [plan.stats] if plan.stats else _stats_wanted(result, runtime.config)
    for database in databases:
        patch_stats(result, database, await table_stats(session, database))
    send_result(session, result, more, binary)


@contextlib.asynccontextmanager
async def _connection(session: Session, backend: str) -> AsyncIterator[BackendConnection]:
    """The session's pinned connection to `backend` in a transaction, else a pooled one."""
    pinned = session.txn_conns.get(backend)
    if pinned is not None:
        yield pinned
        return
    pool = session.runtime.backends[backend]
    conn = await pool.acquire(session.state)
    clean = False
    try:
        yield conn
        clean = True
    except BackendError:
        clean = not conn.broken  # an ERR answer leaves the connection clean
        raise
    finally:
        pool.release(conn, clean)


def _stats_wanted(result: Result, config: Config) -> list[str]:
    """The logical databases whose table statistics an information_schema.TABLES result shows."""
    labels = [c.org_name for c in result.columns]
    if "TABLE_NAME" not in labels or "TABLE_SCHEMA" not in labels:
        return []
    if not any(label in _STATS_LABELS for label in labels):
        return []
    schema = labels.index("TABLE_SCHEMA")
    seen = {row[schema].decode("utf-8", "replace") for row in result.rows if row[schema]}
    return [name for name in config.databases if name in seen]


def send_result(session: Session, result: Result, more: bool, binary: bool) -> None:
    status = session.status(more)
    channel = session.channel
    if not result.columns:
        channel.send(p.ok_packet(status=status, warnings=result.warnings))
        return
    channel.send(p.lenenc_int(len(result.columns)))
    for column in result.columns:
        channel.send(column.payload)
    channel.send(p.eof_packet(status))
    for row in result.rows:
        channel.send(binary_row(result.columns, row) if binary else p.text_row(row))
    channel.send(p.eof_packet(status, result.warnings))
    session.found_rows = len(result.rows)


async def field_list(session: Session, body: bytes) -> None:
    """COM_FIELD_LIST (`table NUL wildcard`), sent by the mariadb CLI's name completion and old
    drivers: the column definitions of the logical table's first data node, names logical."""
    name, _, wildcard = body.partition(b"\0")
    table = lookup_table(
        RouterSession(session.runtime.config, session.database),
        None,
        name.decode("utf-8", "surrogateescape"),
    )
    node = table.nodes[0]
    names = session.runtime.names
    conn, pooled = await session.connection(node.backend)
    clean = False
    columns = []
    try:
        conn.send_command(p.COM_FIELD_LIST, node.table.encode("utf-8") + b"\0" + wildcard)
        while True:
            payload = await conn.read_packet()
            if payload[:1] == b"\xff":
                clean = True
                code, sqlstate, message = p.parse_err(payload)
                raise BackendError(names.message(message), code, sqlstate)
            if payload[:1] == b"\xfe" and len(payload) < 9:
                clean = True
                break
            columns.append(names.column_definition(payload))
    finally:
        if pooled:
            conn.pool.release(conn, clean and not conn.broken)
    for column in columns:
        session.channel.send(column)
    session.channel.send(p.eof_packet(session.status()))


# --- the proxy's own answers -------------------------------------------------------------------

Spec = list[tuple[str, int]]


def proxy_show(session: Session, plan: ProxyShow) -> tuple[Spec, list[list[bytes | None]]]:
    if plan.what == "grants":
        account = f"`{session.user}`@`%`"
        columns: Spec = [(f"Grants for {session.user}@%", p.TYPE_VAR_STRING)]
        grants = [f"GRANT USAGE ON *.* TO {account}"]
        grants += [
            f"GRANT ALL PRIVILEGES ON `{name}`.* TO {account}"
            for name in session.allowed_databases()
        ]
        return columns, [[g.encode()] for g in grants]
    columns = [
        ("Id", p.TYPE_LONGLONG),
        ("User", p.TYPE_VAR_STRING),
        ("Host", p.TYPE_VAR_STRING),
        ("db", p.TYPE_VAR_STRING),
        ("Command", p.TYPE_VAR_STRING),
        ("Time", p.TYPE_LONGLONG),
        ("State", p.TYPE_VAR_STRING),
        ("Info", p.TYPE_VAR_STRING),
        ("Progress", p.TYPE_VAR_STRING),
    ]
    admin = session.runtime.config.users[session.user].admin
    sessions = list(session.server.sessions.values())
    return columns, processlist_rows(sessions, session.user, admin, session, plan.full)


def processlist_rows(
    sessions: list[Session], user: str, admin: bool, me: Session | None, full: bool = False
) -> list[list[bytes | None]]:
    """PROCESSLIST rows of `sessions` that `user` may see; `me` is the one asking."""
    rows: list[list[bytes | None]] = []
    for other in sessions:
        if other.user != user and not admin:
            continue  # as MySQL without PROCESS: only your own account's connections
        mine = other is me
        info = ("SHOW FULL PROCESSLIST" if full else "SHOW PROCESSLIST") if mine else None
        rows.append(
            [
                str(other.connection_id).encode(),
                other.user.encode(),
                client_host(other, with_port=True).encode(),
                other.database.encode() if other.database else None,
                b"Query" if other.busy else b"Sleep",
                b"0",
                b"starting" if mine else b"",
                info.encode() if info else None,
                b"0.000",
            ]
        )
    return rows


def client_host(session: Session, with_port: bool = False) -> str:
    """The client's address as MySQL shows it: `127.0.0.1` (`127.0.0.1:50312` in PROCESSLIST)."""
    peer = session.channel.stream.get_extra_info("peername")
    if not peer:
        return "localhost"
    return f"{peer[0]}:{peer[1]}" if with_port else str(peer[0])


# --- binary protocol -------------------------------------------------------------------------


def binary_row(columns: Sequence[Column], values: Sequence[bytes | None]) -> bytes:
    """A binary-protocol row of text-protocol values, encoded per column type."""
    bitmap = bytearray((len(values) + 7 + 2) // 8)
    parts = []
    for i, (column, value) in enumerate(zip(columns, values, strict=True)):
        if value is None:
            bitmap[(i + 2) >> 3] |= 1 << ((i + 2) & 7)
        else:
            parts.append(_binary_value(column, value))
    return b"\x00" + bytes(bitmap) + b"".join(parts)


def _binary_value(column: Column, value: bytes) -> bytes:
    kind = column.type
    try:
        if kind in _INTS:
            code = _INTS[kind]
            if column.flags & UNSIGNED_FLAG:
                code = code.upper()
            return struct.pack("<" + code, int(value))
        if kind in _FLOATS:
            return struct.pack(_FLOATS[kind], float(value))
        if kind in _DATES:
            return _binary_datetime(value.decode())
        if kind == _TIME:
            return _binary_time(value.decode())
    except (ValueError, struct.error):
        pass
    return p.lenenc_str(value)


def _binary_datetime(text: str) -> bytes:
    date, _, clock = text.partition(" ")
    year, month, day = (int(x) for x in date.split("-"))
    hour = minute = second = micro = 0
    if clock:
        whole, _, fraction = clock.partition(".")
        hour, minute, second = (int(x) for x in whole.split(":"))
        micro = int(fraction.ljust(6, "0")) if fraction else 0
    if micro:
        return b"\x0b" + struct.pack("<HBBBBBI", year, month, day, hour, minute, second, micro)
    if hour or minute or second:
        return b"\x07" + struct.pack("<HBBBBB", year, month, day, hour, minute, second)
    if year or month or day:
        return b"\x04" + struct.pack("<HBB", year, month, day)
    return b"\x00"


def _binary_time(text: str) -> bytes:
    negative = text.startswith("-")
    whole, _, fraction = text.lstrip("-").partition(".")
    hours, minutes, seconds = (int(x) for x in whole.split(":"))
    micro = int(fraction.ljust(6, "0")) if fraction else 0
    delta = datetime.timedelta(hours=hours)
    days, hours = delta.days, delta.seconds // 3600
    if not (days or hours or minutes or seconds or micro):
        return b"\x00"
    body = struct.pack("<BIBBB", negative, days, hours, minutes, seconds)
    if micro:
        return b"\x0c" + body + struct.pack("<I", micro)
    return b"\x08" + body

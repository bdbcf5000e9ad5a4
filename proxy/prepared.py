"""Server-side prepared statements: the binary protocol's parameters, and backend statements.

A client's statement is planned at every execution with its bound values (the router's shape
cache makes that cheap). Reads run as real prepared statements on the backends — the physical
SQL keeps `?` where the client's parameters go — so binary result rows are relayed untouched,
exact for every column type. Writes and session statements answer with OK packets, which are the
same in both protocols, so they run as text with the values rendered as literals.
"""

from __future__ import annotations

import datetime
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from proxy import packets as p
from proxy.backend import BackendConnection, BackendError
from router.errors import ProxyError
from router.normalize import Normalized
from router.plan import Unit

# Column types whose binary values are length-encoded strings.
_FIXED = {0x01: 1, 0x02: 2, 0x0D: 2, 0x03: 4, 0x09: 4, 0x04: 4, 0x05: 8, 0x08: 8}
_TEMPORAL = {0x07, 0x0A, 0x0C, 0x0B}
_TEXT_TYPES = {0x0F, 0xFD, 0xFE, 0xF5, 0xF7, 0xF8}
_DECIMALS = {0x00, 0xF6}
_MARKER = re.compile(r"/\*\?(\d+)\*/\?")
# Backend statements kept per connection; the oldest is closed beyond this.
BACKEND_STATEMENTS = 256


class StatementNotFound(ProxyError):
    code, sqlstate = 1243, "HY000"  # ER_UNKNOWN_STMT_HANDLER


@dataclass(frozen=True, slots=True)
class Param:
    """One bound parameter: its wire type (2 bytes), wire value (None: NULL), Python value."""

    type: bytes
    raw: bytes | None
    value: object


@dataclass
class ClientStatement:
    """A statement a client prepared with COM_STMT_PREPARE."""

    id: int
    sql: str
    num_params: int
    types: bytes | None = None  # the types of the last execute that bound them
    long_data: dict[int, bytearray] = field(default_factory=dict)
    # Kept for every execution: the statement's shape (the router skips tokenizing it), and
    # each physical SQL it ran as -> (that SQL with plain `?`, its parameter indexes).
    normalized: Normalized | None = None
    physical: dict[str, tuple[str, list[int]]] = field(default_factory=dict)


def prepare_ok(stmt_id: int, columns: int, params: int, warnings: int = 0) -> bytes:
    return b"\x00" + struct.pack("<IHHxH", stmt_id, columns, params, warnings)


def parse_execute(
    body: bytes, statements: dict[int, ClientStatement]
) -> tuple[ClientStatement, list[Param]]:
    """Decode COM_STMT_EXECUTE (without the command byte) into its statement and parameters."""
    if len(body) < 9:
        raise ProxyError("Malformed packet", 1835, "HY000")
    stmt_id = struct.unpack_from("<I", body)[0]
    stmt = statements.get(stmt_id)
    if stmt is None:
        raise StatementNotFound(
            f"Unknown prepared statement handler ({stmt_id}) given to mysqld_stmt_execute"
        )
    n = stmt.num_params
    if n == 0:
        return stmt, []
    pos = 9
    bitmap = body[pos : pos + (n + 7) // 8]
    pos += (n + 7) // 8
    if pos < len(body) and body[pos] == 1:
        stmt.types = body[pos + 1 : pos + 1 + 2 * n]
        pos += 1 + 2 * n
    else:
        pos += 1
    types = stmt.types
    if types is None or len(types) != 2 * n:
        raise ProxyError("Incorrect arguments to mysqld_stmt_execute", 1210, "HY000")
    params = []
    try:
        for i in range(n):
            kind = types[2 * i : 2 * i + 2]
            if i in stmt.long_data:
                data = bytes(stmt.long_data[i])
                params.append(Param(kind, p.lenenc_str(data), _text_value(kind[0], data)))
                continue
            if bitmap[i >> 3] & (1 << (i & 7)) or kind[0] == 0x06:
                params.append(Param(kind, None, None))
                continue
            raw, pos = _read_value(body, pos, kind[0])
            params.append(Param(kind, raw, _decode(kind, raw)))
    except (IndexError, struct.error, ValueError) as exc:
        raise ProxyError("Malformed packet", 1835, "HY000") from exc
    return stmt, params


def _read_value(body: bytes, pos: int, kind: int) -> tuple[bytes, int]:
    size = _FIXED.get(kind)
    if size is not None:
        if pos + size > len(body):
            raise ValueError("truncated parameter")
        return body[pos : pos + size], pos + size
    if kind in _TEMPORAL:
        length = body[pos]
        end = pos + 1 + length
    else:
        length, start = p.read_lenenc_int(body, pos)
        end = start + (length or 0)
    if end > len(body):
        raise ValueError("truncated parameter")
    return body[pos:end], end


def _decode(kind: bytes, raw: bytes) -> object:
    """The value the router routes by, with MySQL's meaning of the wire bytes."""
    code, unsigned = kind[0], kind[1] & 0x80
    if code in (0x01, 0x02, 0x0D, 0x03, 0x09, 0x08):
        return int.from_bytes(raw, "little", signed=not unsigned)
    if code == 0x04:
        return struct.unpack("<f", raw)[0]
    if code == 0x05:
        return struct.unpack("<d", raw)[0]
    if code in _TEMPORAL:
        return _temporal(code, raw[1:])
    length, start = p.read_lenenc_int(raw, 0)
    return _text_value(code, raw[start : start + (length or 0)])


def _text_value(code: int, data: bytes) -> object:
    if code in _DECIMALS:
        try:
            return Decimal(data.decode("ascii"))
        except (InvalidOperation, UnicodeDecodeError):
            return data
    if code in _TEXT_TYPES:
        return data.decode("utf-8", "surrogateescape")
    return data


def _temporal(code: int, data: bytes) -> object:
    if code == 0x0B:
        if not data:
            return datetime.timedelta(0)
        negative, days, hours, minutes, seconds = struct.unpack_from("<BIBBB", data)
        micro = struct.unpack_from("<I", data, 8)[0] if len(data) >= 12 else 0
        delta = datetime.timedelta(days, seconds, micro, 0, minutes, hours)
        return -delta if negative else delta
    # The text MariaDB makes of the value, which is what a string column stores: a DATE has no
    # time, a DATETIME fractions only when it has some.
    if not data:
        return "0000-00-00" if code == 0x0A else "0000-00-00 00:00:00"
    year, month, day = struct.unpack_from("<HBB", data)
    date = f"{year:04d}-{month:02d}-{day:02d}"
    if code == 0x0A:
        return date
    hour = minute = second = micro = 0
    if len(data) >= 7:
        hour, minute, second = struct.unpack_from("<BBB", data, 4)
    if len(data) >= 11:
        micro = struct.unpack_from("<I", data, 7)[0]
    text = f"{date} {hour:02d}:{minute:02d}:{second:02d}"
    return f"{text}.{micro:06d}" if micro else text


def unmark(sql: str) -> tuple[str, list[int]]:
    """Physical SQL with the router's parameter markers back to `?`, and their indexes."""
    indexes = [int(m.group(1)) for m in _MARKER.finditer(sql)]
    return _MARKER.sub("?", sql), indexes


def encode_execute(stmt_id: int, params: Sequence[Param]) -> bytes:
    """COM_STMT_EXECUTE for a backend statement, types always bound."""
    head = struct.pack("<IBI", stmt_id, 0, 1)
    if not params:
        return head
    bitmap = bytearray((len(params) + 7) // 8)
    for i, param in enumerate(params):
        if param.raw is None:
            bitmap[i >> 3] |= 1 << (i & 7)
    types = b"".join(param.type for param in params)
    values = b"".join(param.raw for param in params if param.raw is not None)
    return head + bytes(bitmap) + b"\x01" + types + values


async def backend_statement(conn: BackendConnection, sql: str) -> int:
    """The id of `sql` prepared on this connection, preparing it the first time."""
    cached = conn.statements.get(sql)
    if cached is not None:
        return cached
    conn.send_command(p.COM_STMT_PREPARE, sql.encode("utf-8", "surrogateescape"))
    head = await conn.read_packet()
    if head[0] == 0xFF:
        code, sqlstate, message = p.parse_err(head)
        raise BackendError(message, code, sqlstate)
    stmt_id, columns, params = struct.unpack_from("<IHH", head, 1)
    for count in (params, columns):
        if count:
            for _ in range(count):
                await conn.read_packet()
            await conn.read_packet()  # EOF
    if len(conn.statements) >= BACKEND_STATEMENTS:
        oldest = next(iter(conn.statements))
        conn.send_command(p.COM_STMT_CLOSE, struct.pack("<I", conn.statements.pop(oldest)))
    conn.statements[sql] = stmt_id
    return stmt_id


async def describe(conn: BackendConnection, sql: str) -> tuple[int, list[bytes], list[bytes]]:
    """Prepare `sql` on a backend for its metadata: (param count, param defs, column defs)."""
    conn.send_command(p.COM_STMT_PREPARE, sql.encode("utf-8", "surrogateescape"))
    head = await conn.read_packet()
    if head[0] == 0xFF:
        code, sqlstate, message = p.parse_err(head)
        raise BackendError(message, code, sqlstate)
    stmt_id, columns, params = struct.unpack_from("<IHH", head, 1)
    param_defs = [await conn.read_packet() for _ in range(params)]
    if params:
        await conn.read_packet()
    column_defs = [await conn.read_packet() for _ in range(columns)]
    if columns:
        await conn.read_packet()
    conn.send_command(p.COM_STMT_CLOSE, struct.pack("<I", stmt_id))
    return params, param_defs, column_defs


def make_sender(params: Sequence[Param], physical: dict[str, tuple[str, list[int]]]):
    """Runs a unit as a backend prepared statement with the client's parameters; `physical`
    caches what `unmark` makes of each unit's SQL (ClientStatement.physical)."""

    async def send(conn: BackendConnection, unit: Unit) -> None:
        unmarked = physical.get(unit.sql)
        if unmarked is None:
            if len(physical) >= BACKEND_STATEMENTS:
                physical.clear()
            unmarked = physical[unit.sql] = unmark(unit.sql)
        sql, indexes = unmarked
        stmt_id = conn.statements.get(sql)  # prepared there before: no coroutine to await
        if stmt_id is None:
            stmt_id = await backend_statement(conn, sql)
        conn.send_command(p.COM_STMT_EXECUTE, encode_execute(stmt_id, [params[i] for i in indexes]))

    return send


def binary_row(values: Sequence[object]) -> bytes:
    """A binary-protocol row of string columns (the proxy's own small results)."""
    bitmap = bytearray((len(values) + 7 + 2) // 8)
    parts = []
    for i, value in enumerate(values):
        if value is None:
            bitmap[(i + 2) >> 3] |= 1 << ((i + 2) & 7)
        else:
            data = value if isinstance(value, bytes) else str(value).encode("utf-8")
            parts.append(p.lenenc_str(data))
    return b"\x00" + bytes(bitmap) + b"".join(parts)

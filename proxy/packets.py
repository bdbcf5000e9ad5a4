"""MySQL packet codec: framing, length-encoded values, OK/ERR/EOF and simple result sets.

No policy here (asyncpg's protocol layer is the model): sessions decide what to send, this module
only knows how bytes look. mysql-mimic's compiled `packets` module builds the handshake; what it
gets wrong for a proxy (ERR SQLSTATEs, column charset ids) is written here.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

MAX_PAYLOAD = 0xFFFFFF

# Capability flags (protocol docs: "Capability Flags").
CLIENT_LONG_PASSWORD = 1
CLIENT_FOUND_ROWS = 1 << 1
CLIENT_LONG_FLAG = 1 << 2
CLIENT_CONNECT_WITH_DB = 1 << 3
CLIENT_NO_SCHEMA = 1 << 4
CLIENT_ODBC = 1 << 6
CLIENT_IGNORE_SPACE = 1 << 8
CLIENT_PROTOCOL_41 = 1 << 9
CLIENT_INTERACTIVE = 1 << 10
CLIENT_SSL = 1 << 11
CLIENT_TRANSACTIONS = 1 << 13
CLIENT_SECURE_CONNECTION = 1 << 15
CLIENT_MULTI_STATEMENTS = 1 << 16
CLIENT_MULTI_RESULTS = 1 << 17
CLIENT_PS_MULTI_RESULTS = 1 << 18
CLIENT_PLUGIN_AUTH = 1 << 19
CLIENT_CONNECT_ATTRS = 1 << 20
CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA = 1 << 21
CLIENT_SESSION_TRACK = 1 << 23
CLIENT_DEPRECATE_EOF = 1 << 24

# What the proxy offers. Deliberately without CLIENT_DEPRECATE_EOF (backends are spoken to without
# it, so relayed result sets need no translation), CLIENT_SESSION_TRACK and query attributes.
SERVER_CAPABILITIES = (
    CLIENT_LONG_PASSWORD
    | CLIENT_FOUND_ROWS
    | CLIENT_LONG_FLAG
    | CLIENT_CONNECT_WITH_DB
    | CLIENT_NO_SCHEMA
    | CLIENT_ODBC
    | CLIENT_IGNORE_SPACE
    | CLIENT_PROTOCOL_41
    | CLIENT_INTERACTIVE
    | CLIENT_TRANSACTIONS
    | CLIENT_SECURE_CONNECTION
    | CLIENT_MULTI_STATEMENTS
    | CLIENT_MULTI_RESULTS
    | CLIENT_PS_MULTI_RESULTS
    | CLIENT_PLUGIN_AUTH
    | CLIENT_CONNECT_ATTRS
    | CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
)

# Server status flags.
SERVER_STATUS_IN_TRANS = 0x0001
SERVER_STATUS_AUTOCOMMIT = 0x0002
SERVER_MORE_RESULTS_EXISTS = 0x0008
SERVER_STATUS_NO_BACKSLASH_ESCAPES = 0x0200

# Commands.
COM_QUIT = 0x01
COM_INIT_DB = 0x02
COM_QUERY = 0x03
COM_FIELD_LIST = 0x04
COM_STATISTICS = 0x09
COM_PROCESS_KILL = 0x0C
COM_PING = 0x0E
COM_CHANGE_USER = 0x11
COM_STMT_PREPARE = 0x16
COM_STMT_EXECUTE = 0x17
COM_STMT_SEND_LONG_DATA = 0x18
COM_STMT_CLOSE = 0x19
COM_STMT_RESET = 0x1A
COM_SET_OPTION = 0x1B
COM_STMT_FETCH = 0x1C
COM_RESET_CONNECTION = 0x1F

# Column types used by result sets the proxy builds itself.
TYPE_LONG = 0x03
TYPE_LONGLONG = 0x08
TYPE_VAR_STRING = 0xFD

UTF8MB4_GENERAL_CI = 45
BINARY_COLLATION = 63

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")


def frame(payload: bytes, seq: int) -> tuple[bytes, int]:
    """Frame a payload into wire packets, splitting at 16 MB; returns (bytes, next seq)."""
    n = len(payload)
    if n < MAX_PAYLOAD:
        return n.to_bytes(3, "little") + bytes((seq & 0xFF,)) + payload, seq + 1
    out = bytearray()
    pos = 0
    while True:
        chunk = payload[pos : pos + MAX_PAYLOAD]
        out += len(chunk).to_bytes(3, "little") + bytes((seq & 0xFF,)) + chunk
        seq += 1
        pos += MAX_PAYLOAD
        # A payload of exactly k * 16 MB ends with an empty packet.
        if len(chunk) < MAX_PAYLOAD:
            break
    return bytes(out), seq


def lenenc_int(n: int) -> bytes:
    if n < 251:
        return bytes((n,))
    if n < 1 << 16:
        return b"\xfc" + n.to_bytes(2, "little")
    if n < 1 << 24:
        return b"\xfd" + n.to_bytes(3, "little")
    return b"\xfe" + n.to_bytes(8, "little")


def lenenc_str(b: bytes) -> bytes:
    return lenenc_int(len(b)) + b


def read_lenenc_int(buf: bytes | memoryview, pos: int) -> tuple[int | None, int]:
    """Decode a length-encoded integer at pos; None stands for the NULL marker 0xFB."""
    first = buf[pos]
    if first < 251:
        return first, pos + 1
    if first == 0xFB:
        return None, pos + 1
    if first == 0xFC:
        return int.from_bytes(buf[pos + 1 : pos + 3], "little"), pos + 3
    if first == 0xFD:
        return int.from_bytes(buf[pos + 1 : pos + 4], "little"), pos + 4
    return int.from_bytes(buf[pos + 1 : pos + 9], "little"), pos + 9


def ok_packet(
    affected_rows: int = 0,
    last_insert_id: int = 0,
    status: int = SERVER_STATUS_AUTOCOMMIT,
    warnings: int = 0,
    info: bytes = b"",
) -> bytes:
    return (
        b"\x00"
        + lenenc_int(affected_rows)
        + lenenc_int(last_insert_id)
        + _U16.pack(status)
        + _U16.pack(warnings)
        + info
    )


def eof_packet(status: int = SERVER_STATUS_AUTOCOMMIT, warnings: int = 0) -> bytes:
    return b"\xfe" + _U16.pack(warnings) + _U16.pack(status)


def err_packet(code: int, sqlstate: str, message: str) -> bytes:
    return (
        b"\xff"
        + _U16.pack(code)
        + b"#"
        + sqlstate.encode("ascii")[:5].ljust(5, b"0")
        + message.encode("utf-8", "replace")
    )


def parse_err(payload: bytes) -> tuple[int, str, str]:
    """(code, sqlstate, message) of an ERR packet payload."""
    code = _U16.unpack_from(payload, 1)[0]
    if payload[3:4] == b"#":
        return code, payload[4:9].decode("ascii", "replace"), payload[9:].decode("utf-8", "replace")
    return code, "HY000", payload[3:].decode("utf-8", "replace")


def parse_ok(payload: bytes) -> tuple[int, int, int, int]:
    """(affected_rows, last_insert_id, status, warnings) of an OK packet payload."""
    affected, pos = read_lenenc_int(payload, 1)
    insert_id, pos = read_lenenc_int(payload, pos)
    status, warnings = struct.unpack_from("<HH", payload, pos)
    return affected or 0, insert_id or 0, status, warnings


def is_eof(payload: bytes) -> bool:
    return payload[:1] == b"\xfe" and len(payload) < 9


def eof_status(payload: bytes) -> tuple[int, int]:
    """(warnings, status) of an EOF packet payload."""
    warnings, status = struct.unpack_from("<HH", payload, 1)
    return warnings, status


def with_eof_status(payload: bytes, status: int) -> bytes:
    return payload[:3] + _U16.pack(status) + payload[5:]


def column_definition(
    name: str,
    column_type: int = TYPE_VAR_STRING,
    length: int = 256,
    collation: int = UTF8MB4_GENERAL_CI,
    table: str = "",
    schema: str = "",
    flags: int = 0,
    decimals: int = 0,
) -> bytes:
    encoded = name.encode("utf-8")
    return b"".join(
        (
            lenenc_str(b"def"),
            lenenc_str(schema.encode("utf-8")),
            lenenc_str(table.encode("utf-8")),
            lenenc_str(table.encode("utf-8")),
            lenenc_str(encoded),
            lenenc_str(encoded),
            b"\x0c",
            _U16.pack(collation),
            _U32.pack(length),
            bytes((column_type,)),
            _U16.pack(flags),
            bytes((decimals,)),
            b"\x00\x00",
        )
    )


def text_row(values: Sequence[object]) -> bytes:
    parts = []
    for value in values:
        if value is None:
            parts.append(b"\xfb")
        elif isinstance(value, bytes):
            parts.append(lenenc_str(value))
        else:
            parts.append(lenenc_str(str(value).encode("utf-8")))
    return b"".join(parts)


def text_result_payloads(
    columns: Sequence[str], rows: Iterable[Sequence[object]], status: int
) -> list[bytes]:
    """Payloads of a whole text-protocol result set built by the proxy itself (small results)."""
    payloads = [lenenc_int(len(columns))]
    payloads += [column_definition(name) for name in columns]
    payloads.append(eof_packet(status))
    payloads += [text_row(row) for row in rows]
    payloads.append(eof_packet(status))
    return payloads

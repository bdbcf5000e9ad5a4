"""Session values read back from a backend as SQL literals that recreate them exactly.

A session's SETs are replayed on whichever pooled connection serves it next
(proxy.backend.apply_state), so each value must come back as it was: a user variable keeps its
type (integer, unsigned, DECIMAL, DOUBLE, string) and, for a string, its bytes and collation. Read
as text, a binary value or a latin1 string would come back as U+FFFD, and a DOUBLE as a string.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from proxy.backend import BackendConnection
from proxy.metadata import Column, fetch

_INTEGER = 0x08  # MYSQL_TYPE_LONGLONG: every integer user variable
_NEWDECIMAL = 0xF6
_FLOATS = {0x04, 0x05}
_NUMBER = re.compile(r"-?\d+(\.\d+)?")


def readback_sql(names: Sequence[str]) -> str:
    """One SELECT of each name's value: a user variable with its bytes, character set and
    collation too, a system variable (`sql_mode`) from the session scope."""
    exprs = []
    for name in names:
        if name.startswith("@"):
            exprs += [name, f"HEX({name})", f"CHARSET({name})", f"COLLATION({name})"]
        else:
            exprs.append(f"@@session.{name}")
    return "SELECT " + ", ".join(exprs)


async def read_back(conn: BackendConnection, names: Sequence[str]) -> dict[str, str]:
    """Each name's value on `conn` as a literal for `SET name = literal`."""
    result = await fetch(conn, readback_sql(names))
    (row,) = result.rows
    values = {}
    i = 0
    for name in names:
        if name.startswith("@"):
            values[name] = _user_literal(result.columns[i], *row[i : i + 4])
            i += 4
        else:
            text = None if row[i] is None else row[i].decode("utf-8", "replace")
            values[name] = system_literal(text)
            i += 1
    return values


def system_literal(value: str | None) -> str:
    """A system variable's value as a literal (numbers bare, the rest quoted)."""
    if value is None:
        return "NULL"
    if _NUMBER.fullmatch(value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def _user_literal(
    column: Column,
    value: bytes | None,
    hex_value: bytes | None,
    charset: bytes | None,
    collation: bytes | None,
) -> str:
    if value is None:
        return "NULL"
    if column.type == _INTEGER:
        return value.decode("ascii")  # 18446744073709551615 is BIGINT UNSIGNED again
    if column.type == _NEWDECIMAL:
        text = value.decode("ascii")  # `1.50` is DECIMAL(3,2) again
        return text if "." in text else text + "."  # `300.` is a DECIMAL, `300` a BIGINT
    if column.type in _FLOATS:
        text = value.decode("ascii")
        return text if "e" in text.lower() else text + "e0"  # `1.5e0` is a DOUBLE literal
    assert hex_value is not None and charset is not None and collation is not None
    # CHARSET() and COLLATION() answer plain names (utf8mb4, latin1_bin): nothing to quote.
    literal = f"_{charset.decode()} X'{hex_value.decode()}'"
    return literal if charset == b"binary" else f"{literal} COLLATE {collation.decode()}"

"""USER(), CURRENT_USER(), SESSION_USER(), SYSTEM_USER(), CONNECTION_ID(), LAST_INSERT_ID()
(and @@identity), ROW_COUNT(), FOUND_ROWS(), @@warning_count and @@error_count of the client's
session, not of the proxy's backend connection.

The router replaces each call with a marker (valid SQL on its own) and keeps the client's
column label; plans stay independent of the session, so they are cached as usual. Just before
a unit is sent, the proxy puts the session's value in place of each marker (`fill`).
"""

from __future__ import annotations

import re
from types import MappingProxyType

from sqlglot import exp

from router.literals import quote_string

USER = "/*shardproxy:user*/NULL"
CURRENT_USER = "/*shardproxy:current_user*/NULL"
CONNECTION_ID = "/*shardproxy:connection_id*/NULL"
# The session's last generated key (proxy-generated or a backend's AUTO_INCREMENT), as MySQL
# keeps it per connection; LAST_INSERT_ID(expr) is left to the backend.
LAST_INSERT_ID = "/*shardproxy:last_insert_id*/NULL"
ROW_COUNT = "/*shardproxy:row_count*/NULL"
FOUND_ROWS = "/*shardproxy:found_rows*/NULL"
WARNING_COUNT = "/*shardproxy:warning_count*/NULL"
ERROR_COUNT = "/*shardproxy:error_count*/NULL"
PREFIX = "/*shardproxy:"

_FUNCTIONS = MappingProxyType(
    {
        "USER": USER,
        "SESSION_USER": USER,
        "SYSTEM_USER": USER,
        "CURRENT_USER": CURRENT_USER,
        "CONNECTION_ID": CONNECTION_ID,
        "LAST_INSERT_ID": LAST_INSERT_ID,
        "ROW_COUNT": ROW_COUNT,
        "FOUND_ROWS": FOUND_ROWS,
    }
)
_EMPTY_CALL = re.compile(r"\s*\(\s*\)")
# CURRENT_USER may be written without parentheses, and sqlglot keeps no position for it.
_CURRENT_USER_TEXT = re.compile(
    r"""`(?:[^`]|``)*`|'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*"|/\*.*?\*/|--[^\n]*|\#[^\n]*"""
    r"""|(?<![\w$.@])CURRENT_USER(?![\w$])(?:\s*\(\s*\))?""",
    re.I | re.S,
)


def session_call_edits(tree: exp.Expression, text: str) -> list[tuple[int, int, str]]:
    """Edits replacing every session-identity call in `text` with its marker."""
    edits: list[tuple[int, int, str]] = []
    for node in tree.walk():
        if isinstance(node, exp.SessionUser):
            marker = USER
        elif isinstance(node, exp.Anonymous) and str(node.this).upper() in _FUNCTIONS:
            if node.expressions:
                continue
            marker = _FUNCTIONS[str(node.this).upper()]
        else:
            continue
        if "start" not in node.meta:
            continue
        start = node.meta["start"]
        paren = _EMPTY_CALL.match(text, node.meta["end"] + 1)
        if paren is None:
            continue
        edits.append(_edit(text, start, paren.end(), marker, _is_select_item(node)))
    if any(str(node.this).lower() in _VARIABLES for node in tree.find_all(exp.SessionParameter)):
        # @@identity and @@last_insert_id are LAST_INSERT_ID(); sqlglot keeps no positions.
        label = all(_is_select_item(node) for node in tree.find_all(exp.SessionParameter))
        for match in _VARIABLE_TEXT.finditer(text):
            if match.group()[:1] in "`'\"/-#":
                continue
            start, end = match.span()
            marker = _VARIABLES[match["name"].lower()]
            edits.append(_edit(text, start, end, marker, label))
    current_users = list(tree.find_all(exp.CurrentUser))
    if current_users:
        # Positions are the text's; label them only when every one is a select-list item.
        label = all(_is_select_item(node) for node in current_users)
        for match in _CURRENT_USER_TEXT.finditer(text):
            token = match.group()
            if token[:1] in "`'\"/-#":
                continue
            start, end = match.span()
            edits.append(_edit(text, start, end, CURRENT_USER, label))
    return edits


_VARIABLES = MappingProxyType(
    {
        "identity": LAST_INSERT_ID,
        "last_insert_id": LAST_INSERT_ID,
        "warning_count": WARNING_COUNT,
        "error_count": ERROR_COUNT,
    }
)
_VARIABLE_TEXT = re.compile(
    r"""`(?:[^`]|``)*`|'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*"|/\*.*?\*/|--[^\n]*|\#[^\n]*"""
    r"""|@@(?:session\.)?(?P<name>identity|last_insert_id|warning_count|error_count)(?![\w$])""",
    re.I | re.S,
)


def _is_select_item(node: exp.Expression) -> bool:
    return isinstance(node.parent, exp.Select) and node.arg_key == "expressions"


def _edit(text: str, start: int, end: int, marker: str, label: bool) -> tuple[int, int, str]:
    if label:
        return start, end, f"{marker} AS `{text[start:end].replace('`', '``')}`"
    return start, end, marker


def fill(
    sql: str,
    user: str,
    host: str,
    connection_id: int,
    last_insert_id: int = 0,
    row_count: int = -1,
    found_rows: int = 0,
    warning_count: int = 0,
    error_count: int = 0,
) -> str:
    """`sql` with the session's values in place of the markers, typed as MariaDB types the
    functions (drivers map the column type: BIGINT UNSIGNED, not INT, for LAST_INSERT_ID())."""
    return (
        sql.replace(USER, quote_string(f"{user}@{host}"))
        .replace(CURRENT_USER, quote_string(f"{user}@%"))
        .replace(CONNECTION_ID, f"CAST({connection_id} AS UNSIGNED)")
        .replace(LAST_INSERT_ID, _unsigned_bigint(last_insert_id))
        .replace(ROW_COUNT, _signed_bigint(row_count))
        .replace(FOUND_ROWS, _signed_bigint(found_rows))
        .replace(WARNING_COUNT, _unsigned_bigint(warning_count))
        .replace(ERROR_COUNT, _unsigned_bigint(error_count))
    )


def _unsigned_bigint(value: int) -> str:
    """A BIGINT UNSIGNED expression (a bitwise OR is one; a bare 5 would be an INT)."""
    return f"({value} | 0)"


def _signed_bigint(value: int) -> str:
    """A BIGINT expression: CAST(x AS SIGNED) is a BIGINT only when x is as wide as one."""
    return f"CAST({value} | 0 AS SIGNED)"

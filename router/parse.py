"""sqlglot parsing, with failures reported the way MySQL reports them (error 1064)."""

from __future__ import annotations

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError as SqlglotParseError
from sqlglot.errors import SqlglotError

from router.errors import ParseError


def parse(text: str) -> exp.Expression:
    """The statement's syntax tree; ParseError (1064) if sqlglot can't read it."""
    try:
        tree = sqlglot.parse_one(text, read="mysql")
    except SqlglotParseError as error:
        raise _from_sqlglot(text, error) from None
    except SqlglotError:
        raise syntax_error(text, 0) from None
    return tree


def syntax_error(text: str, offset: int) -> ParseError:
    """MySQL's ER_PARSE_ERROR for an error at `offset` of `text`."""
    line = text.count("\n", 0, offset) + 1
    near = text[offset : offset + 80]
    return ParseError(
        "You have an error in your SQL syntax; check the manual that corresponds to your "
        f"MariaDB server version for the right syntax to use near '{near}' at line {line}"
    )


def _from_sqlglot(text: str, error: SqlglotParseError) -> ParseError:
    info = error.errors[0] if error.errors else {}
    line = info.get("line") or 1
    column = info.get("col") or 1
    highlight = info.get("highlight") or ""
    line_start = 0
    for _ in range(line - 1):
        line_start = text.find("\n", line_start) + 1
    return syntax_error(text, max(line_start + column - len(highlight), 0))

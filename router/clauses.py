"""Where the parts of a SELECT sit in the statement text, found from its tokens.

sqlglot records positions only for identifiers, literals and function names; rewriting a
statement by text (router.template) needs where clauses, select items and ORDER BY / GROUP BY
items begin and end, which the token stream tells (clauses are keywords at the statement's
parenthesis depth). A part that can't be located raises Unlocatable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlglot import exp
from sqlglot.dialects.mysql import MySQL
from sqlglot.errors import SqlglotError
from sqlglot.tokens import Token, TokenType


class Unlocatable(Exception):
    """A part of the statement this module can't find in the text; the message says which."""


_HINT = re.compile(
    r"""`[^`]*+(?:``[^`]*+)*+`|'(?:[^'\\]|\\.|'')*+'|"(?:[^"\\]|\\.|"")*+"|/\*\+.*?\*/""", re.S
)
SELECT_MODIFIERS = frozenset(
    {
        "ALL",
        "DISTINCT",
        "DISTINCTROW",
        "HIGH_PRIORITY",
        "STRAIGHT_JOIN",
        "SQL_SMALL_RESULT",
        "SQL_BIG_RESULT",
        "SQL_BUFFER_RESULT",
        "SQL_CACHE",
        "SQL_NO_CACHE",
    }
)
# Clause keywords that end the previous clause of a SELECT (at parenthesis depth 0).
_CLAUSES = {
    TokenType.FROM: "from",
    TokenType.WHERE: "where",
    TokenType.GROUP_BY: "group",
    TokenType.HAVING: "having",
    TokenType.WINDOW: "window",
    TokenType.ORDER_BY: "order",
    TokenType.LIMIT: "limit",
    TokenType.FOR: "for",
    TokenType.LOCK: "lock",
    TokenType.INTO: "into",
    TokenType.UNION: "union",
    TokenType.EXCEPT: "union",
    TokenType.INTERSECT: "union",
}


class Tokens:
    """The statement's tokens with their parenthesis depth, for finding clauses and spans."""

    def __init__(self, text: str):
        blanked = _HINT.sub(
            lambda m: " " * len(m.group()) if m.group().startswith("/*+") else m.group(), text
        )
        try:
            self.list: list[Token] = MySQL().tokenize(blanked)
        except SqlglotError:
            raise Unlocatable("this statement form across several shards") from None
        self.by_start = {token.start: i for i, token in enumerate(self.list)}
        self.depth: list[int] = []
        depth = 0
        for token in self.list:
            if token.token_type is TokenType.R_PAREN:
                depth -= 1
            self.depth.append(depth)
            if token.token_type is TokenType.L_PAREN:
                depth += 1

    def index(self, node: exp.Expression) -> int:
        """The token index where a token-backed node starts."""
        start = node.meta.get("start")
        if start is None or start not in self.by_start:
            raise Unlocatable("this statement form across several shards (can't locate a part)")
        return self.by_start[start]

    def closing(self, open_index: int) -> int:
        """The index of the `)` matching the `(` at open_index."""
        depth = self.depth[open_index]
        for i in range(open_index + 1, len(self.list)):
            if self.list[i].token_type is TokenType.R_PAREN and self.depth[i] == depth:
                return i
        raise Unlocatable("this statement form across several shards (unbalanced parentheses)")

    def call_span(self, node: exp.Expression) -> tuple[int, int]:
        """[start, end) text offsets of a function call `NAME(...)`."""
        first = self.index(node)
        if first + 1 >= len(self.list) or self.list[first + 1].token_type is not TokenType.L_PAREN:
            raise Unlocatable("this statement form across several shards (a call without '(')")
        last = self.closing(first + 1)
        return self.list[first].start, self.list[last].end + 1

    def span(self, first: int, last: int) -> tuple[int, int]:
        return self.list[first].start, self.list[last].end + 1


def split(tokens: Tokens, first: int, end: int, depth: int) -> list[tuple[int, int]]:
    """Token ranges [a, b] (inclusive) between depth-`depth` commas in tokens[first:end]."""
    pieces = []
    start = first
    for i in range(first, end):
        token = tokens.list[i]
        if token.token_type is TokenType.COMMA and tokens.depth[i] == depth:
            pieces.append((start, i - 1))
            start = i + 1
    pieces.append((start, end - 1))
    return [(a, b) for a, b in pieces if a <= b]


@dataclass
class Clauses:
    """Where the clauses of one SELECT sit, as token indexes."""

    select: int  # the SELECT keyword
    depth: int
    starts: dict[str, int]  # clause name -> index of its keyword
    end: int  # index after the last token of this SELECT

    def clause_end(self, name: str) -> int:
        """Index after the last token of clause `name`."""
        start = self.starts[name]
        later = [i for i in self.starts.values() if i > start]
        return min(later) if later else self.end


def find_clauses(tokens: Tokens, select_index: int, end: int | None = None) -> Clauses:
    depth = tokens.depth[select_index]
    starts: dict[str, int] = {}
    stop = len(tokens.list) if end is None else end
    for i in range(select_index + 1, stop):
        if tokens.depth[i] < depth:
            stop = i
            break
        if tokens.depth[i] != depth:
            continue
        name = _CLAUSES.get(tokens.list[i].token_type)
        if name == "union":
            stop = i
            break
        if name is not None and name not in starts:
            starts[name] = i
    return Clauses(select_index, depth, starts, stop)


@dataclass
class Item:
    """One select list item."""

    node: exp.Expression  # without its alias
    alias: str | None  # lower case
    span: tuple[int, int] | None  # text of the expression, without the alias
    column: int | None  # its column number, None if a `*` before it makes that unknown
    alias_name: str | None = None  # the alias as written


def select_items(tokens: Tokens, clauses: Clauses, select: exp.Select) -> list[Item]:
    """The select list items of `select`, whose SELECT keyword and clauses are `clauses`."""
    first = clauses.select + 1
    while (
        first < clauses.end
        and tokens.list[first].text.upper() in SELECT_MODIFIERS
        and tokens.list[first].token_type is not TokenType.STRING
    ):
        first += 1
    if "into" in clauses.starts and clauses.starts["into"] < clauses.starts.get("from", 0):
        raise Unlocatable("SELECT ... INTO")
    end = clauses.starts.get("from", clauses.starts.get("into", clauses.end))
    pieces = split(tokens, first, end, clauses.depth)
    if len(pieces) != len(select.expressions):
        raise Unlocatable("this select list form across several shards")
    items = []
    known = True
    for position, ((a, b), node) in enumerate(zip(pieces, select.expressions, strict=True)):
        alias = alias_name = None
        last = b
        if isinstance(node, exp.Alias):
            alias_name = node.alias
            alias = alias_name.lower()
            last = b - 1
            if last > a and tokens.list[last].token_type is TokenType.ALIAS:
                last -= 1
            node = node.this
        if isinstance(node, exp.Star) or (
            isinstance(node, exp.Column) and isinstance(node.this, exp.Star)
        ):
            known = False
        column = position if known else None
        items.append(Item(node, alias, tokens.span(a, last), column, alias_name))
    return items

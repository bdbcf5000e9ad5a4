"""The literal tokenizer: SQL text -> statement shape + literal slots.

This runs on every statement, before any cache lookup, so it is one regex pass and nothing more.
Every literal (number, string, hex, bit) and every `?` parameter becomes a slot, shown as `?` in
the shape; plain comments go away (so a per-request comment doesn't defeat the cache); backtick
identifiers and optimizer hints are kept verbatim. A minus sign stays outside its number: `-5`
is the operator `-` applied to the literal `5`, exactly as MySQL's own lexer sees it.
"""

from __future__ import annotations

import re
from typing import NamedTuple

# Strings as "unrolled loops": a run of plain characters per step, not one character per
# alternation (twice as fast over the long strings of a bulk INSERT).
# A quote, backtick or comment left open runs to the end of the text as one token: the
# statement is a syntax error either way (the parser reports it), and scanning again from
# every later quote would take time quadratic in the text.
_STRING = (
    r"""(?:'[^'\\]*+(?:(?:\\.|'')[^'\\]*+)*+(?:'|\\?\Z)"""
    r"""|"[^"\\]*+(?:(?:\\.|"")[^"\\]*+)*+(?:"|\\?\Z))"""
)

# Only real character sets are introducers: `_col 'x'` is a column with an alias otherwise.
_CHARSETS = (
    "armscii8|ascii|big5|binary|cp1250|cp1251|cp1256|cp1257|cp850|cp852|cp866|cp932|dec8|"
    "eucjpms|euckr|gb18030|gb2312|gbk|geostd8|greek|hebrew|hp8|keybcs2|koi8r|koi8u|latin1|"
    "latin2|latin5|latin7|macce|macroman|sjis|swe7|tis620|ucs2|ujis|utf16|utf16le|utf32|utf8|"
    "utf8mb3|utf8mb4"
)


def _alternatives(*branches: str) -> str:
    return "|".join(branches)


# Token patterns, one alternative per first character: the regex engine then skips text that
# can't start a token in C, and tries only the alternative of the character it stops at. This
# runs for every statement. `(?<![\w$].)` (after that first character) keeps `x'..'`, `N'..'`,
# `0x1f`, numbers and charset introducers from matching inside identifiers like `t1`, `max_x`.
_NOT_IN_WORD = r"(?<![\w$].)"
_NOT_IN_NUMBER = r"(?<![\w$.].)"
_MORE_STRINGS = rf"(?:\s*{_STRING})*+"  # 'a' 'b' is one literal, 'ab'
_LITERAL = _alternatives(
    r"'[^'\\]*+(?:(?:\\.|'')[^'\\]*+)*+(?:'|\\?\Z)" + _MORE_STRINGS,
    r'"[^"\\]*+(?:(?:\\.|"")[^"\\]*+)*+(?:"|\\?\Z)' + _MORE_STRINGS,
    *(
        rf"{n}(?='){_NOT_IN_WORD}'[^'\\]*+(?:(?:\\.|'')[^'\\]*+)*+(?:'|\\?\Z){_MORE_STRINGS}"
        for n in "nN"
    ),
    *(rf"{x}(?='){_NOT_IN_WORD}'[0-9a-fA-F]*'" for x in "xX"),
    *(rf"{b}(?='){_NOT_IN_WORD}'[01]*'" for b in "bB"),
    rf"_(?=\w+\s*['\"]){_NOT_IN_WORD}(?i:{_CHARSETS})\s*{_STRING}{_MORE_STRINGS}",
    rf"0{_NOT_IN_NUMBER}(?:x[0-9a-fA-F]++|b[01]++)(?![\w$])",
    *(rf"{d}{_NOT_IN_NUMBER}\d*+(?:\.\d*+)?(?:[eE][+-]?\d++)?(?![\w$])" for d in "0123456789"),
    rf"\.{_NOT_IN_NUMBER}\d++(?:[eE][+-]?\d++)?(?![\w$])",
)
_PARAM = r"\?"
_KEPT = _alternatives(r"`[^`]*+(?:``[^`]*+)*+(?:`|\Z)", r"/\*\+.*?(?:\*/|\Z)")  # names, hints
_COMMENT = _alternatives(r"/\*.*?\*/", r"--(?=[\s\x00-\x1f]|$)[^\n]*", r"\#[^\n]*")
_UNCLOSED_COMMENT = r"(?P<unclosed>/\*.*\Z)"  # kept as written: the parser reports it
# Every token; its first characters tell which kind it is.
_TOKEN = re.compile(_alternatives(_KEPT, _COMMENT, _UNCLOSED_COMMENT, _LITERAL, _PARAM), re.S)
# Literals and `?` only, for text without comments or backticks: re.split cuts it in C alone.
_SLOTS = re.compile(f"({_alternatives(_LITERAL, _PARAM)})", re.S)
_TRIM_END = " \t\r\n\f\v;"

# Quoted text and comments to step over when looking for statement ends or versioned comments.
_OPAQUE = rf"`[^`]*+(?:``[^`]*+)*+(?:`|\Z)|{_STRING}|(?:--(?=[\s\x00-\x1f]|$)|\#)[^\n]*"
_SPLIT = re.compile(rf"{_OPAQUE}|/\*.*?(?:\*/|\Z)|(?P<semi>;)", re.S)
# Versioned comments for a server version above this stay comments (see unwrap_...).
_FUTURE_VERSION = 200000
_VERSIONED = re.compile(rf"{_OPAQUE}|(?P<open>/\*M?!\d*)|/\*.*?\*/|(?P<close>\*/)", re.S)


class Normalized(NamedTuple):
    """A statement cut into its shape and its literal slots.

    `fragments` are the shape's text between slots (one more than there are slots), so
    `"?".join(fragments) == shape`; `literals[i]` is slot i's text as the client wrote it, or
    None where the client sent a `?` parameter.
    """

    shape: str
    fragments: tuple[str, ...]
    literals: tuple[str | None, ...]


def normalize(sql: str) -> Normalized:
    """Cut `sql` into shape and literal slots; see the module docstring for the rules."""
    if "/*!" in sql or "/*M!" in sql:
        sql = unwrap_versioned_comments(sql)
    if "`" in sql or "/*" in sql or "--" in sql or "#" in sql:
        return _normalize_with_comments(sql)
    parts = _SLOTS.split(sql)
    fragments = parts[0::2]
    fragments[0] = fragments[0].lstrip()
    fragments[-1] = fragments[-1].rstrip(_TRIM_END)
    literals: list[str | None] = parts[1::2]
    if "?" in sql:
        literals = [None if text == "?" else text for text in literals]
    return Normalized("?".join(fragments), tuple(fragments), tuple(literals))


def _normalize_with_comments(sql: str) -> Normalized:
    fragments: list[str] = []
    literals: list[str | None] = []
    pending = ""  # text of the current fragment before a removed comment
    pos = 0
    for match in _TOKEN.finditer(sql):
        token = match.group()
        if token[0] == "`" or token.startswith("/*+") or match.lastgroup == "unclosed":
            continue
        start, end = match.span()
        if token[0] in "/-#":
            newlines = token.count("\n")
            pending += sql[pos:start] + ("\n" * newlines if newlines else " ")
        else:
            fragments.append(pending + sql[pos:start])
            pending = ""
            literals.append(None if token == "?" else token)
        pos = end
    fragments.append(pending + sql[pos:])
    fragments[0] = fragments[0].lstrip()
    fragments[-1] = fragments[-1].rstrip(_TRIM_END)
    return Normalized("?".join(fragments), tuple(fragments), tuple(literals))


def unwrap_versioned_comments(sql: str) -> str:
    """Treat `/*!40101 SET ... */` (and MariaDB's `/*M!100100 ... */`) as the SQL inside.

    The proxy claims a current server version, so every versioned comment is executed, except
    those for versions no server has yet (`/*M!999999 enable the sandbox mode */`, the first
    line of a mariadb-dump file), which stay comments, as on the server.
    """
    parts: list[str] = []
    pos = 0
    depth = 0
    skipping = 0  # depth of the too-new comment being dropped, 0: none
    for match in _VERSIONED.finditer(sql):
        kind = match.lastgroup
        if kind == "open":
            depth += 1
            if not skipping and int(match.group()[3:].lstrip("!") or 0) > _FUTURE_VERSION:
                skipping = depth
        elif kind == "close" and depth:
            depth -= 1
            if skipping and depth < skipping:
                skipping = 0
                pos = match.end()
                parts.append(" ")
                continue
        else:
            continue
        if skipping and not (kind == "open" and depth == skipping):
            continue
        parts.append(sql[pos : match.start()])
        if not skipping:
            parts.append(" ")
        pos = match.end()
    parts.append(sql[pos:])
    return "".join(parts)


def split_statements(sql: str) -> list[str]:
    """The statements of a multi-statement COM_QUERY, without their `;` separators.

    Semicolons inside quotes, backticks and comments don't split; pieces that hold nothing but
    whitespace and comments are dropped.
    """
    statements: list[str] = []
    start = 0
    for match in _SPLIT.finditer(sql):
        if match.lastgroup == "semi":
            _add_statement(statements, sql[start : match.start()])
            start = match.end()
    _add_statement(statements, sql[start:])
    return statements


def _add_statement(statements: list[str], piece: str) -> None:
    if normalize(piece).shape:
        statements.append(piece.strip())

"""Double-quoted names of ANSI_QUOTES sessions, rewritten as backtick-quoted ones.

With sql_mode ANSI_QUOTES (or ANSI) MySQL reads "x" as an identifier, not a string. The router
(its tokenizer and sqlglot's MySQL dialect) reads it as a string, so a shard key compared with
"col" would be taken for a value. Such a session's statements are planned with the names in
backticks, which is what the server reads, and which backends accept in every mode.
"""

from __future__ import annotations

import re

# What "..." can't start inside: strings, backtick names, comments; each runs to the end of
# the text when left open (one scan, as in router.normalize).
_TOKENS = re.compile(
    r"""'[^'\\]*+(?:(?:\\.|'')[^'\\]*+)*+(?:'|\\?\Z)"""
    r"""|`[^`]*+(?:``[^`]*+)*+(?:`|\Z)"""
    r"""|/\*.*?(?:\*/|\Z)|(?:--(?=[\s\x00-\x1f]|$)|\#)[^\n]*"""
    r"""|"([^"]*+(?:""[^"]*+)*+)(?:(")|\Z)""",
    re.S,
)


def ansi_sql_mode(value_sql: str) -> bool:
    """Whether an assigned sql_mode (its SQL text) turns ANSI_QUOTES on: ANSI includes it."""
    return "ANSI" in value_sql.upper()


def backtick_names(sql: str) -> str:
    """`sql` with every "double-quoted name" written `like this`."""
    if '"' not in sql:
        return sql
    return _TOKENS.sub(_swap, sql)


def _swap(match: re.Match[str]) -> str:
    name = match.group(1)
    if name is None or match.group(2) is None:  # not a name, or one left open: as written
        return match.group()
    return "`" + name.replace('""', '"').replace("`", "``") + "`"

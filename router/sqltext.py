"""Small helpers for reading SQL text without a parser (session statements, RENAME TABLE)."""

from __future__ import annotations

import re

IDENT = r"(?:`(?:[^`]|``)+`|[\w$]+)"


def name_pattern(group: str = "") -> str:
    """`[qualifier.]name`, in groups `<group>first` and `<group>second` (None if unqualified)."""
    return rf"(?P<{group}first>{IDENT})(?:\s*\.\s*(?P<{group}second>{IDENT}))?"


QUALIFIED_NAME = name_pattern()
STRING = r"""(?:'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*")"""

_TOP_LEVEL = re.compile(rf"{STRING}|`(?:[^`]|``)*`|[(),]", re.S)


def unquote(identifier: str) -> str:
    """An identifier's name without its backticks."""
    if identifier.startswith("`"):
        return identifier[1:-1].replace("``", "`")
    return identifier


def qualified_name(match: re.Match[str], group: str = "") -> tuple[str | None, str]:
    """(qualifier, name) from a match of name_pattern(group)."""
    first, second = match[group + "first"], match[group + "second"]
    if second is None:
        return None, unquote(first)
    return unquote(first), unquote(second)


def split_top_level(text: str) -> list[str]:
    """`text` split at commas outside parentheses, quotes and backticks."""
    parts = []
    depth = 0
    start = 0
    for match in _TOP_LEVEL.finditer(text):
        token = match.group()
        if token == "(":
            depth += 1
        elif token == ")":
            depth -= 1
        elif token == "," and depth == 0:
            parts.append(text[start : match.start()])
            start = match.end()
    parts.append(text[start:])
    return parts

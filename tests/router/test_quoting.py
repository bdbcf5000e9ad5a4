"""ANSI_QUOTES sessions: double-quoted names become backtick names, nothing else changes."""

from __future__ import annotations

import pytest

from router.quoting import ansi_sql_mode, backtick_names


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ('SELECT "a" FROM "t"', "SELECT `a` FROM `t`"),
        ('SELECT "we""ird", "back`tick"', 'SELECT `we"ird`, `back``tick`'),
        ('SELECT \'say "hi"\', "x"', "SELECT 'say \"hi\"', `x`"),
        ("SELECT 'it''s', 'a\\'b\"', \"c\"", "SELECT 'it''s', 'a\\'b\"', `c`"),
        ('SELECT `"keep"`, "n"', 'SELECT `"keep"`, `n`'),
        ('SELECT 1 /* "c" */ -- "d"\n, "e" # "f"', 'SELECT 1 /* "c" */ -- "d"\n, `e` # "f"'),
        ("SELECT 'no double quotes'", "SELECT 'no double quotes'"),
        ('SELECT "open', 'SELECT "open'),  # left open: the parser reports it
    ],
)
def test_double_quoted_names_become_backtick_names(sql: str, expected: str) -> None:
    assert backtick_names(sql) == expected


@pytest.mark.parametrize(
    ("value_sql", "ansi"),
    [
        ("'ANSI_QUOTES'", True),
        ("'ansi'", True),
        ("CONCAT(@@sql_mode, ',ANSI_QUOTES')", True),
        ("'STRICT_TRANS_TABLES,NO_ZERO_DATE'", False),
        ("''", False),
    ],
)
def test_which_sql_modes_make_double_quotes_names(value_sql: str, ansi: bool) -> None:
    assert ansi_sql_mode(value_sql) is ansi

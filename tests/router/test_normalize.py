"""The literal tokenizer, literal values, parameter rendering and statement splitting."""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from planner_config import make_config

from router.errors import ProxyError
from router.literals import literal_value, quote_string, render_param, string_value
from router.normalize import normalize, split_statements, unwrap_versioned_comments
from router.planner import Router
from router.predicates import Bindings, Slot


def shape(sql: str) -> str:
    return normalize(sql).shape


def literals(sql: str) -> list[str | None]:
    return list(normalize(sql).literals)


# --- literal kinds -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        ("42", 42),
        ("0", 0),
        ("007", 7),
        ("1.5", Decimal("1.5")),
        ("3.", Decimal("3")),
        (".5", Decimal("0.5")),
        ("1e3", 1000.0),
        ("1.5E-3", 0.0015),
        ("2e+2", 200.0),
        ("'abc'", "abc"),
        ('"abc"', "abc"),
        ("''", ""),
        ("'it''s'", "it's"),
        (r"'it\'s'", "it's"),
        ('"say ""hi"""', 'say "hi"'),
        (r"'a\\b'", "a\\b"),
        (r"'\n\r\t\0\Z\b'", "\n\r\t\0\x1a\b"),
        (r"'50\%\_'", "50\\%\\_"),  # LIKE escapes keep their backslash
        (r"'\q'", "q"),  # unknown escapes drop the backslash
        ("'a' 'b'", "ab"),  # adjacent strings concatenate
        ("'a'\n  \"b\" 'c'", "abc"),
        ("X'4142'", b"AB"),
        ("x'0a'", b"\n"),
        ("X''", b""),
        ("0x4142", b"AB"),
        ("0xA", b"\n"),
        ("b'101'", 5),
        ("B''", 0),
        ("0b11", 3),
        ("N'abc'", "abc"),
        ("n'abc'", "abc"),
        ("_utf8mb4'abc'", "abc"),
        ("_utf8mb4 'abc'", "abc"),
        ('_latin1"x"', "x"),
        ("_UTF8MB4'abc'", "abc"),
        ("_binary'abc'", b"abc"),
    ],
)
def test_each_literal_kind_is_one_slot_with_its_value(literal: str, value: object) -> None:
    normalized = normalize(f"SELECT * FROM t WHERE a = {literal} AND b = 1")
    assert normalized.shape == "SELECT * FROM t WHERE a = ? AND b = ?"
    assert normalized.literals == (literal, "1")
    assert literal_value(literal) == value
    assert type(literal_value(literal)) is type(value)


def test_fragments_rebuild_the_shape() -> None:
    normalized = normalize("INSERT INTO t VALUES (1, 'a'), (2, 'b')")
    assert normalized.fragments == ("INSERT INTO t VALUES (", ", ", "), (", ", ", ")")
    assert "?".join(normalized.fragments) == normalized.shape


def test_minus_sign_stays_outside_the_literal() -> None:
    assert shape("SELECT -5, - 5, 1-2, 1--2, a-1") == "SELECT -?, - ?, ?-?, ?--?, a-?"
    assert literals("SELECT -5") == ["5"]
    assert shape("SELECT -1e3, -.5") == "SELECT -?, -?"


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT t1.c2 FROM t1",
        "SELECT 1abc FROM x1",  # identifiers may start with digits
        "SELECT 0xZZ, 0b12, 1e5x, x1, b1, n1, _x, max_id FROM t",
        "SELECT a.b FROM t",
        "SELECT `it's ? 1` FROM `a``b 2`",
    ],
)
def test_identifiers_are_not_literals(sql: str) -> None:
    assert normalize(sql).literals == ()
    assert shape(sql) == sql


def test_an_unknown_introducer_is_a_column_before_a_string() -> None:
    assert shape("SELECT _x'a' FROM t") == "SELECT _x? FROM t"
    assert literals("SELECT _x'a' FROM t") == ["'a'"]


def test_strings_hide_everything_inside() -> None:
    sql = "SELECT 'a -- b', \"# c\", '/* d */', '?', 'x''y 1', '\\' 2'"
    assert shape(sql) == "SELECT ?, ?, ?, ?, ?, ?"


def test_keyword_directly_followed_by_a_string() -> None:
    assert literals("SELECT 1 FROM t WHERE a LIKE'x 1'") == ["1", "'x 1'"]


# --- comments, hints, parameters -------------------------------------------------------------


def test_comments_are_removed_so_they_dont_split_the_cache() -> None:
    plain = shape("SELECT a FROM t WHERE id = 1")
    assert shape("/* req 17 */ SELECT a FROM t WHERE id = 1") == plain
    assert shape("SELECT a FROM t WHERE id = 1 -- trailing") == plain
    assert shape("SELECT a FROM t WHERE id = 1 # trailing") == plain
    assert shape("SELECT a /* x */FROM t WHERE id = 1").split() == plain.split()


def test_comment_rules() -> None:
    assert shape("SELECT 1 --x") == "SELECT ? --x"  # `--` needs a space to start a comment
    assert shape("SELECT 1 --\tx\nFROM t") == "SELECT ?  \nFROM t"
    assert shape("SELECT 1 /* a\nb */ FROM t") == "SELECT ? \n FROM t"  # keeps line numbers
    assert shape("SELECT 1 /* 2 ? '*/") == "SELECT ?"


def test_optimizer_hints_are_kept_verbatim() -> None:
    sql = "SELECT /*+ MAX_EXECUTION_TIME(1000) */ a FROM t WHERE id = 5"
    assert shape(sql) == "SELECT /*+ MAX_EXECUTION_TIME(1000) */ a FROM t WHERE id = ?"


def test_question_marks_are_parameter_slots() -> None:
    normalized = normalize("SELECT * FROM t WHERE a = ? AND b IN (?, 3)")
    assert normalized.shape == "SELECT * FROM t WHERE a = ? AND b IN (?, ?)"
    assert normalized.literals == (None, None, "3")


def test_versioned_comments_are_executed() -> None:
    assert shape("/*!40101 SET @x = @@y */;") == "SET @x = @@y"
    assert shape("/*!40101 SET NAMES utf8mb4 */") == "SET NAMES utf8mb4"
    assert shape("/*M!100100 SET a = 1 */") == "SET a = ?"
    assert shape("CREATE TABLE t (a INT) /*!50100 PARTITION BY HASH(a) */") == (
        "CREATE TABLE t (a INT)   PARTITION BY HASH(a)"
    )
    assert unwrap_versioned_comments("SELECT '/*!1 x */', `/*!2`") == "SELECT '/*!1 x */', `/*!2`"
    assert unwrap_versioned_comments("SELECT 2*/*c*/3") == "SELECT 2*/*c*/3"


def test_statement_is_trimmed() -> None:
    assert shape("  \n SELECT 1 ;  ; \n") == "SELECT ?"
    assert shape("-- only a comment\n") == ""
    assert shape(";") == ""


# --- splitting -------------------------------------------------------------------------------


def test_split_statements() -> None:
    sql = "SELECT ';'; SELECT \"a;b\" ; SELECT `;`;-- ; \n SELECT 4 /* ; */;#x;\n;;"
    assert split_statements(sql) == [
        "SELECT ';'",
        'SELECT "a;b"',
        "SELECT `;`",
        "-- ; \n SELECT 4 /* ; */",
    ]


def test_split_keeps_escaped_quotes_and_versioned_comments_whole() -> None:
    sql = "SELECT 'it\\'s; ok', 'a'';b'; /*!40101 SET a=1 */; SELECT 2"
    assert split_statements(sql) == [
        "SELECT 'it\\'s; ok', 'a'';b'",
        "/*!40101 SET a=1 */",
        "SELECT 2",
    ]


def test_split_drops_empty_and_comment_only_pieces() -> None:
    assert split_statements("") == []
    assert split_statements(" ; /* x */ ; -- y") == []
    assert split_statements("SELECT 1") == ["SELECT 1"]


# --- parameter rendering ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "sql"),
    [
        (None, "NULL"),
        (True, "1"),
        (False, "0"),
        (42, "42"),
        (-7, "-7"),
        (1.5, "1.5e0"),
        (2.0, "2.0e0"),
        (-0.0, "0e0"),
        (1e20, "1e+20"),
        (Decimal("12.30"), "12.30"),
        ("abc", "'abc'"),
        ("it's", "'it\\'s'"),
        ('a"b\\c', "'a\\\"b\\\\c'"),
        ("\0\n\r\x1a", "'\\0\\n\\r\\Z'"),
        (b"\x00\xff", "X'00ff'"),
        (bytearray(b"A"), "X'41'"),
        (datetime.date(2024, 1, 31), "'2024-01-31'"),
        (datetime.datetime(2024, 1, 31, 12, 0, 1), "'2024-01-31 12:00:01'"),
        (datetime.time(1, 2, 3), "'01:02:03'"),
        (datetime.timedelta(hours=-1, seconds=-2), "'-01:00:02'"),
        (datetime.timedelta(days=1, microseconds=5), "'24:00:00.000005'"),
    ],
)
def test_render_param(value: object, sql: str) -> None:
    assert render_param(value) == sql


@pytest.mark.parametrize("value", [float("nan"), float("inf"), Decimal("NaN"), object()])
def test_render_param_refuses_what_mysql_cant_read(value: object) -> None:
    with pytest.raises(ProxyError) as error:
        render_param(value)
    assert error.value.code == 1210


@given(st.text())
def test_rendered_strings_read_back_unchanged(text: str) -> None:
    rendered = render_param(text)
    assert normalize(f"SELECT {rendered}").literals == (rendered,)
    assert literal_value(rendered) == text
    assert string_value(quote_string(text)) == text


@given(st.integers() | st.decimals(allow_nan=False, allow_infinity=False))
def test_rendered_numbers_read_back_unchanged(number: int | Decimal) -> None:
    rendered = render_param(number)
    normalized = normalize(f"SELECT {rendered}")
    slot = normalized.literals[0]
    assert slot is not None
    value = literal_value(slot)
    if normalized.shape == "SELECT -?":
        value = Slot(0, negate=True).resolve(Bindings((slot,), {}))
    assert value == number


@given(st.binary())
def test_rendered_bytes_read_back_unchanged(data: bytes) -> None:
    rendered = render_param(data)
    assert normalize(f"SELECT {rendered}").literals == (rendered,)
    assert literal_value(rendered) == data


@given(
    st.lists(
        st.one_of(
            st.text(alphabet="ab;'\"` \n-#/*?", max_size=6),
            st.sampled_from(["SELECT", "1", "x", ";", "--", "/*", "*/"]),
        ),
        max_size=12,
    )
)
def test_tokenizer_never_fails_and_keeps_every_character_outside_comments(parts: list[str]) -> None:
    sql = " ".join(parts)
    normalized = normalize(sql)
    assert "?".join(normalized.fragments) == normalized.shape
    if "/*" not in sql and "--" not in sql and "#" not in sql:
        texts = [t if t is not None else "?" for t in normalized.literals]
        rebuilt = normalized.fragments[0] + "".join(
            t + f for t, f in zip(texts, normalized.fragments[1:], strict=True)
        )
        # (a quote left open holds the rest, a final `;` included)
        assert rebuilt.rstrip(" \t\r\n\f\v;") == sql.strip().rstrip(" \t\r\n\f\v;")


SQL_BITS = (
    *("SELECT", "a", "t1", "x", "N", "_utf8mb4", "0x1f", "b", "1", "2.5e3", ".5", "-", "?"),
    *("'", '"', "'it''s'", "\\", "(", ")", ",", "=", "n'x'", "X'0A'", ";", "\n", "_"),
)


@given(st.lists(st.sampled_from(SQL_BITS), max_size=15), st.sampled_from([" ", ""]))
def test_fast_and_commented_paths_agree(words: list[str], separator: str) -> None:
    sql = separator.join(words)
    # In front: a quote the words leave open would hold a comment after them.
    assert normalize(sql) == normalize("/* forces the path for comments */ " + sql)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 'abc",
        "SELECT * FROM orders WHERE user_id = 'x",
        'SELECT "abc\\',
        "SELECT `a",
        "SELECT 1 /*+ hint",
        "SELECT * FROM orders /* left open",
        "SELECT 1 /*/",
        "INSERT INTO orders (id, user_id) VALUES (1, 2), ('" + "a\\'" * 50_000 + ")",
        "SELECT 1 " + "/* x " * 50_000,
    ],
    ids=lambda sql: sql[:30],
)
def test_text_left_open_is_a_syntax_error_found_in_one_pass(sql: str) -> None:
    """A quote, backtick or comment never closed runs to the end as one token: a syntax error,
    as on MySQL, never a statement with its tail dropped; and a big one takes one scan, not one
    per later quote (150 KB of them took minutes)."""
    with pytest.raises(ProxyError) as excinfo:
        Router(make_config()).plan(sql, "shop")
    assert excinfo.value.code == 1064

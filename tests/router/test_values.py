"""MySQL value semantics of merged values (router.values) and string keys (router.collation).

The expected texts were read from MariaDB 10.11 (e.g. `SELECT 1/3*3` is `1.0000` because the
quotient keeps whole 9-digit words); a fuzz run of 2000 random decimal expressions and 6000
doubles against a server agreed with these functions.
"""

from __future__ import annotations

import math
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from router.collation import WeightKey, pad_weight
from router.values import (
    OutOfRange,
    UnsignedInt,
    arithmetic,
    comparison,
    divide,
    format_decimal,
    format_double,
    logical,
)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.0, "0"),
        (1.0, "1"),
        (0.1, "0.1"),
        (1 / 3, "0.3333333333333333"),
        (1e15, "1e15"),
        (123456789012345.6, "123456789012345.6"),
        (2870964250924279.5, "2870964250924279.5"),
        (3.361145774153067e15, "3.361145774153067e15"),
        (980169000000000.0, "980169000000000"),
        (1.5e-7, "0.00000015"),
        (6.8207582804103106e-15, "0.0000000000000068207582804103106"),
        (9.921120936628321e-16, "9.921120936628321e-16"),
        (-2.5e19, "-2.5e19"),
        (1e100, "1e100"),
    ],
)
def test_doubles_print_as_mariadb_prints_them(value: float, text: str) -> None:
    assert format_double(value) == text.encode()


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_printed_doubles_read_back_exactly(value: float) -> None:
    assert float(format_double(value)) == value or (value == 0 and math.copysign(1, value) < 0)


@pytest.mark.parametrize(
    ("expression", "decimals", "text"),
    [
        (lambda: divide(1, 3), 4, "0.3333"),
        (lambda: divide(2, 3), 4, "0.6667"),
        (lambda: arithmetic("*", divide(1, 3), 3), 4, "1.0000"),
        (lambda: arithmetic("*", divide(Decimal("1.5"), 7), 7), 5, "1.50000"),
        (lambda: arithmetic("*", arithmetic("*", divide(1, 7), 7), 1000000), 4, "999999.9940"),
        (lambda: divide(Decimal("6.75"), 4), 6, "1.687500"),
        (lambda: divide(Decimal("-6.75"), 4), 6, "-1.687500"),
        (lambda: divide(Decimal("0.00"), 4), 6, "0.000000"),
    ],
)
def test_decimal_division_keeps_mariadb_digits(expression, decimals: int, text: str) -> None:
    assert format_decimal(expression(), decimals) == text.encode()


def test_division_by_zero_and_null_give_null() -> None:
    assert divide(5, 0) is None
    assert divide(None, 5) is None
    assert divide(Decimal("1.5"), Decimal("0.00")) is None
    assert divide(1.5, 0) is None
    assert arithmetic("DIV", 5, 0) is None
    assert arithmetic("%", 5, 0) is None


def test_result_types_follow_mysql() -> None:
    assert isinstance(divide(4, 2), Decimal)  # INT / INT is DECIMAL
    assert isinstance(divide(4.0, 2), float)  # anything with a DOUBLE is DOUBLE
    assert arithmetic("DIV", Decimal("7.5"), 2) == 3
    assert arithmetic("%", -7, 3) == -1  # the sign of the dividend
    assert arithmetic("%", Decimal("-7.5"), 2) == Decimal("-1.5")
    assert arithmetic("-", Decimal("1.50"), 1) == Decimal("0.50")


def test_bigint_overflow_is_an_error_not_a_bigger_number() -> None:
    with pytest.raises(OutOfRange) as error:
        arithmetic("+", (1 << 63) - 1, 1)
    assert error.value.code == 1690
    with pytest.raises(OutOfRange):
        arithmetic("-", UnsignedInt(1), 2)  # unsigned arithmetic can't go below zero
    assert arithmetic("-", UnsignedInt(3), 2) == 1


def test_comparisons_convert_like_mysql() -> None:
    assert comparison("=", Decimal("0.1"), 0.1) == 1  # DECIMAL vs DOUBLE compares as DOUBLE
    assert comparison("=", 1, Decimal("1.00")) == 1
    assert comparison("<", None, 1) is None
    assert comparison("<=>", None, None) == 1
    assert comparison("<=>", None, 0) == 0


def test_three_valued_logic() -> None:
    assert logical("AND", [1, None]) is None
    assert logical("AND", [0, None]) == 0
    assert logical("OR", [1, None]) == 1
    assert logical("OR", [0, None]) is None
    assert logical("NOT", [None]) is None
    assert logical("XOR", [1, 0]) == 1


def test_decimal_text_uses_the_column_scale() -> None:
    assert format_decimal(Decimal("2.5"), 4) == b"2.5000"
    assert format_decimal(Decimal("2.00005"), 4) == b"2.0001"  # half up
    assert format_decimal(Decimal("-0.00001"), 4) == b"0.0000"  # no negative zero
    assert format_decimal(7, 0) == b"7"


# --- collation weights ------------------------------------------------------------------------

SPACE = pad_weight("utf8mb4_general_ci")


def general_ci(text: str) -> WeightKey:
    assert SPACE is not None
    return WeightKey(b"".join(ord(c.upper()).to_bytes(2, "big") for c in text), SPACE)


def test_pad_space_ignores_trailing_spaces_but_not_tabs() -> None:
    assert general_ci("a") == general_ci("a   ")
    assert hash(general_ci("a")) == hash(general_ci("a "))
    assert general_ci("a\t") < general_ci("a")  # a tab weighs less than the padding space
    assert general_ci("a") < general_ci("a\t\t".replace("\t", "b"))
    assert general_ci("") < general_ci("a")
    assert general_ci("") == general_ci("  ")


def test_no_pad_collations_keep_trailing_spaces() -> None:
    nopad = pad_weight("utf8mb4_general_nopad_ci")
    assert nopad == b""
    assert WeightKey(b"\x00A", b"") < WeightKey(b"\x00A\x00 ", b"")
    assert pad_weight("binary") == b""
    assert pad_weight("utf8mb4_bin") == b"\x00\x00\x20"
    assert pad_weight("utf8mb4_czech_ci") is None  # contractions: not one weight per character


@given(st.text(alphabet="ab \t", max_size=6), st.text(alphabet="ab \t", max_size=6))
def test_weight_order_is_the_padded_order(x: str, y: str) -> None:
    width = max(len(x), len(y))
    model_x, model_y = x.upper().ljust(width), y.upper().ljust(width)
    assert (general_ci(x) < general_ci(y)) == (model_x < model_y)
    assert (general_ci(x) == general_ci(y)) == (model_x == model_y)
